"""The test host's network namespace is never left behind: one no process lives in (a run
killed before its fixture cleaned up) is reaped when the next one is made, a live one is not."""

from __future__ import annotations

import subprocess
import time
import uuid

import pytest

from local_stack.vllm import NetNamespace, netns_unavailable_reason

# Network namespaces and veth pairs: host state, as the servers' tests use.
pytestmark = pytest.mark.integration


def _ip(*args: str) -> str:
    return subprocess.run(["ip", *args], check=True, capture_output=True, text=True, timeout=30).stdout


def test_stale_namespaces_are_reaped_and_live_ones_kept():
    reason = netns_unavailable_reason()
    if reason:
        pytest.skip(f"network namespaces are not available here: {reason}")
    stale_tag, live_tag = (f"9{uuid.uuid4().int % 10000:04d}" for _ in range(2))
    stale, live = f"llmeks-vllm-{stale_tag}", f"llmeks-vllm-{live_tag}"
    _ip("netns", "add", stale)
    _ip("link", "add", f"vllmh{stale_tag}", "type", "veth", "peer", "name", f"vllmn{stale_tag}")
    _ip("link", "set", f"vllmn{stale_tag}", "netns", stale)
    _ip("netns", "add", live)
    resident = subprocess.Popen(["ip", "netns", "exec", live, "sleep", "60"])
    try:
        deadline = time.monotonic() + 10
        while not _ip("netns", "pids", live).strip():
            assert resident.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        assert stale in NetNamespace.reap_stale()
        names = _ip("netns", "list")
        assert stale not in names and live in names
        assert f"vllmh{stale_tag}" not in _ip("link")  # the pair went with its namespace
    finally:
        resident.kill()
        resident.wait(timeout=10)
        subprocess.run(["ip", "netns", "delete", live], capture_output=True, timeout=30)
        subprocess.run(["ip", "netns", "delete", stale], capture_output=True, timeout=30)

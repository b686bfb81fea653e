"""Stopping what the local stack started: the whole session, including a process its leader
started while it shut down (as the scheduler's forkserver forks a LocalExecutor worker then)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time

from local_stack.stack import alive, stop_pids

# On SIGTERM the leader starts a child that gets no signal, writes its pid, and exits.
LEADER = """
trap 'sleep 300 & echo $! > "$1"; exit 0' TERM
echo ready > "$1.ready"
while true; do sleep 0.1; done
"""


def test_a_process_started_while_its_leader_stops_is_stopped_too(tmp_path):
    pid_file = tmp_path / "late"
    leader = subprocess.Popen(["sh", "-c", LEADER, "sh", str(pid_file)], start_new_session=True)
    deadline = time.monotonic() + 10
    while not (tmp_path / "late.ready").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        stop_pids([leader.pid], grace_s=5)
        leader.wait(timeout=5)
        late = int(pid_file.read_text())
        assert not alive(late), f"pid {late}, started as its leader stopped, outlived the stop"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(leader.pid, signal.SIGKILL)

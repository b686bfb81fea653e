"""Session fixture: one real vLLM CPU server (local_stack/vllm.py) for every test that
needs one (serving and end-to-end alike: registered once in tests/conftest.py, so one server).

It serves the tiny Llama 4 under the catalog's served-model name of llama4-scout, so a plan for
llama4-scout finds its model and a plan for any other model is a wrong model name. In a network
namespace of its own where the machine allows it (the service-proxy path needs a non-loopback
address), else on 127.0.0.1.
"""

from __future__ import annotations

import pytest

from local_stack.vllm import netns_unavailable_reason, start_server

SCOUT = "meta-llama/Llama-4-Scout-17B-16E-Instruct"


@pytest.fixture(scope="session")
def vllm_server():
    no_netns = netns_unavailable_reason()
    server = start_server("tiny-llama4", [SCOUT, "tiny-llama4"], use_netns=no_netns is None)
    server.extra["no_netns"] = no_netns
    print(f"\nvLLM up at {server.base_url} in {server.startup_s:.1f} s, RSS {server.rss_mib():.0f} MiB")
    try:
        yield server
    finally:
        server.stop()

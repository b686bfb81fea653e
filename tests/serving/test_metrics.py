"""The metrics reader against the real vLLM server: counts before and after a burst, load seen
during one, renamed metrics, and "unknown" (never 0) where a server exports no vLLM metrics; and
the server's start-up log line the cold_start step reads."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from llm_on_eks.serving.endpoint import Endpoint, direct_endpoint
from llm_on_eks.serving.metrics import UNKNOWN, parse_load, read_metrics

BURST = 6
MAX_TOKENS = 8
SETTLE_S = 15.0
LOAD_TURNS = 4


def _burst(endpoint, model: str, count: int, max_tokens: int) -> list[int]:
    """``count`` concurrent chat completions of exactly ``max_tokens`` tokens; their prompt tokens."""

    async def run() -> list[int]:
        async with endpoint.openai_client(timeout=120, asynchronous=True) as client:
            completions = await asyncio.gather(*(
                client.chat.completions.create(
                    model=model, messages=[{"role": "user", "content": f"request {index}: count to ten"}],
                    max_tokens=max_tokens, temperature=0, extra_body={"ignore_eos": True, "min_tokens": max_tokens})
                for index in range(count)))
        assert all(c.usage.completion_tokens == max_tokens for c in completions)
        return [c.usage.prompt_tokens for c in completions]

    return asyncio.run(run())


def _settled(endpoint, expected_successes: float):
    """Counters are updated as the engine reports finished requests: wait (bounded) for them."""
    deadline = time.monotonic() + SETTLE_S
    while True:
        load = read_metrics(endpoint)
        if load.requests_succeeded == expected_successes or time.monotonic() > deadline:
            return load
        time.sleep(0.2)


def test_counts_before_and_after_a_burst(vllm_server):
    endpoint = direct_endpoint(vllm_server.base_url)
    before = read_metrics(endpoint)
    assert before.error is None
    for name in ("running", "waiting", "requests_succeeded", "prompt_tokens", "generation_tokens", "kv_cache_usage"):
        assert getattr(before, name) is not None, name
    prompt_tokens = _burst(endpoint, vllm_server.served_model_name, BURST, MAX_TOKENS)
    after = _settled(endpoint, before.requests_succeeded + BURST)
    assert after.requests_succeeded - before.requests_succeeded == BURST
    assert after.generation_tokens - before.generation_tokens == BURST * MAX_TOKENS
    assert after.prompt_tokens - before.prompt_tokens == sum(prompt_tokens)
    # Every one stopped at max_tokens: counted under finished_reason="length".
    assert after.succeeded_by_reason["length"] - before.succeeded_by_reason.get("length", 0) == BURST
    assert after.running == 0 and after.waiting == 0 and after.in_flight == 0
    assert after.as_dict()["in_flight"] == 0


def test_readings_while_requests_run_are_known_bounded_and_counted(vllm_server):
    """/metrics read over and over while four long requests run one after another: every reading
    is known and shows at most the one request in flight, and the success counter moves by four.

    Seeing the in-flight gauge at 1 is not asserted: on this 2-core CPU server the frontend holds
    /metrics reads while the engine generates (measured 5-9 s) and answers after the request
    ended, so 12 of 12 readings in one CI run showed 0. A busy server can thus read as "0 in
    flight"; idleness must be judged from the counters' movement, which this test pins down."""
    endpoint = direct_endpoint(vllm_server.base_url)
    before = read_metrics(endpoint)
    errors: list[BaseException] = []

    def requests_in_turn() -> None:
        try:
            for _ in range(LOAD_TURNS):
                _burst(endpoint, vllm_server.served_model_name, 1, 1536)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    worker = threading.Thread(target=requests_in_turn, daemon=True)
    worker.start()
    readings, deadline = [], time.monotonic() + 180
    while worker.is_alive() and time.monotonic() < deadline:
        readings.append(read_metrics(endpoint))
    worker.join(timeout=180)
    assert not errors and not worker.is_alive(), errors
    assert readings and all(r.error is None and r.in_flight in (0, 1) for r in readings), readings
    after = _settled(endpoint, before.requests_succeeded + LOAD_TURNS)
    assert after.requests_succeeded - before.requests_succeeded == LOAD_TURNS


def test_renamed_metrics_are_read_by_their_old_names(vllm_server):
    """vLLM before 0.32 called the KV-cache gauge vllm:gpu_cache_usage_perc (vLLM metrics docs)."""
    with direct_endpoint(vllm_server.base_url).http_client() as http:
        text = http.get(vllm_server.base_url + "/metrics").text
    assert "vllm:kv_cache_usage_perc" in text and "vllm:gpu_cache_usage_perc" not in text
    new = parse_load(text, "new")
    old = parse_load(text.replace("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"), "old")
    assert old.kv_cache_usage == new.kv_cache_usage is not None


@pytest.fixture
def plain_prometheus_endpoint():
    """A real Prometheus exporter (prometheus_client's own server) with no vLLM metrics."""
    from prometheus_client import CollectorRegistry, Counter, start_http_server
    from prometheus_client.process_collector import ProcessCollector

    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    Counter("http_requests", "Requests", registry=registry).inc(7)
    server, thread = start_http_server(0, addr="127.0.0.1", registry=registry)
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def test_unknown_without_vllm_metrics(plain_prometheus_endpoint):
    load = read_metrics(direct_endpoint(plain_prometheus_endpoint))
    assert load.error is None
    values = load.as_dict()
    for name in ("running", "waiting", "requests_succeeded", "prompt_tokens", "generation_tokens", "kv_cache_usage",
                 "in_flight"):
        assert values[name] == UNKNOWN, name
    assert load.in_flight is None  # never read as idle


def test_unknown_when_metrics_are_unreadable(vllm_server):
    """No /metrics route (404) or nothing listening: unknown, with the reason."""
    not_found = read_metrics(Endpoint(base_url=vllm_server.base_url + "/v1", description="no metrics here"))
    assert not_found.error == "HTTP 404" and not_found.as_dict()["requests_succeeded"] == UNKNOWN
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    refused = read_metrics(direct_endpoint(f"http://127.0.0.1:{port}"))
    assert refused.error and "ConnectError" in refused.error and refused.in_flight is None


def test_the_servers_start_up_log_holds_the_engine_start_the_cold_start_step_reads(vllm_server):
    """vLLM's own start-up line, as the cold_start step reads it from a serving pod's log (the tiny
    model's dummy weights log no weight load; a checkpoint's do, see tests/test_cold_start.py)."""
    from llm_on_eks.kube.startup_records import log_seconds

    assert log_seconds(vllm_server.log_path.read_text(errors="replace"))["engine_start"] is not None

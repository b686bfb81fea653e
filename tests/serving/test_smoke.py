"""The smoke test task through dag.test() against the real vLLM server, and its failures:
wrong model name, a 500, a server that never becomes ready, a stream cut mid-way."""

from __future__ import annotations

import re
import socket

import pytest

from tests.dag_runs import load_dag, run_dag
from tests.serving.fault_proxy import Fault, FaultProxy


def _dag(suffix: str = ""):
    return load_dag("tests/dags/serving_steps/serving_steps.py", "test_serving_steps" + suffix)


def _failure(capfd) -> str:
    """The smoke test's failure message, as the task log shows it."""
    out = capfd.readouterr()
    messages = re.findall(r"smoke test check .*", out.out + out.err)
    assert messages, out.out[-3000:] + out.err[-3000:]
    return messages[0]


def test_smoke_test_passes_against_the_real_server(vllm_server, scout_conf):
    result = run_dag(_dag(), scout_conf)
    assert result.state == "success", result.states
    assert result.states["benchmark"] == "skipped"  # off unless asked for
    smoke = result.xcoms["smoke_test"]
    assert smoke["endpoint"] == vllm_server.base_url and smoke["model"] == vllm_server.served_model_name
    assert set(smoke["checks"]) == {"models", "chat", "stream"}
    assert vllm_server.served_model_name in smoke["checks"]["models"]["served"]
    assert smoke["checks"]["chat"]["content"] and smoke["checks"]["chat"]["finish_reason"] in ("stop", "length")
    assert smoke["checks"]["chat"]["completion_tokens"] >= 1
    assert 0 < smoke["ttft_ms"] <= smoke["checks"]["stream"]["elapsed_s"] * 1000
    assert smoke["checks"]["stream"]["chunks"] >= 2


def test_wrong_model_name(vllm_server, airflow_db, capfd):
    conf = {"model": "llama-3-8b", "accelerator": "gpu", "endpoint_url": vllm_server.base_url}
    result = run_dag(_dag(), conf)
    assert result.states["smoke_test"] == "failed" and result.states["benchmark"] == "upstream_failed"
    message = _failure(capfd)
    assert "check 'models'" in message
    assert "'meta-llama/Meta-Llama-3-8B-Instruct' is not listed" in message
    assert vllm_server.served_model_name in message and "(HTTP 200)" in message
    assert re.search(r"failed after \d+\.\d s", message)


def test_server_error_500(vllm_server, scout_conf, capfd):
    fault = Fault(status=500, body='{"error": {"message": "EngineCore encountered an issue (injected)"}}')
    with FaultProxy(vllm_server.base_url, fault) as proxy:
        result = run_dag(_dag(), {**scout_conf, "endpoint_url": proxy.base_url})
    assert result.states["smoke_test"] == "failed"
    message = _failure(capfd)
    # /v1/models came from the real server; the chat completion got the 500.
    assert "check 'chat'" in message and "(HTTP 500)" in message
    assert "body: EngineCore encountered an issue (injected)" in message
    assert "GET /v1/models" in proxy.hits


def test_server_never_ready_hits_the_deadline(airflow_db, capfd):
    # A port nothing listens on: every attempt is refused until the deadline (4 s in this DAG).
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    conf = {"model": "llama4-scout", "accelerator": "gpu", "endpoint_url": f"http://127.0.0.1:{port}",
            "images_per_prompt": 0}
    result = run_dag(_dag("_short_deadline"), conf)
    assert result.states["smoke_test"] == "failed"
    message = _failure(capfd)
    assert "check 'models'" in message and "not ready within the 4 s deadline" in message
    assert "APIConnectionError" in message or "ConnectError" in message
    elapsed = float(re.search(r"failed after (\d+\.\d) s", message).group(1))
    assert 3.5 <= elapsed <= 11


@pytest.mark.parametrize("events", [1, 3])
def test_stream_stops_mid_way(vllm_server, scout_conf, capfd, events):
    with FaultProxy(vllm_server.base_url, Fault(cut_after_events=events)) as proxy:
        result = run_dag(_dag(), {**scout_conf, "endpoint_url": proxy.base_url})
    assert result.states["smoke_test"] == "failed"
    message = _failure(capfd)
    assert "check 'stream'" in message and "the stream broke after" in message
    assert "POST /v1/chat/completions" in proxy.hits


def test_images_refused_by_a_text_only_server(vllm_server, scout_conf, capfd):
    """Llama 4's image check: the tiny Llama 4 serves text only on CPU (its image path hangs),
    so an image prompt gets the server's clear 400, which the check reports as such."""
    result = run_dag(_dag(), {**scout_conf, "images_per_prompt": 2})
    assert result.states["smoke_test"] == "failed"
    message = _failure(capfd)
    assert "check 'images'" in message and "(HTTP 400)" in message
    assert "image" in message.split("body:", 1)[1].lower()


def test_the_image_request_matches_the_servers_own_request_schema(vllm_server):
    """The image path cannot run on CPU, so the body it sends is checked against the schemas the
    real server publishes (FastAPI's /openapi.json): the request as a whole, and its message as
    the standard OpenAI user message. The request's message union also admits vLLM's custom and
    Harmony forms, which accept almost anything; the user-message schema is the strict one."""
    import json
    import urllib.request

    from jsonschema import Draft202012Validator

    from llm_on_eks.serving.smoke import image_request

    with urllib.request.urlopen(vllm_server.base_url + "/openapi.json", timeout=30) as response:
        components = json.load(response)["components"]

    def errors(schema: str, instance) -> list[str]:
        validator = Draft202012Validator({"$ref": f"#/components/schemas/{schema}", "components": components})
        return [error.message for error in validator.iter_errors(instance)]

    body = image_request(vllm_server.served_model_name, 2)
    (message,) = body["messages"]
    assert [part["type"] for part in message["content"]] == ["text", "image_url", "image_url"]
    assert all(part["image_url"]["url"].startswith("data:image/png;base64,") for part in message["content"][1:])
    assert errors("ChatCompletionRequest", body) == []
    assert errors("ChatCompletionUserMessageParam", message) == []
    # Strict enough to matter: an image part without its URL is refused.
    broken = {**message, "content": [message["content"][0], {"type": "image_url", "image_url": {"detail": "low"}}]}
    assert errors("ChatCompletionUserMessageParam", broken)

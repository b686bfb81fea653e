"""The token Secret step at DEBUG log level, against a minimal stand-in for the API server's
Secret endpoints on 127.0.0.1 (the real control plane is in the integration tier): neither the
token nor its base64 form reaches a log line, a Secret someone else made is never replaced, and
one another deployment's run creates between this run's read and create is judged as found."""

from __future__ import annotations

import base64
import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from llm_on_eks.kube.hf_secret import ForeignSecret, ensure_secret
from llm_on_eks.naming import MANAGED_BY_KEY, PROJECT
from llm_on_eks.plan import build_plan

TOKEN = "hf_debugLevelCanary0123456789"
ENCODED = base64.b64encode(TOKEN.encode()).decode()
PLAN = build_plan({"model": "llama4-scout", "namespace": "team-a"})
SECRET = (PLAN["target"], PLAN["hf_token"]["k8s_secret"])


class SecretApi(BaseHTTPRequestHandler):
    """GET answers the stored Secret (or 404); PUT and POST store what they are sent. With
    ``meanwhile`` set, the next POST finds that Secret created just before it and is refused (409)."""

    stored: dict | None = None
    writes: list[str] = []
    meanwhile: dict | None = None

    def _answer(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if SecretApi.stored is None:
            self._answer(404, {"kind": "Status", "code": 404, "reason": "NotFound"})
        else:
            self._answer(200, SecretApi.stored)

    def _write(self):
        SecretApi.writes.append(self.command)
        if self.command == "POST" and SecretApi.meanwhile is not None:
            SecretApi.stored, SecretApi.meanwhile = SecretApi.meanwhile, None
            self.rfile.read(int(self.headers["Content-Length"]))
            self._answer(409, {"kind": "Status", "code": 409, "reason": "AlreadyExists"})
            return
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        data = {k: base64.b64encode(v.encode()).decode() for k, v in body.pop("stringData", {}).items()}
        SecretApi.stored = {**body, "data": data}
        self._answer(200, SecretApi.stored)

    do_PUT = do_POST = _write

    def log_message(self, *args):
        pass


@pytest.fixture
def api():
    from kubernetes import client

    server = ThreadingHTTPServer(("127.0.0.1", 0), SecretApi)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    SecretApi.stored, SecretApi.writes, SecretApi.meanwhile = None, [], None
    configuration = client.Configuration()
    configuration.host = f"http://127.0.0.1:{server.server_address[1]}"
    api = client.ApiClient(configuration)
    yield api
    api.close()
    server.shutdown()
    server.server_close()


def _secret(labels: dict[str, str], token: str) -> dict:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "hf-token", "namespace": "team-a",
                                                               "labels": labels},
            "data": {"token": base64.b64encode(token.encode()).decode()}}


def test_no_token_in_logs_at_debug(api, caplog):
    caplog.set_level(logging.DEBUG)
    for logger in ("kubernetes.client.rest", "urllib3"):
        logging.getLogger(logger).setLevel(logging.DEBUG)
    assert ensure_secret(api, *SECRET, TOKEN) == "created"
    assert ensure_secret(api, *SECRET, TOKEN) == "unchanged"  # a read answering the token's base64
    assert ensure_secret(api, *SECRET, TOKEN + "x") == "updated"
    assert SecretApi.writes == ["POST", "PUT"] and SecretApi.stored["data"]["token"] != ENCODED
    for text in (caplog.text, *(str(r.args) for r in caplog.records)):
        assert TOKEN not in text and ENCODED not in text
    assert logging.getLogger("kubernetes.client.rest").level == logging.DEBUG  # restored


def test_a_secret_someone_else_made_is_refused_not_replaced(api):
    SecretApi.stored = _secret({"app": "theirs"}, "hf_theirs")
    with pytest.raises(ForeignSecret, match=f"team-a/hf-token exists without the label {MANAGED_BY_KEY}={PROJECT}"):
        ensure_secret(api, *SECRET, TOKEN)
    assert SecretApi.writes == [] and SecretApi.stored["data"]["token"] == base64.b64encode(b"hf_theirs").decode()


def test_our_secret_is_updated(api):
    SecretApi.stored = _secret({MANAGED_BY_KEY: PROJECT}, "hf_old")
    assert ensure_secret(api, *SECRET, TOKEN) == "updated"
    assert SecretApi.writes == ["PUT"]


def test_a_secret_another_run_creates_meanwhile_is_judged_as_found(api):
    # Another deployment's run in the namespace, with the same token: nothing more to write.
    SecretApi.meanwhile = _secret({MANAGED_BY_KEY: PROJECT}, TOKEN)
    assert ensure_secret(api, *SECRET, TOKEN) == "unchanged"
    assert SecretApi.writes == ["POST"]
    # Someone else's, made meanwhile: refused, never replaced.
    SecretApi.stored, SecretApi.writes = None, []
    SecretApi.meanwhile = _secret({"app": "theirs"}, "hf_theirs")
    with pytest.raises(ForeignSecret, match="exists without the label"):
        ensure_secret(api, *SECRET, TOKEN)
    assert SecretApi.writes == ["POST"] and SecretApi.stored["data"]["token"] == base64.b64encode(b"hf_theirs").decode()

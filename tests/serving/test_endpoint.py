"""How the OpenAI client frames a request body: chunked through the API server's service proxy
(golang/go#40747, see serving/endpoint.py), as built otherwise. An echo server on loopback
answers with the framing headers and the body it decoded, so the test sees the bytes on the wire."""

from __future__ import annotations

import asyncio
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from llm_on_eks.serving.endpoint import Endpoint

BODY = {"model": "m", "messages": [{"role": "user", "content": "héllo " * 200}]}


class _Echo(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        if self.headers.get("Transfer-Encoding") == "chunked":
            body = b""
            while size := int(self.rfile.readline().strip(), 16):
                body += self.rfile.read(size)
                self.rfile.readline()
            self.rfile.readline()
        else:
            body = self.rfile.read(int(self.headers["Content-Length"]))
        answer = json.dumps({"transfer_encoding": self.headers.get("Transfer-Encoding"),
                             "content_length": self.headers.get("Content-Length"),
                             "authorization": self.headers.get("Authorization"), "length": len(body),
                             "body": json.loads(body)}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def echo_url():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("via_api_server", [True, False])
def test_a_body_through_the_api_server_goes_chunked_and_arrives_whole(echo_url, via_api_server):
    endpoint = Endpoint(base_url=echo_url, description="echo", via_api_server=via_api_server)
    with endpoint.openai_client(timeout=10) as client:
        seen = client.post("/echo", body=BODY, cast_to=object)
    assert seen["body"] == BODY
    assert seen["authorization"] is None
    if via_api_server:
        assert (seen["transfer_encoding"], seen["content_length"]) == ("chunked", None)
    else:
        assert (seen["transfer_encoding"], int(seen["content_length"])) == (None, seen["length"])


def test_the_async_client_frames_it_the_same_way(echo_url):
    endpoint = Endpoint(base_url=echo_url, description="echo", headers={"Authorization": "Bearer t0k"},
                        via_api_server=True)

    async def post():
        async with endpoint.openai_client(timeout=10, asynchronous=True) as client:
            return await client.post("/echo", body=BODY, cast_to=object)

    seen = asyncio.run(post())
    assert (seen["transfer_encoding"], seen["body"], seen["authorization"]) == ("chunked", BODY, "Bearer t0k")

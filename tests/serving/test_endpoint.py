"""How the OpenAI client frames a request body: chunked through the API server's service proxy
(golang/go#40747, see serving/endpoint.py), as built otherwise. An echo server on loopback
answers with the framing headers and the body it decoded, so the test sees the bytes on the wire."""

from __future__ import annotations

import asyncio
import json

import pytest

from llm_on_eks.serving.endpoint import Endpoint
from local_stack.loopback_proxy import LoopbackProxy

BODY = {"model": "m", "messages": [{"role": "user", "content": "héllo " * 200}]}


class _Echo(LoopbackProxy):
    """Answers every request with its framing headers and the body it decoded (the loopback
    server the fault proxies run on, answering itself instead of relaying)."""

    def handle(self, request) -> None:
        if request.headers.get("Transfer-Encoding") == "chunked":
            body = b""
            while size := int(request.rfile.readline().strip(), 16):
                body += request.rfile.read(size)
                request.rfile.readline()
            request.rfile.readline()
        else:
            body = self.body(request)
        self.answer(request, 200, {"Content-Type": "application/json"}, json.dumps({
            "transfer_encoding": request.headers.get("Transfer-Encoding"),
            "content_length": request.headers.get("Content-Length"),
            "authorization": request.headers.get("Authorization"), "length": len(body),
            "body": json.loads(body)}).encode())


@pytest.fixture
def echo_url():
    with _Echo() as echo:
        yield echo.base_url


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

"""A small fault-injecting HTTP proxy in front of the real vLLM server.

Not an imitation of vLLM: every request it lets through is answered by the real server, byte
for byte. It only adds the faults a real server cannot be made to produce on demand: a 500 on
one route, and a streamed response cut off after a few events (the connection closed without
the terminating chunk, as when a pod dies or a proxy times out mid-stream). Listens on
127.0.0.1 only; threads are daemons and the server is shut down by the fixture.
"""

from __future__ import annotations

import http.client
import itertools
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from urllib.parse import urlsplit

from local_stack.loopback_proxy import UPSTREAM_TIMEOUT_S, LoopbackProxy


@dataclass
class Fault:
    """``status`` answers ``path`` (POST) with that status and ``body``; ``cut_after_events``
    relays that many server-sent events of a streamed answer on ``path`` and then hangs up."""

    path: str = "/v1/chat/completions"
    status: int | None = None
    body: str = ""
    cut_after_events: int | None = None


class FaultProxy(LoopbackProxy):
    def __init__(self, upstream: str, fault: Fault) -> None:
        super().__init__()
        target = urlsplit(upstream)
        self.upstream = (target.hostname, target.port)
        self.fault = fault
        self.hits: list[str] = []

    def handle(self, request: BaseHTTPRequestHandler) -> None:
        self.hits.append(f"{request.command} {request.path}")
        body = self.body(request)
        fault = self.fault
        on_path = request.path == fault.path
        if request.command == "POST" and on_path and fault.status is not None:
            self.answer(request, fault.status, {"Content-Type": "text/plain"}, fault.body.encode())
            return
        events = itertools.count(1)
        cut = fault.cut_after_events if on_path else None
        self.relay(request, http.client.HTTPConnection(*self.upstream, timeout=UPSTREAM_TIMEOUT_S), body,
                   streamed=lambda response: response.getheader("Content-Type", "").startswith("text/event-stream"),
                   cut=(lambda line: line.startswith(b"data:") and next(events) >= cut) if cut is not None else None)

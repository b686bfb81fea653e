"""A small fault-injecting HTTP proxy in front of the real vLLM server.

Not an imitation of vLLM: every request it lets through is answered by the real server, byte
for byte. It only adds the faults a real server cannot be made to produce on demand: a 500 on
one route, and a streamed response cut off after a few events (the connection closed without
the terminating chunk, as when a pod dies or a proxy times out mid-stream). Listens on
127.0.0.1 only; threads are daemons and the server is shut down by the fixture.
"""

from __future__ import annotations

import http.client
import socket
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "content-length"}
UPSTREAM_TIMEOUT_S = 120


@dataclass
class Fault:
    """``status`` answers ``path`` (POST) with that status and ``body``; ``cut_after_events``
    relays that many server-sent events of a streamed answer on ``path`` and then hangs up."""

    path: str = "/v1/chat/completions"
    status: int | None = None
    body: str = ""
    cut_after_events: int | None = None


class FaultProxy:
    def __init__(self, upstream: str, fault: Fault) -> None:
        target = urlsplit(upstream)
        self.upstream = (target.hostname, target.port)
        self.fault = fault
        self.hits: list[str] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="fault-proxy", daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    def _handler(self):
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # keep test output quiet
                pass

            def do_GET(self) -> None:
                self._forward()

            def do_POST(self) -> None:
                self._forward()

            def _forward(self) -> None:
                proxy.hits.append(f"{self.command} {self.path}")
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                fault = proxy.fault
                if self.command == "POST" and self.path == fault.path and fault.status is not None:
                    payload = fault.body.encode()
                    self.send_response(fault.status)
                    self.send_header("Content-Type", "text/plain")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                upstream = http.client.HTTPConnection(*proxy.upstream, timeout=UPSTREAM_TIMEOUT_S)
                try:
                    headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP | {"host"}}
                    upstream.request(self.command, self.path, body=body or None, headers=headers)
                    response = upstream.getresponse()
                    streamed = response.getheader("Content-Type", "").startswith("text/event-stream")
                    self.send_response(response.status)
                    for key, value in response.getheaders():
                        if key.lower() not in HOP_BY_HOP:
                            self.send_header(key, value)
                    if not streamed:
                        payload = response.read()
                        self.send_header("Content-Length", str(len(payload)))
                        self.end_headers()
                        self.wfile.write(payload)
                        return
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    cut = fault.cut_after_events if self.path == fault.path else None
                    self._relay_events(response, cut)
                finally:
                    upstream.close()

            def _relay_events(self, response, cut: int | None) -> None:
                events = 0
                while line := response.readline():
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
                    self.wfile.flush()
                    if line.startswith(b"data:"):
                        events += 1
                        if cut is not None and events >= cut:
                            # Hang up mid-body: no terminating chunk, no [DONE].
                            self.close_connection = True
                            self.connection.shutdown(socket.SHUT_RDWR)
                            return
                self.wfile.write(b"0\r\n\r\n")

        return Handler

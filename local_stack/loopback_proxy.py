"""What the local fault proxies share (local_stack/aws_faults.py, local_stack/kube_faults.py,
tests/serving/fault_proxy.py): a threaded HTTP server on 127.0.0.1 whose every request goes to the
proxy's ``handle``, the ways to answer one (a status of the proxy's own, the upstream's answer
relayed whole or line by line and maybe cut mid-body, no answer at all), and start and stop as a
context manager. Threads are daemons; ``__exit__`` shuts the server down.
"""

from __future__ import annotations

import http.client
import socket
import threading
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "content-length"}
UPSTREAM_TIMEOUT_S = 300


class FaultBook:
    """The fault proxies' faults, each answered at most its ``times``, taken under a lock so that
    concurrent requests never exceed them: ``seen`` counts the requests by name, ``injected``
    lists (request, kind) of each fault taken."""

    def __init__(self, faults: list[Any]) -> None:
        self.faults = list(faults)
        self.left = [fault.times for fault in self.faults]
        self.lock = threading.Lock()
        self.injected: list[tuple[str, str]] = []
        self.seen: Counter[str] = Counter()

    def take(self, seen_as: str, request: str, matches: Callable[[Any], bool]) -> Any:
        """The first fault with tries left that ``matches`` (called under the lock), or None."""
        with self.lock:
            self.seen[seen_as] += 1
            for i, fault in enumerate(self.faults):
                if self.left[i] and matches(fault):
                    self.left[i] -= 1
                    self.injected.append((request, fault.kind))
                    return fault
        return None


class LoopbackProxy:
    """Subclasses implement ``handle(request)`` with the helpers below; ``scheme`` names what the
    listening socket speaks (a subclass may wrap it in TLS)."""

    scheme = "http"

    def __init__(self, port: int = 0) -> None:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # keep the callers' output quiet
                pass

            def _any(self) -> None:
                proxy.handle(self)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _any

        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name=type(self).__name__, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"{self.scheme}://{host}:{port}"

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    def serve_forever(self) -> None:
        self._server.serve_forever()

    def handle(self, request: BaseHTTPRequestHandler) -> None:
        raise NotImplementedError

    # -- answers ---------------------------------------------------------------------------------
    @staticmethod
    def body(request: BaseHTTPRequestHandler) -> bytes:
        return request.rfile.read(int(request.headers.get("Content-Length") or 0))

    @staticmethod
    def answer(request: BaseHTTPRequestHandler, status: int, headers: dict[str, str], data: bytes) -> None:
        request.send_response(status)
        for key, value in headers.items():
            request.send_header(key, value)
        request.send_header("Content-Length", str(len(data)))
        request.end_headers()
        request.wfile.write(data)

    @staticmethod
    def hang_up(request: BaseHTTPRequestHandler) -> None:
        """Close the connection without a word more."""
        request.close_connection = True

    @staticmethod
    def relay(request: BaseHTTPRequestHandler, upstream: http.client.HTTPConnection, body: bytes, *,
              answer: bool = True, streamed: Callable[[http.client.HTTPResponse], bool] = lambda _: False,
              cut: Callable[[bytes], bool] | None = None, keep_host: bool = False) -> None:
        """Send the request on and relay the answer: whole, or line by line as it comes when
        ``streamed`` says so or ``cut`` is given, hanging up mid-body once ``cut(line)`` says so;
        with ``answer`` false the upstream answer is read and dropped (the caller hangs up)."""
        try:
            skip = HOP_BY_HOP if keep_host else HOP_BY_HOP | {"host"}
            headers = {k: v for k, v in request.headers.items() if k.lower() not in skip}
            upstream.request(request.command, request.path, body=body or None, headers=headers)
            response = upstream.getresponse()
            if not answer:
                response.read()
                return
            request.send_response_only(response.status, response.reason)
            for key, value in response.getheaders():
                if key.lower() not in HOP_BY_HOP:
                    request.send_header(key, value)
            if cut is None and not streamed(response):
                payload = response.read()
                request.send_header("Content-Length", str(len(payload)))
                request.end_headers()
                if request.command != "HEAD":
                    request.wfile.write(payload)
                return
            request.send_header("Transfer-Encoding", "chunked")
            request.end_headers()
            while line := response.readline():
                request.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
                request.wfile.flush()
                if cut is not None and cut(line):
                    # Hang up mid-body: no terminating chunk.
                    request.close_connection = True
                    request.connection.shutdown(socket.SHUT_RDWR)
                    return
            request.wfile.write(b"0\r\n\r\n")
        finally:
            upstream.close()

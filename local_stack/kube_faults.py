"""A fault-injecting TLS proxy in front of the local Kubernetes API server: a stand-in for what a
busy or restarting EKS control plane answers, which the local one never does on demand.

It terminates TLS with a certificate it makes for 127.0.0.1 (its own CA), and sends each request
on to the API server over TLS as the kubeconfig's user (its client certificate, or the bearer
token the client sent), so every request it lets through is answered by the real API server. A
kubeconfig for clients (``kubeconfig``) names the proxy and its CA, with the same user.

Chosen requests, by method and a path pattern, are answered instead with one of these, each a
bounded number of times:

- ``429``: too many requests, with ``Retry-After: 1``, as API Priority and Fairness rejects a
  request (Kubernetes docs, "API Priority and Fairness");
- ``500`` and ``503``: a Status object of that code, as the API server answers when etcd or an
  aggregated API is unavailable;
- ``drop``: the connection closed before the request went on;
- ``lost``: the request goes on and takes effect, then the connection is closed unanswered;
- ``cut``: the answer relayed for a while, then the connection closed mid-body: a watch stream
  the server ends, or a load balancer's idle timeout.

Listens on 127.0.0.1 only; threads are daemons, stopped with the proxy.
"""

from __future__ import annotations

import base64
import datetime
import http.client
import json
import re
import socket
import ssl
import tempfile
import threading
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import yaml

KINDS = ("429", "500", "503", "drop", "lost", "cut")
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "content-length"}
UPSTREAM_TIMEOUT_S = 300
REASONS = {429: "TooManyRequests", 500: "InternalError", 503: "ServiceUnavailable"}


@dataclass
class KubeFault:
    """Answer requests of ``method`` whose path and query match ``path`` (a regex, searched) with ``kind``,
    at most ``times`` times; ``cut`` relays ``cut_after`` lines of the answer first."""

    method: str
    path: str
    kind: str
    times: int = 1
    cut_after: int = 1

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"fault kind {self.kind!r} is not one of {', '.join(KINDS)}")
        re.compile(self.path)


def _certificate(directory: Path) -> tuple[Path, Path, str]:
    """A CA and a serving certificate for IP 127.0.0.1 it signs: (cert, key, CA as base64 PEM)."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)

    def build(subject: str, issuer: str, key, signer, ca: bool) -> x509.Certificate:
        builder = (x509.CertificateBuilder()
                   .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
                   .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if not ca:
            builder = (builder.add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                                             critical=False)
                       .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False))
        return builder.sign(signer, hashes.SHA256())

    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = build("kube-fault-proxy-ca", "kube-fault-proxy-ca", ca_key, ca_key, ca=True)
    cert = build("127.0.0.1", "kube-fault-proxy-ca", key, ca_key, ca=False)
    cert_path, key_path = directory / "tls.crt", directory / "tls.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path, base64.b64encode(ca.public_bytes(serialization.Encoding.PEM)).decode()


def _data(entry: dict, name: str, directory: Path) -> str | None:
    """A kubeconfig entry's ``name`` (file) or ``name-data`` (inline), as a file path."""
    if entry.get(f"{name}-data"):
        path = directory / f"upstream-{name}"
        path.write_bytes(base64.b64decode(entry[f"{name}-data"]))
        return str(path)
    return entry.get(name)


class KubeFaultProxy:
    """The proxy; ``injected`` lists (method path, kind) of each fault answered, ``seen`` counts the
    requests by method and path."""

    def __init__(self, kubeconfig: str, faults: list[KubeFault]) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="kube-fault-proxy-")
        directory = Path(self._dir.name)
        config = yaml.safe_load(Path(kubeconfig).read_text())
        context = next(c["context"] for c in config["contexts"] if c["name"] == config["current-context"])
        cluster = next(c["cluster"] for c in config["clusters"] if c["name"] == context["cluster"])
        user = next(u["user"] for u in config["users"] if u["name"] == context["user"])
        server = urlsplit(cluster["server"])
        self.upstream = (server.hostname, server.port or 443)
        self.upstream_tls = ssl.create_default_context(cafile=_data(cluster, "certificate-authority", directory))
        if _data(user, "client-certificate", directory):
            self.upstream_tls.load_cert_chain(_data(user, "client-certificate", directory),
                                              _data(user, "client-key", directory))
        self.faults = list(faults)
        self.left = [fault.times for fault in self.faults]
        self.lock = threading.Lock()
        self.injected: list[tuple[str, str]] = []
        self.seen: Counter[str] = Counter()
        cert, key, ca_data = _certificate(directory)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        serving = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        serving.load_cert_chain(cert, key)
        self._server.socket = serving.wrap_socket(self._server.socket, server_side=True)
        self._thread = threading.Thread(target=self._server.serve_forever, name="kube-fault-proxy", daemon=True)
        host, port = self._server.server_address[:2]
        self.kubeconfig = str(directory / "kubeconfig")
        proxied = {**config, "clusters": [{"name": context["cluster"],
                                           "cluster": {"server": f"https://{host}:{port}",
                                                       "certificate-authority-data": ca_data}}]}
        Path(self.kubeconfig).write_text(yaml.safe_dump(proxied))

    def __enter__(self) -> KubeFaultProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)
        self._dir.cleanup()

    def _take(self, method: str, path: str) -> KubeFault | None:
        with self.lock:
            self.seen[f"{method} {urlsplit(path).path}"] += 1
            for i, fault in enumerate(self.faults):
                if self.left[i] and fault.method == method and re.search(fault.path, path):
                    self.left[i] -= 1
                    self.injected.append((f"{method} {path}", fault.kind))
                    return fault
        return None

    def _handler(self):
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                self._handle()

            do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_GET

            def _handle(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                fault = proxy._take(self.command, self.path)
                if fault is not None and fault.kind in ("drop", "lost"):
                    if fault.kind == "lost":
                        self._forward(body, cut_after=None, answer=False)
                    self.close_connection = True
                    return
                if fault is not None and fault.kind != "cut":
                    code = int(fault.kind)
                    status = json.dumps({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code,
                                         "reason": REASONS[code], "message": "injected by the fault proxy"}).encode()
                    self.send_response(code)
                    self.send_header("Content-Type", "application/json")
                    if code == 429:
                        self.send_header("Retry-After", "1")
                    self.send_header("Content-Length", str(len(status)))
                    self.end_headers()
                    self.wfile.write(status)
                    return
                self._forward(body, cut_after=fault.cut_after if fault else None)

            def _forward(self, body: bytes, cut_after: int | None, answer: bool = True) -> None:
                upstream = http.client.HTTPSConnection(*proxy.upstream, timeout=UPSTREAM_TIMEOUT_S,
                                                       context=proxy.upstream_tls)
                try:
                    headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP | {"host"}}
                    upstream.request(self.command, self.path, body=body or None, headers=headers)
                    response = upstream.getresponse()
                    if not answer:
                        response.read()
                        return
                    self.send_response_only(response.status, response.reason)
                    for key, value in response.getheaders():
                        if key.lower() not in HOP_BY_HOP:
                            self.send_header(key, value)
                    if response.getheader("Transfer-Encoding", "").lower() != "chunked" and cut_after is None:
                        payload = response.read()
                        self.send_header("Content-Length", str(len(payload)))
                        self.end_headers()
                        self.wfile.write(payload)
                        return
                    # Streamed (a watch, a log): relayed line by line as it comes.
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    lines = 0
                    while line := response.readline():
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
                        self.wfile.flush()
                        lines += 1
                        if cut_after is not None and lines >= cut_after:
                            # Hang up mid-body: no terminating chunk.
                            self.close_connection = True
                            self.connection.shutdown(socket.SHUT_RDWR)
                            return
                    self.wfile.write(b"0\r\n\r\n")
                finally:
                    upstream.close()

        return Handler

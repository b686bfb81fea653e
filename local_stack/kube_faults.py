"""A fault-injecting TLS proxy in front of the local Kubernetes API server: a stand-in for what a
busy or restarting EKS control plane answers, which the local one never does on demand.

It terminates TLS with a certificate it makes for 127.0.0.1 (its own CA), and sends each request
on to the API server over TLS as the kubeconfig's user (its client certificate, or the bearer
token the client sent: an EKS token, when the EKS clusters are served through it), so every
request it lets through is answered by the real API server. A
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
import itertools
import json
import re
import ssl
import tempfile
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import urlsplit

import yaml

from local_stack.loopback_proxy import UPSTREAM_TIMEOUT_S, FaultBook, LoopbackProxy

KINDS = ("429", "500", "503", "drop", "lost", "cut")
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


class KubeFaultProxy(FaultBook, LoopbackProxy):
    """The proxy; ``injected`` lists (method path, kind) of each fault answered, ``seen`` counts the
    requests by method and path; ``kubeconfig`` is the clients' way to it."""

    scheme = "https"

    def __init__(self, kubeconfig: str, faults: list[KubeFault], client_certificate: bool = True) -> None:
        """``client_certificate``: send requests on with the kubeconfig user's client certificate,
        if it has one; off, with only what the client sent (an EKS token checked by the API
        server's token authenticator, which a client certificate would take the place of)."""
        LoopbackProxy.__init__(self)
        FaultBook.__init__(self, faults)
        self._dir = tempfile.TemporaryDirectory(prefix="kube-fault-proxy-")
        directory = Path(self._dir.name)
        config = yaml.safe_load(Path(kubeconfig).read_text())
        context = next(c["context"] for c in config["contexts"] if c["name"] == config["current-context"])
        cluster = next(c["cluster"] for c in config["clusters"] if c["name"] == context["cluster"])
        user = next(u["user"] for u in config["users"] if u["name"] == context["user"])
        server = urlsplit(cluster["server"])
        self.upstream = (server.hostname, server.port or 443)
        self.upstream_tls = ssl.create_default_context(cafile=_data(cluster, "certificate-authority", directory))
        if client_certificate and _data(user, "client-certificate", directory):
            self.upstream_tls.load_cert_chain(_data(user, "client-certificate", directory),
                                              _data(user, "client-key", directory))
        cert, key, ca_data = _certificate(directory)
        serving = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        serving.load_cert_chain(cert, key)
        self._server.socket = serving.wrap_socket(self._server.socket, server_side=True)
        self.kubeconfig = str(directory / "kubeconfig")
        proxied = {**config, "clusters": [{"name": context["cluster"],
                                           "cluster": {"server": self.base_url, "certificate-authority-data": ca_data}}]}
        Path(self.kubeconfig).write_text(yaml.safe_dump(proxied))

    def __exit__(self, *exc) -> None:
        super().__exit__(*exc)
        self._dir.cleanup()

    def _take(self, method: str, path: str) -> KubeFault | None:
        return self.take(f"{method} {urlsplit(path).path}", f"{method} {path}",
                         lambda fault: fault.method == method and re.search(fault.path, path) is not None)

    def handle(self, request: BaseHTTPRequestHandler) -> None:
        body = self.body(request)
        fault = self._take(request.command, request.path)
        if fault is None or fault.kind in ("lost", "cut"):
            lines = itertools.count(1)
            # Streamed answers (a watch, a log) are relayed line by line as they come.
            self.relay(request, http.client.HTTPSConnection(*self.upstream, timeout=UPSTREAM_TIMEOUT_S,
                                                            context=self.upstream_tls), body,
                       answer=fault is None or fault.kind == "cut",
                       streamed=lambda response: response.getheader("Transfer-Encoding", "").lower() == "chunked",
                       cut=(lambda _line: next(lines) >= fault.cut_after) if fault and fault.kind == "cut" else None)
        if fault is None or fault.kind == "cut":
            return
        if fault.kind in ("drop", "lost"):
            self.hang_up(request)
            return
        code = int(fault.kind)
        status = json.dumps({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code,
                             "reason": REASONS[code], "message": "injected by the fault proxy"}).encode()
        self.answer(request, code, {"Content-Type": "application/json", **({"Retry-After": "1"} if code == 429 else {})},
                    status)

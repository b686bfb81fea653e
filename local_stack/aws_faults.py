"""A fault-injecting loopback proxy in front of the local AWS: a stand-in for what a real account
throws at a run and the moto server never does.

Every request it lets through is answered by the moto server (or the gap filler in front of it),
byte for byte. Chosen operations, by name ("eks.CreateCluster", or "eks.*"), are answered instead
with one of these, each a bounded number of times, with a probability drawn from a seeded RNG:

- ``throttle``: the service's own throttling error in its protocol's wire shape: EC2's
  ``RequestLimitExceeded`` (HTTP 503, EC2 API reference, "Request throttling"), the query
  services' ``Throttling`` (IAM, STS), S3's ``SlowDown`` (503), the JSON and REST-JSON services'
  ``ThrottlingException`` (EKS, FSx, Secrets Manager);
- ``500`` and ``503``: an internal error and a service unavailable, with an empty body;
- ``slow``: the answer, ``delay_s`` late;
- ``drop``: the connection closed before the request went on: AWS never saw it;
- ``lost``: the request goes on and takes effect, then the connection is closed without an
  answer: a create that happened although the caller never heard back.

botocore's retry handler sees each as it would AWS's (a retryable error code or status, a closed
connection), so what is tested is the client's retries, then the step's and Airflow's. Requests
are named with botocore's service models (local_stack/request_log.py). Listens on 127.0.0.1 only.

    python -m local_stack.aws_faults --upstream http://127.0.0.1:5055 --port 5056 \\
        --fault eks.CreateCluster=throttle:3 --fault 'fsx.*=503:2@0.5' --seed 7
"""

from __future__ import annotations

import argparse
import http.client
import random
import re
import time
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, urlsplit

from local_stack.loopback_proxy import UPSTREAM_TIMEOUT_S, FaultBook, LoopbackProxy

KINDS = ("throttle", "500", "503", "slow", "drop", "lost")


@dataclass
class Fault:
    """Answer ``operation`` ("service.Operation", or "service.*") with ``kind``, at most ``times``
    times, each matching request with ``probability``; ``slow`` waits ``delay_s`` first."""

    operation: str
    kind: str
    times: int = 1
    probability: float = 1.0
    delay_s: float = 5.0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"fault kind {self.kind!r} is not one of {', '.join(KINDS)}")
        if not re.fullmatch(r"[a-z0-9-]+\.(\*|[A-Za-z0-9]+)", self.operation):
            raise ValueError(f"fault operation {self.operation!r} is not service.Operation or service.*")
        if self.times < 1 or not 0 < self.probability <= 1:
            raise ValueError(f"fault {self.operation}: times must be >= 1 and probability in (0, 1]")

    @classmethod
    def parse(cls, spec: str) -> Fault:
        """``service.Operation=kind[:times][@probability]``, as the command line takes it."""
        operation, _, rest = spec.partition("=")
        rest, _, probability = rest.partition("@")
        kind, _, times = rest.partition(":")
        return cls(operation, kind, int(times or 1), float(probability or 1))

    def matches(self, service: str, operation: str) -> bool:
        wanted_service, _, wanted = self.operation.partition(".")
        return wanted_service == service and wanted in ("*", operation)


def _throttling(protocol: str) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body of the protocol's throttling error, as botocore's retry handler
    knows them (botocore/data/_retry.json: throttling codes and the 429 status)."""
    request_id = str(uuid.uuid4())
    if protocol == "ec2":
        return 503, {"Content-Type": "text/xml"}, (
            f"<Response><Errors><Error><Code>RequestLimitExceeded</Code><Message>Request limit exceeded."
            f"</Message></Error></Errors><RequestID>{request_id}</RequestID></Response>").encode()
    if protocol == "query":
        return 400, {"Content-Type": "text/xml"}, (
            f"<ErrorResponse><Error><Type>Sender</Type><Code>Throttling</Code><Message>Rate exceeded</Message>"
            f"</Error><RequestId>{request_id}</RequestId></ErrorResponse>").encode()
    if protocol == "rest-xml":  # S3
        return 503, {"Content-Type": "application/xml"}, (
            f"<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message>"
            f"<RequestId>{request_id}</RequestId></Error>").encode()
    if protocol == "json":
        return 400, {"Content-Type": "application/x-amz-json-1.1"}, \
            b'{"__type": "ThrottlingException", "message": "Rate exceeded"}'
    return 429, {"Content-Type": "application/json", "x-amzn-ErrorType": "ThrottlingException"}, \
        b'{"message": "Rate exceeded"}'


class AwsFaultProxy(FaultBook, LoopbackProxy):
    """The proxy; ``injected`` lists (operation, kind) of each fault answered, ``seen`` counts
    the requests per operation."""

    def __init__(self, upstream: str, faults: list[Fault], seed: int = 0, port: int = 0) -> None:
        LoopbackProxy.__init__(self, port)
        FaultBook.__init__(self, faults)
        target = urlsplit(upstream)
        self.upstream = (target.hostname, target.port)
        self.rng = random.Random(seed)

    def _take(self, service: str, operation: str) -> Fault | None:
        """The first matching fault with tries left that its draw lets through."""
        name = f"{service}.{operation}"
        return self.take(name, name, lambda fault: fault.matches(service, operation)
                         and self.rng.random() < fault.probability)

    def handle(self, request: BaseHTTPRequestHandler) -> None:
        from local_stack.request_log import CREDENTIAL, _candidates, _model, _operation

        body = self.body(request)
        headers = {k.lower(): v for k, v in request.headers.items()}
        credential = CREDENTIAL.search(headers.get("authorization", ""))
        fault = protocol = None
        if credential:
            url = urlsplit(request.path)
            service = credential["service"]
            operation = _operation(service, request.command, headers.get("host", ""), url.path or "/",
                                   parse_qs(url.query, keep_blank_values=True), headers, body)
            if operation:
                fault = self._take(service, operation)
                protocol = _model(next(_candidates(service, url.path))).protocol if fault else None
        if fault is not None and fault.kind == "slow":
            time.sleep(fault.delay_s)
        if fault is None or fault.kind == "slow":
            self._send_on(request, body)
        elif fault.kind in ("drop", "lost"):
            if fault.kind == "lost":
                self._send_on(request, body, answer=False)
            self.hang_up(request)
        else:
            self.answer(request, *(_throttling(protocol) if fault.kind == "throttle" else (int(fault.kind), {}, b"")))

    def _send_on(self, request: BaseHTTPRequestHandler, body: bytes, answer: bool = True) -> None:
        # The Host header as the client signed it (moto tells a path-style S3 request by it).
        self.relay(request, http.client.HTTPConnection(*self.upstream, timeout=UPSTREAM_TIMEOUT_S), body,
                   answer=answer, keep_host=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--upstream", required=True, help="the local AWS's URL")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--fault", action="append", default=[], type=Fault.parse,
                        metavar="SERVICE.OPERATION=KIND[:TIMES][@PROBABILITY]", help=f"kinds: {', '.join(KINDS)}")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    proxy = AwsFaultProxy(args.upstream, args.fault, seed=args.seed, port=args.port)
    print(f"AWS fault proxy on {proxy.base_url} in front of {args.upstream}", flush=True)
    proxy.serve_forever()

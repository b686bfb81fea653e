"""The local AWS for a running Airflow: the moto server, with what moto lacks answered in front of it.

Airflow's scheduler workers and triggerer are separate processes, so the client-side gap filler
the tests install (local_stack/aws_gaps.py) cannot reach them. Here the same ``AwsGaps`` sits in
the moto server's own process as WSGI middleware: requests for the operations moto lacks (EKS
add-ons, FSx data repository associations) are answered from it, and moto's answers to the
operations it completes (a first look that says CREATING, FSx's Lifecycle and MountName) are
completed by it. Requests are matched to operations with botocore's own service models (the
``requestUri`` of each EKS operation, the ``X-Amz-Target`` of FSx's JSON protocol), and answers
are written in each protocol's wire shape, so the tasks' boto3 and aiobotocore clients parse
them as they would AWS's.

    python -m local_stack.aws --port 5055     # listens on 127.0.0.1 only
"""

from __future__ import annotations

import argparse
import json
import os
import re
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime
from functools import cache
from typing import Any
from urllib.parse import parse_qs, unquote

import botocore.session

from local_stack.aws_gaps import ACCOUNT, BOTOCORE_NAMES, HOLD_KINDS, AwsGaps
from local_stack.sts_presigned import PresignedCallerIdentity

# What is created reports CREATING for this long at least (and at its first look always). On AWS a
# node group takes minutes; here it would be ACTIVE at once. Every wait resumes no sooner than 10 s
# after it deferred all the same (llm_on_eks.triggers.settled, against apache/airflow#72716), so
# as long keeps a trigger's polls on AWS's path without adding to every local wait.
SETTLE_S = 10.0
# The IAM user a local Airflow is: the demo's and the tests' AWS connection, mapped to a cluster admin.
AIRFLOW_USER = "airflow"
AIRFLOW_ARN = f"arn:aws:iam::{ACCOUNT}:user/{AIRFLOW_USER}"
# The hold of a deleted node group (``--hold nodegroup_delete=SECONDS``).
NODEGROUP_DELETE = "nodegroup_delete"
CREDENTIAL = re.compile(r"Credential=[^/]+/\d{8}/(?P<region>[^/]+)/(?P<service>[^/]+)/aws4_request")


@cache
def _service_model(service: str):
    return botocore.session.get_session().get_service_model(BOTOCORE_NAMES.get(service, service))


@cache
def _rest_routes(service: str) -> list[tuple[str, re.Pattern, Any]]:
    """(method, path pattern, operation model) of each operation the gap filler handles."""
    model = _service_model(service)
    routes = []
    for name in (*AwsGaps.ANSWERED.get(service, ()), *(op for s, op in AwsGaps.COMPLETED if s == service)):
        operation = model.operation_model(name)
        path = operation.http["requestUri"].split("?")[0]
        pattern = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(path))
        routes.append((operation.http["method"], re.compile(pattern + "$"), operation))
    return routes


def _operation(service: str, method: str, path: str, target: str | None):
    """The operation model a request is for, when the gap filler handles it here; else None.
    Query-protocol services (EC2) are not routed here: their form-encoded requests and XML answers
    are answered by moto, the gap filler's EC2 answers reach the tests' own processes only."""
    model = _service_model(service)
    if model.protocol not in ("json", "rest-json"):
        return None, {}
    if model.protocol == "json":
        name = (target or "").rpartition(".")[2]
        handled = {*AwsGaps.ANSWERED.get(service, ()), *(op for s, op in AwsGaps.COMPLETED if s == service)}
        return (model.operation_model(name), {}) if name in handled else (None, {})
    for route_method, pattern, operation in _rest_routes(service):
        match = pattern.match(path)
        if route_method == method and match:
            return operation, {k: unquote(v) for k, v in match.groupdict().items()}
    return None, {}


def _params(operation, labels: dict[str, str], query: dict[str, list[str]], body: bytes) -> dict[str, Any]:
    """The request's parameters by member name, as botocore built them (rest-json or json)."""
    payload = json.loads(body) if body.strip() else {}
    if operation.service_model.protocol == "json":
        return payload
    params: dict[str, Any] = {}
    for member, shape in (operation.input_shape.members.items() if operation.input_shape else ()):
        where = shape.serialization.get("location")
        wire = shape.serialization.get("name", member)
        if where == "uri" and wire in labels:
            params[member] = labels[wire]
        elif where == "querystring" and wire in query:
            params[member] = query[wire][0]
        elif where is None and wire in payload:
            params[member] = payload[wire]
    return params


def _wire(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.timestamp()  # both protocols carry timestamps as epoch seconds
    if isinstance(value, dict):
        return {k: _wire(v) for k, v in value.items() if k != "ResponseMetadata"}
    if isinstance(value, list):
        return [_wire(v) for v in value]
    return value


def _encode(operation, status: int, parsed: dict[str, Any]) -> tuple[str, list[tuple[str, str]], bytes]:
    protocol = operation.service_model.protocol
    content_type = "application/x-amz-json-1.1" if protocol == "json" else "application/json"
    headers = [("Content-Type", content_type)]
    if "Error" in parsed:
        code, message = parsed["Error"]["Code"], parsed["Error"]["Message"]
        if protocol == "json":
            body = {"__type": code, "message": message}
        else:
            headers.append(("x-amzn-ErrorType", code))
            body = {"message": message}
    else:
        body = _wire(parsed)
    data = json.dumps(body).encode()
    return f"{status} {'OK' if status < 300 else 'Error'}", [*headers, ("Content-Length", str(len(data)))], data


class GapsMiddleware:
    """WSGI middleware: answer or complete the gap filler's operations, pass the rest to moto."""

    def __init__(self, moto_app: Callable, gaps: AwsGaps) -> None:
        self.moto_app, self.gaps = moto_app, gaps

    def __call__(self, environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        credential = CREDENTIAL.search(environ.get("HTTP_AUTHORIZATION", ""))
        if not credential or credential["service"] not in AwsGaps.ANSWERED:
            return self.moto_app(environ, start_response)
        operation, labels = _operation(credential["service"], environ["REQUEST_METHOD"], environ.get("PATH_INFO", ""),
                                       environ.get("HTTP_X_AMZ_TARGET"))
        if operation is None:
            return self.moto_app(environ, start_response)
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        service = operation.service_model.endpoint_prefix
        if operation.name in AwsGaps.ANSWERED.get(service, ()):
            # Answered here, unseen by moto: logged in moto's request log all the same, as moto logs
            # its own requests (when its recorder is on; local_stack/request_log.py reads it).
            from local_stack.request_log import record_answered

            record_answered(environ, body)
            params = _params(operation, labels, parse_qs(environ.get("QUERY_STRING", "")), body)
            status, parsed = self.gaps.answer(operation, params, credential["region"])
            line, headers, data = _encode(operation, status, parsed)
            start_response(line, headers)
            return [data]
        return self._completed(environ, start_response, operation, body, labels, credential["region"])

    def _completed(self, environ, start_response, operation, body: bytes, labels, region: str) -> Iterable[bytes]:
        import io

        environ["wsgi.input"] = io.BytesIO(body)
        captured: dict[str, Any] = {}

        def capture(status: str, headers: list[tuple[str, str]], exc_info=None):
            captured.update(status=status, headers=headers)

        data = b"".join(self.moto_app(environ, capture))
        code = int(captured["status"].split()[0])
        if code < 300 and data.strip():
            parsed = json.loads(data)
            self.gaps.complete(operation, parsed, code,
                               _params(operation, labels, parse_qs(environ.get("QUERY_STRING", "")), body), region)
            data = json.dumps(parsed).encode()
        headers = [(k, v) for k, v in captured["headers"] if k.lower() != "content-length"]
        start_response(captured["status"], [*headers, ("Content-Length", str(len(data)))])
        return [data]


def iam_user(aws_url: str, name: str) -> dict[str, str]:
    """An IAM user of the local account and a new access key of its: an identity the local STS
    can check a token's signature for (moto knows the secret), as the Airflow identity."""
    import boto3

    iam = boto3.client("iam", endpoint_url=aws_url, region_name="us-east-1", aws_access_key_id="testing",
                       aws_secret_access_key="testing")
    if name not in {user["UserName"] for user in iam.list_users()["Users"]}:
        iam.create_user(UserName=name)
    return iam.create_access_key(UserName=name)["AccessKey"]


def _idempotent_file_system_creates() -> None:
    """moto 5.2.5 makes a new file system for every CreateFileSystem; FSx answers a request whose
    ClientRequestToken an earlier one carried with the file system that one made (FSx API
    reference, CreateFileSystem: the token "ensures idempotent creation"). That is what a resend
    meets: botocore resends a request whose answer was lost with the same token."""
    from moto.fsx.models import FSxBackend

    create = FSxBackend.create_file_system
    if getattr(create, "by_token", False):
        return

    def by_token(self, client_request_token: str | None = None, **kwargs: Any):
        made = self.__dict__.setdefault("_made_by_token", {})
        if client_request_token in made and made[client_request_token] in self.file_systems:
            return self.file_systems[made[client_request_token]]
        file_system = create(self, client_request_token=client_request_token, **kwargs)
        if client_request_token:
            made[client_request_token] = file_system.file_system_id
        return file_system

    by_token.by_token = True
    FSxBackend.create_file_system = by_token


def _held_nodegroup_deletes(hold_s: float) -> None:
    """moto 5.2.5 deletes a node group at once; EKS keeps it DELETING while its instances drain
    (minutes). With a hold (a delaying layer, like the gap filler's creation holds), a deleted node
    group reports DELETING for ``hold_s``, then goes at the next look, so a teardown's wait lasts
    (benchmarks/kill_steps.py kills it mid-wait)."""
    import time

    from moto.eks.models import EKSBackend

    delete, describe, listed, delete_cluster = (EKSBackend.delete_nodegroup, EKSBackend.describe_nodegroup,
                                                EKSBackend.list_nodegroups, EKSBackend.delete_cluster)

    def settle(backend: EKSBackend) -> None:
        gone_at = backend.__dict__.setdefault("_gone_at", {})
        for (cluster, name), at in list(gone_at.items()):
            if time.monotonic() >= at:
                del gone_at[(cluster, name)]
                if cluster in backend.clusters and name in backend.clusters[cluster].nodegroups:
                    delete(backend, cluster, name)

    def held_delete(self, cluster_name: str, nodegroup_name: str):
        settle(self)
        group = describe(self, cluster_name, nodegroup_name)  # refused as moto refuses
        if group.status != "DELETING":
            group.status = "DELETING"
            self._gone_at[(cluster_name, nodegroup_name)] = time.monotonic() + hold_s
        return group

    def settled(method):
        def call(self, *args, **kwargs):
            settle(self)
            return method(self, *args, **kwargs)
        return call

    EKSBackend.delete_nodegroup = held_delete
    EKSBackend.describe_nodegroup, EKSBackend.list_nodegroups, EKSBackend.delete_cluster = (
        settled(describe), settled(listed), settled(delete_cluster))


def make_server(port: int, gaps: AwsGaps | None, nodegroup_delete_s: float = 0.0):
    """The moto server on 127.0.0.1 with the EKS token's STS check in front (local_stack/
    sts_presigned.py) and, when given, the gap filler (the tests install theirs client-side); its
    FSx creates are idempotent by token, as FSx's are; a deleted node group stays DELETING for
    ``nodegroup_delete_s``."""
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
    from werkzeug.serving import make_server as werkzeug_server

    from local_stack.request_log import keep_out_of_cwd

    keep_out_of_cwd()  # moto's request recorder writes to a temp dir, not to "moto_recording" in the cwd (the repo)
    # AWS's managed policies (AmazonEKSClusterPolicy, ...) exist in moto only when loaded: the IAM
    # roles made with a cluster attach them (read when moto makes an account's IAM backend).
    os.environ["MOTO_IAM_LOAD_MANAGED_POLICIES"] = "true"
    _idempotent_file_system_creates()
    if nodegroup_delete_s:
        _held_nodegroup_deletes(nodegroup_delete_s)
    app = DomainDispatcherApplication(create_backend_app)
    app = PresignedCallerIdentity(GapsMiddleware(app, gaps) if gaps else app)
    return werkzeug_server("127.0.0.1", port, app, threaded=True, request_handler=MotoRequestHandler)


@contextmanager
def in_thread(gaps: AwsGaps | None) -> Iterator[str]:
    """``make_server`` on a free port in a daemon thread of this process, for a test session: its
    URL; shut down at the end."""
    import threading

    server = make_server(0, gaps)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=10)


def serve(port: int, settle_s: float = SETTLE_S, control_plane: str | None = None,
          holds: dict[str, float] | None = None) -> None:
    """``holds``: per kind of ``HOLD_KINDS``, CREATING this long; ``nodegroup_delete``, DELETING."""
    holds = dict(holds or {})
    deleting_s = holds.pop(NODEGROUP_DELETE, 0.0)
    server = make_server(port, AwsGaps(settle_s=settle_s, control_plane=control_plane, holds=holds), deleting_s)
    print(f"local AWS (moto + gap filler) on http://127.0.0.1:{server.server_port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--settle-s", type=float, default=SETTLE_S, help="CREATING at least this long")
    parser.add_argument("--control-plane", help="kubeconfig of the API server EKS clusters are served by")
    parser.add_argument("--hold", action="append", default=[], metavar="KIND=SECONDS",
                        help=f"CREATING this long for one kind ({', '.join(HOLD_KINDS)}), or DELETING this long "
                             f"({NODEGROUP_DELETE}): a delaying layer")
    args = parser.parse_args()
    holds = {kind: float(seconds) for kind, _, seconds in (h.partition("=") for h in args.hold)}
    serve(args.port, args.settle_s, args.control_plane, holds)

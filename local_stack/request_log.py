"""The AWS API calls an identity made, from the moto server's own request log, as IAM actions.

For a least-privilege test: which actions did an access key call? The answer is read from what the
server received, not from the product code's view of its calls. moto 5.2.5 has a request recorder
(moto/moto_api/_internal/recorder/models.py): switched on, it appends every request its Flask app
routes (moto/core/utils.py, ``convert_to_flask_response`` calls ``recorder._record_request``
before the handler, so a request that fails, an AccessDenied or a NoSuchEntity, is logged too) to
a JSON-lines file; the moto API controls it over HTTP:

    POST /moto-api/recorder/start-recording    (stop-recording, reset-recording)
    GET  /moto-api/recorder/download-recording

The recorder is one object per process (``moto.moto_api.recorder``) writing to one file
(MOTO_RECORDER_FILEPATH, default "moto_recording" in the cwd: the repo). ``keep_out_of_cwd`` (called
by local_stack/aws.py ``make_server``, so for an in-process server and for
``python -m local_stack.aws`` alike) points it at a temp dir of its own instead, removed at the
process's normal exit (not when it is killed by a signal, as ``stop_pid`` does: a small dir stays in
the temp dir then). Being one per process, it is shared by every in-process server: ``stop`` it.

What the log holds, and what it does not:

- what moto's Flask app routes; a request moto has no route for (a 404 of the server) is not in it;
- the operations the gap filler answers in front of moto (local_stack/aws.py ``GapsMiddleware``,
  ``AwsGaps.ANSWERED``: EKS add-ons, FSx data repository associations, Service Quotas) are written
  to the same log by the middleware (``record_answered``). Answered by the client-side gap filler
  (tests/aws's ``gaps`` fixture) they never leave the client, and are not in it;
- the EKS token's presigned STS GetCallerIdentity (local_stack/sts_presigned.py) is answered in
  front of everything and is not logged: it is the cluster's authenticator asking STS who signed a
  token, not an API call the identity's policy governs (GetCallerIdentity needs no permission).
  Had it reached moto, ``parse`` would skip it all the same;
- a request carries no answer in the log (the recorder logs requests), and implied permissions
  are not calls: iam:PassRole for the role an eks:CreateCluster passes, kms:Decrypt behind
  secretsmanager:GetSecretValue, s3:GetObject on a CopyObject's source.

Requests are matched to operations with botocore's service models, for each protocol: query/ec2
(``Action``), json (``X-Amz-Target``), smithy-rpc-v2-cbor (the path), rest-json and rest-xml (method,
``requestUri`` pattern, its literal query keys, required query and header members; the most
specific match wins). A signed request that matches no operation raises ``UnknownRequest``: a
least-privilege list must not miss a call silently.

    start(url); ...; actions(calls(url), key["AccessKeyId"])  ->  {"eks:DescribeCluster", ...}
"""

from __future__ import annotations

import base64
import json
import os
import re
import urllib.request
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cache
from typing import Any
from urllib.parse import parse_qs, urlsplit

import botocore.session

from local_stack.aws_gaps import BOTOCORE_NAMES

MOTO_DEFAULT_LOCATION = "moto_recording"  # moto's Recorder: relative, so in the cwd
CREDENTIAL = re.compile(r"Credential=(?P<key>[^/,\s]+)/\d{8}/(?P<region>[^/]+)/(?P<service>[^/]+)/aws4_request")

# The IAM service prefix, where it is not the signing name (the credential scope's service). Service
# Authorization Reference, "Actions, resources, and condition keys for AWS services":
# https://docs.aws.amazon.com/service-authorization/latest/reference/reference_policies_actions-resources-contextkeys.html
# (servicequotas, fsx, secretsmanager, eks, ec2, s3, iam, sts are their signing names already.)
IAM_PREFIXES = {
    "monitoring": "cloudwatch",  # CloudWatch signs as "monitoring"; its actions are cloudwatch:*
    "tagging": "tag",  # Resource Groups Tagging API
}

# Operations whose IAM action is not "<prefix>:<OperationName>". Sources: the Service Authorization
# Reference, "Actions defined by Amazon S3"
# (https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazons3.html) and the S3
# user guide, "Required permissions for Amazon S3 API operations"
# (https://docs.aws.amazon.com/AmazonS3/latest/userguide/using-with-s3-policy-actions.html).
ACTIONS = {
    # Listing a bucket's objects, either version of the API, and checking a bucket is there.
    ("s3", "ListObjects"): "s3:ListBucket",
    ("s3", "ListObjectsV2"): "s3:ListBucket",
    ("s3", "HeadBucket"): "s3:ListBucket",  # moto 5.2.5's own IAM check asks for "s3:HeadBucket"
    ("s3", "ListObjectVersions"): "s3:ListBucketVersions",
    ("s3", "ListBuckets"): "s3:ListAllMyBuckets",
    # An object's metadata is read with the permission to read the object.
    ("s3", "HeadObject"): "s3:GetObject",
    ("s3", "SelectObjectContent"): "s3:GetObject",
    # A multi-object delete is authorized object by object, as DeleteObject.
    ("s3", "DeleteObjects"): "s3:DeleteObject",
    # Multipart uploads and copies write with s3:PutObject (a copy also needs s3:GetObject on its
    # source, not a call of its own); aborting and listing them have actions of their own.
    ("s3", "CreateMultipartUpload"): "s3:PutObject",
    ("s3", "UploadPart"): "s3:PutObject",
    ("s3", "UploadPartCopy"): "s3:PutObject",
    ("s3", "CompleteMultipartUpload"): "s3:PutObject",
    ("s3", "CopyObject"): "s3:PutObject",
    ("s3", "ListParts"): "s3:ListMultipartUploadParts",
    ("s3", "ListMultipartUploads"): "s3:ListBucketMultipartUploads",
    # Bucket configuration: deleting one is authorized as putting it.
    ("s3", "DeleteBucketTagging"): "s3:PutBucketTagging",
    ("s3", "GetBucketEncryption"): "s3:GetEncryptionConfiguration",
    ("s3", "PutBucketEncryption"): "s3:PutEncryptionConfiguration",
    ("s3", "DeleteBucketEncryption"): "s3:PutEncryptionConfiguration",
    ("s3", "GetBucketLifecycleConfiguration"): "s3:GetLifecycleConfiguration",
    ("s3", "PutBucketLifecycleConfiguration"): "s3:PutLifecycleConfiguration",
    ("s3", "DeleteBucketLifecycle"): "s3:PutLifecycleConfiguration",
    ("s3", "GetBucketCors"): "s3:GetBucketCORS",
    ("s3", "PutBucketCors"): "s3:PutBucketCORS",
    ("s3", "DeleteBucketCors"): "s3:PutBucketCORS",
    ("s3", "GetPublicAccessBlock"): "s3:GetBucketPublicAccessBlock",
    ("s3", "PutPublicAccessBlock"): "s3:PutBucketPublicAccessBlock",
    ("s3", "DeletePublicAccessBlock"): "s3:PutBucketPublicAccessBlock",
    ("s3", "GetBucketNotificationConfiguration"): "s3:GetBucketNotification",
    ("s3", "PutBucketNotificationConfiguration"): "s3:PutBucketNotification",
    ("s3", "GetBucketReplication"): "s3:GetReplicationConfiguration",
    ("s3", "PutBucketReplication"): "s3:PutReplicationConfiguration",
    ("s3", "DeleteBucketReplication"): "s3:PutReplicationConfiguration",
    ("s3", "DeleteBucketOwnershipControls"): "s3:PutBucketOwnershipControls",
    ("s3", "GetObjectLockConfiguration"): "s3:GetBucketObjectLockConfiguration",
    ("s3", "PutObjectLockConfiguration"): "s3:PutBucketObjectLockConfiguration",
    # GetBucketTagging, PutBucketTagging, CreateBucket, DeleteBucket, GetObject, PutObject,
    # DeleteObject, GetBucketLocation, ... are s3:<OperationName>.
    # Lambda's Invoke is lambda:InvokeFunction (Service Authorization Reference, AWS Lambda).
    ("lambda", "Invoke"): "lambda:InvokeFunction",
    ("lambda", "InvokeWithResponseStream"): "lambda:InvokeFunction",
}
# S3 object operations on a given version (``?versionId=``) are authorized as the version's action
# (S3 user guide, "Required permissions for Amazon S3 API operations").
S3_VERSION_ACTIONS = {
    "s3:GetObject": "s3:GetObjectVersion",
    "s3:DeleteObject": "s3:DeleteObjectVersion",
    "s3:GetObjectTagging": "s3:GetObjectVersionTagging",
    "s3:PutObjectTagging": "s3:PutObjectVersionTagging",
    "s3:DeleteObjectTagging": "s3:DeleteObjectVersionTagging",
    "s3:GetObjectAcl": "s3:GetObjectVersionAcl",
    "s3:PutObjectAcl": "s3:PutObjectVersionAcl",
    "s3:GetObjectAttributes": "s3:GetObjectVersionAttributes",
}
# Actions no policy governs. STS API reference, GetCallerIdentity: "No permissions are required to
# perform this operation. If an administrator attaches a policy to your identity that explicitly
# denies access to the sts:GetCallerIdentity action, you can still perform this operation."
NO_PERMISSION_NEEDED = {"sts:GetCallerIdentity"}


@dataclass(frozen=True)
class Call:
    """One AWS API call in the log: who (access key), where, which operation, which IAM action."""

    service: str  # the signing name of the credential scope: "eks", "s3", "servicequotas"
    access_key_id: str
    region: str
    operation: str  # botocore's operation name: "DescribeCluster", "ListObjectsV2"
    action: str  # the IAM action: "eks:DescribeCluster", "s3:ListBucket"
    needs_permission: bool = True  # False for what no policy can deny (sts:GetCallerIdentity)


class UnknownRequest(ValueError):
    """A signed request in the log that matches no operation of the service's botocore model."""


# -- the recorder, over HTTP -----------------------------------------------------------------------
def _moto_api(moto_url: str, name: str, method: str = "POST") -> str:
    request = urllib.request.Request(f"{moto_url}/moto-api/recorder/{name}", method=method)
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.read().decode()


def start(moto_url: str) -> None:
    """Switch the server's recorder on: every request from now on is appended to its log."""
    _moto_api(moto_url, "start-recording")


def stop(moto_url: str) -> None:
    """Switch the recorder off (the log is kept). The recorder is one per process: switch it off
    when done, or the requests of later tests against any in-process server are logged too."""
    _moto_api(moto_url, "stop-recording")


def reset(moto_url: str) -> None:
    """Empty the log."""
    _moto_api(moto_url, "reset-recording")


def download(moto_url: str) -> str:
    """The log as the recorder keeps it: a JSON object a line (headers, method, url, body)."""
    return _moto_api(moto_url, "download-recording", method="GET")


def calls(moto_url: str) -> list[Call]:
    """The AWS API calls in the server's log, in the order they arrived."""
    return parse(download(moto_url))


def actions(log: Iterable[Call], access_key_id: str, needs_permission: bool | None = None) -> set[str]:
    """The IAM actions ``access_key_id`` called; ``needs_permission=True`` leaves out those no
    policy governs (sts:GetCallerIdentity)."""
    return {call.action for call in log if call.access_key_id == access_key_id
            and (needs_permission is None or call.needs_permission == needs_permission)}


# -- the recorder, in the server's process (local_stack/aws.py) ------------------------------------
def keep_out_of_cwd() -> str:
    """Point this process's moto recorder at a file in a temp dir of its own, not moto's default
    "moto_recording" in the cwd (the repo), unless MOTO_RECORDER_FILEPATH names one; make sure the
    file is there (a download before any request finds an empty log). Returns its path."""
    import atexit
    import shutil
    import tempfile

    from moto.moto_api import recorder

    if "MOTO_RECORDER_FILEPATH" not in os.environ and recorder._location == MOTO_DEFAULT_LOCATION:
        directory = tempfile.mkdtemp(prefix="moto-recording-")
        atexit.register(shutil.rmtree, directory, True)
        recorder._location = os.path.join(directory, "requests.jsonl")
    open(recorder._location, "a").close()
    return recorder._location


def record_answered(environ: dict[str, Any], body: bytes) -> None:
    """Log a request answered in front of moto (its body already read) as moto logs its own."""
    from moto.core.request import Request
    from moto.moto_api import recorder

    recorder._record_request(Request(environ), body)


# -- the log, as calls ------------------------------------------------------------------------------
def parse(log: str) -> list[Call]:
    """The calls in a downloaded log. Requests with no signature (the moto API's own) are left out,
    and so is a presigned sts:GetCallerIdentity (an EKS token: see the module's docstring)."""
    found, decoder, at = [], json.JSONDecoder(), 0
    while True:
        # Entry after entry, not line by line: the recorder writes an entry and its newline in two
        # writes, so with requests served side by side a large entry and the next may share a line.
        at = len(log) - len(log[at:].lstrip())
        if at == len(log):
            return found
        try:
            entry, at = decoder.raw_decode(log, at)
        except json.JSONDecodeError as error:
            raise ValueError(f"moto's request log is not JSON at {at}: {log[at:at + 200]!r}") from error
        call = to_call(entry)
        if call is not None:
            found.append(call)


def to_call(entry: dict[str, Any]) -> Call | None:
    """The call one recorded request is, or None for one no identity signed."""
    headers = {name.lower(): value for name, value in (entry.get("headers") or {}).items()}
    method, url = entry["method"].upper(), urlsplit(entry["url"])
    query = parse_qs(url.query, keep_blank_values=True)
    presigned = "X-Amz-Credential" in query
    scope = "Credential=" + query["X-Amz-Credential"][0] if presigned else headers.get("authorization", "")
    credential = CREDENTIAL.search(scope)
    if not credential:
        if scope:
            raise UnknownRequest(f"not signed with SigV4: {method} {entry['url']}")
        return None
    service = credential["service"]
    body = (entry.get("body") or "") if "x-www-form-urlencoded" in headers.get("content-type", "") else ""
    data = base64.b64decode(body) if entry.get("body_encoded") else body.encode()  # a query protocol's form
    host = headers.get("host") or url.netloc
    operation = _operation(service, method, host, url.path or "/", query, headers, data)
    if operation is None:
        raise UnknownRequest(f"no {service} operation matches {method} {entry['url']}")
    if presigned and (service, operation) == ("sts", "GetCallerIdentity"):
        return None
    action = ACTIONS.get((service, operation), f"{IAM_PREFIXES.get(service, service)}:{operation}")
    if service == "s3" and "versionId" in query:
        action = S3_VERSION_ACTIONS.get(action, action)
    return Call(service=service, access_key_id=credential["key"], region=credential["region"], operation=operation,
                action=action, needs_permission=action not in NO_PERMISSION_NEEDED)


# -- requests to operations, with botocore's service models ----------------------------------------
# botocore's service for a signing name that is not a botocore service's name (the rest are looked
# up in every model's metadata, once).
SIGNING_NAMES = {**BOTOCORE_NAMES, "s3-object-lambda": "s3"}


@cache
def _loader():
    return botocore.session.get_session().get_component("data_loader")


@cache
def _model(name: str):
    return botocore.session.get_session().get_service_model(name)


@cache
def _by_signing_name() -> dict[str, list[str]]:
    """botocore's services by signing name: every model loaded once (seconds), so only asked for a
    signing name that is not a botocore service's name too."""
    index: dict[str, list[str]] = {}
    for name in sorted(_services()):
        metadata = _loader().load_service_model(name, "service-2")["metadata"]
        index.setdefault(metadata.get("signingName", metadata["endpointPrefix"]), []).append(name)
    return index


def _candidates(service: str, path: str) -> Iterator[str]:
    """The botocore services a request signed for ``service`` may be for, likeliest first: the one
    of that name, then the others signed for it (apigatewayv2 signs as apigateway)."""
    if service == "s3" and path.startswith("/v20180820/"):
        yield "s3control"  # S3 Control signs as s3, under this path
    elif service in SIGNING_NAMES:
        yield SIGNING_NAMES[service]
    else:
        if service in _services():
            yield service
        yield from (name for name in _by_signing_name().get(service, []) if name != service)


@cache
def _services() -> frozenset[str]:
    return frozenset(_loader().list_available_services("service-2"))


def _operation(service: str, method: str, host: str, path: str, query: dict[str, list[str]],
               headers: dict[str, str], body: bytes) -> str | None:
    for name in _candidates(service, path):
        model = _model(name)
        protocols = model.metadata.get("protocols") or [model.protocol]
        target = headers.get("x-amz-target")
        if target and "json" in protocols:
            prefix, _, operation = target.rpartition(".")
            if prefix == model.metadata.get("targetPrefix") and operation in model.operation_names:
                return operation
            continue
        if "smithy-protocol" in headers and "smithy-rpc-v2-cbor" in protocols:
            match = re.fullmatch(r"/service/[^/]+/operation/([^/]+)", path)
            if match and match[1] in model.operation_names:
                return match[1]
            continue
        if {"query", "ec2"} & set(protocols):
            params = dict(query)
            if "x-www-form-urlencoded" in headers.get("content-type", ""):
                params.update(parse_qs(body.decode(), keep_blank_values=True))
            action, version = params.get("Action", [""])[0], params.get("Version", [""])[0]
            if action in model.operation_names and version in ("", model.api_version):
                return action
            continue
        if {"rest-json", "rest-xml"} & set(protocols):
            if service == "s3":
                path = _s3_path_style(host, path)
            operation = _rest_operation(name, method, path, query, headers)
            if operation:
                return operation
    return None


# A virtual-hosted-style S3 request names its bucket in the host: bucket.s3.region.amazonaws.com,
# bucket.s3-region.amazonaws.com, bucket.localhost (a local endpoint). An IP address, localhost,
# s3.amazonaws.com itself: path style.
VIRTUAL_HOST = re.compile(r"(?P<bucket>.+?)\.(?:s3(?:[.-][^.]+)*\.amazonaws\.com(?:\.cn)?|(?:s3\.)?localhost)")


def _s3_path_style(host: str, path: str) -> str:
    """The request's path as a path-style request's (/bucket/key), so one set of routes serves both."""
    match = VIRTUAL_HOST.fullmatch(re.sub(r":\d+$", "", host))
    if not match:
        return path
    return f"/{match['bucket']}" + ("" if path == "/" else path)


@dataclass(frozen=True)
class _Route:
    operation: str
    method: str
    strict: re.Pattern  # a label is one path segment, a greedy label ({Key+}) any number
    loose: re.Pattern  # the last label may span segments too (an ARN a client did not encode)
    literal_segments: int  # more is more specific: /mrap/instances/{name+}/policy before /mrap/instances/{name+}
    greedy_segments: int  # fewer is more specific
    literals: tuple[tuple[str, str | None], ...]  # the requestUri's query: ?tagging, ?list-type=2
    required_query: tuple[str, ...]  # required members sent in the query string (?uploadId=)
    required_headers: tuple[str, ...]  # required members sent as headers (x-amz-copy-source)
    deprecated: bool  # S3 GetBucketLifecycle: same request as GetBucketLifecycleConfiguration, which wins

    def accepts(self, query: dict[str, list[str]], headers: dict[str, str]) -> bool:
        return (all(key in query and (value is None or value in query[key]) for key, value in self.literals)
                and all(key in query for key in self.required_query)
                and all(name.lower() in headers for name in self.required_headers))

    @property
    def constraints(self) -> int:
        return len(self.literals) + len(self.required_query) + len(self.required_headers)


def _pattern(template: str, loose: bool) -> re.Pattern:
    labels = list(re.finditer(r"\{([^}]+)\}", template))
    parts, at = [], 0
    for index, label in enumerate(labels):
        parts.append(re.escape(template[at:label.start()]))
        greedy = label[1].endswith("+") or (loose and index == len(labels) - 1)
        parts.append(".+" if greedy else "[^/]+")
        at = label.end()
    parts.append(re.escape(template[at:]))
    return re.compile("".join(parts) + "/?")  # a trailing slash is optional (Smithy HTTP bindings)


@cache
def _routes(name: str) -> list[_Route]:
    model = _model(name)
    routes = []
    for operation_name in model.operation_names:
        operation = model.operation_model(operation_name)
        path, _, literal_query = operation.http.get("requestUri", "/").partition("?")
        path = path.rstrip("/") or "/"
        if path == "/":
            path = ""  # the pattern's optional slash: "" and "/" both
        literals = tuple((key, values[0] or None) for key, values in
                         parse_qs(literal_query, keep_blank_values=True).items() if key != "x-id")
        segments = path.split("/")[1:]
        routes.append(_Route(operation_name, operation.http.get("method", "POST"), _pattern(path, False),
                             _pattern(path, True), sum("{" not in segment for segment in segments),
                             sum("+}" in segment for segment in segments), literals,
                             tuple(q for q in _required(operation, "querystring") if q not in dict(literals)),
                             _required(operation, "header"), operation.deprecated))
    return routes


def _required(operation, location: str) -> tuple[str, ...]:
    """The wire names of an operation's required input members sent in ``location``."""
    shape = operation.input_shape
    if shape is None:
        return ()
    return tuple(shape.members[member].serialization.get("name", member) for member in shape.required_members
                 if shape.members[member].serialization.get("location") == location)


def _rest_operation(name: str, method: str, path: str, query: dict[str, list[str]],
                    headers: dict[str, str]) -> str | None:
    """The operation a REST request is for: the route that matches the method and path (strictly,
    else with the last label spanning segments) and whose query and header constraints the request
    meets; of several, the most specific path, then the most constrained (S3: GET /{Bucket}?list-type=2
    is ListObjectsV2 before GET /{Bucket}, ListObjects). An ``x-id`` query parameter (sent by some
    SDKs: x-id=GetObject) names the operation outright when it is among them."""
    for kind in ("strict", "loose"):
        found = [route for route in _routes(name) if route.method == method
                 and getattr(route, kind).fullmatch(path) and route.accepts(query, headers)]
        if found:
            named = [route for route in found if route.operation in query.get("x-id", ())]
            best = min(named or found, key=lambda route: (-route.literal_segments, route.greedy_segments,
                                                          -route.constraints, route.deprecated, route.operation))
            return best.operation
    return None

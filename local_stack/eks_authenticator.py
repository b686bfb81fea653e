"""The local control plane's EKS token authenticator: a Kubernetes webhook token authenticator
that checks an EKS token the way EKS's (aws-iam-authenticator) does. A stand-in.

aws-iam-authenticator, built from its Go module, cannot be used here: its verifier sends the
token's request only to the STS hostnames of its partition (``sts.amazonaws.com``,
``sts.<region>.amazonaws.com``; ``pkg/token``), and the local STS is the moto server on
127.0.0.1. This module does the same checks in the same order, against the loopback STS:

1. the token is ``k8s-aws-v1.`` + base64url of a presigned ``GET /?Action=GetCallerIdentity``
   URL on the local STS (the stand-in for the STS host list), signed with SigV4 query auth, with
   ``x-k8s-aws-id`` among the signed headers;
2. it was signed no more than 15 minutes ago (``X-Amz-Date``; aws-iam-authenticator's
   ``presignedURLExpiration``: STS ignores ``X-Amz-Expires`` for this request);
3. it was minted for an EKS cluster this control plane serves: aws-iam-authenticator sends the
   request with ``x-k8s-aws-id: <its cluster ID>``, and since that header is signed, STS accepts
   it only for the cluster the token names; this control plane serves every cluster of the local
   AWS, so each of the region's cluster names is tried;
4. STS answers the request (local_stack/sts_presigned.py checks the key, session and signature)
   with the signer's ARN; an assumed role's ARN is mapped by its role ARN;
5. the ARN is mapped to a Kubernetes user and groups by the ``aws-auth`` ConfigMap in
   ``kube-system`` (``mapUsers``/``mapRoles``, EKS's CONFIG_MAP mode); an ARN not mapped is refused.

The API server calls it per ``--authentication-token-webhook-config-file`` (scripts/sandbox-cluster).

    python -m local_stack.eks_authenticator --port 32690 --kubeconfig admin.kubeconfig
"""

from __future__ import annotations

import argparse
import base64
import json
import re
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from ipaddress import ip_address
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import yaml

PREFIX = "k8s-aws-v1."
TOKEN_LIFETIME = timedelta(minutes=15)
CLOCK_SKEW = timedelta(minutes=5)
CLUSTER_HEADER = "x-k8s-aws-id"
STS_TIMEOUT_S = 10
ASSUMED_ROLE = re.compile(r"^arn:(?P<partition>[^:]+):sts::(?P<account>\d+):assumed-role/(?P<role>[^/]+)/(?P<session>.+)$")


class Refused(Exception):
    pass


def _loopback(host: str) -> bool:
    try:
        return ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def presigned_request(token: str, now: datetime) -> tuple[str, str]:
    """The token's STS URL and its signing region, once it passes checks 1 and 2."""
    if not token.startswith(PREFIX):
        raise Refused("token is not an EKS token (no k8s-aws-v1. prefix)")
    body = token[len(PREFIX):]
    try:
        url = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)).decode()
    except ValueError:
        raise Refused("token is not base64url") from None
    if not url.isprintable():
        raise Refused("token is not a URL")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not _loopback(parts.hostname or ""):
        raise Refused(f"token's STS host {parts.hostname!r} is not the local STS")
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    if parts.path not in ("", "/") or query.get("Action") != "GetCallerIdentity":
        raise Refused("token is not a GetCallerIdentity request")
    if CLUSTER_HEADER not in query.get("X-Amz-SignedHeaders", "").split(";"):
        raise Refused(f"the {CLUSTER_HEADER} header is not signed")
    try:
        signed_at = datetime.strptime(query["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    except (KeyError, ValueError):
        raise Refused("token has no valid X-Amz-Date") from None
    if now > signed_at + TOKEN_LIFETIME:
        raise Refused("token expired (signed more than 15 minutes ago)")
    if signed_at > now + CLOCK_SKEW:
        raise Refused("token signed in the future")
    try:
        return url, query["X-Amz-Credential"].split("/")[2]
    except (KeyError, IndexError):
        raise Refused("token has no valid X-Amz-Credential") from None


def local_clusters(sts_url: str, region: str) -> list[str]:
    """The EKS clusters of the AWS behind the local STS, in the token's region."""
    import boto3

    parts = urlsplit(sts_url)
    eks = boto3.client("eks", endpoint_url=f"{parts.scheme}://{parts.netloc}", region_name=region,
                       aws_access_key_id="local-authenticator", aws_secret_access_key="local-authenticator")
    return [name for page in eks.get_paginator("list_clusters").paginate() for name in page["clusters"]]


class SignedForAnother(Refused):
    pass


def caller_identity(url: str, cluster: str) -> dict[str, str]:
    """STS's answer to the token's request, sent with ``x-k8s-aws-id: cluster``."""
    request = urllib.request.Request(url, headers={CLUSTER_HEADER: cluster, "Accept": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=STS_TIMEOUT_S) as response:
            return json.load(response)["GetCallerIdentityResponse"]["GetCallerIdentityResult"]
    except urllib.error.HTTPError as error:
        try:
            detail = json.load(error)["Error"]
        except (ValueError, KeyError):
            raise Refused(f"STS refused the token: HTTP {error.code}") from None
        refusal = SignedForAnother if detail["Code"] == "SignatureDoesNotMatch" else Refused
        raise refusal(f"STS refused the token: {detail['Code']}: {detail['Message']}") from None


def signer(url: str, region: str) -> dict[str, str]:
    """Checks 3 and 4: the signature covers ``x-k8s-aws-id``, so of the clusters this control
    plane serves, STS accepts the request only with the one the token was minted for."""
    for cluster in local_clusters(url, region):
        try:
            return caller_identity(url, cluster)
        except SignedForAnother:
            continue
    raise Refused(f"token is signed for no EKS cluster of the local AWS in {region} (or its signature is forged)")


def mapped_user(aws_auth: dict[str, str], arn: str) -> dict[str, Any]:
    """The user and groups ``aws-auth`` maps the ARN to (check 5)."""
    assumed = ASSUMED_ROLE.match(arn)
    canonical = (f"arn:{assumed['partition']}:iam::{assumed['account']}:role/{assumed['role']}" if assumed else arn)
    entries = [(e.get("userarn"), e) for e in yaml.safe_load(aws_auth.get("mapUsers") or "[]") or []]
    entries += [(e.get("rolearn"), e) for e in yaml.safe_load(aws_auth.get("mapRoles") or "[]") or []]
    for mapped_arn, entry in entries:
        if mapped_arn == canonical:
            account = canonical.split(":")[4]
            username = (entry.get("username") or canonical).replace("{{AccountID}}", account).replace(
                "{{SessionName}}", assumed["session"] if assumed else "")
            return {"username": username, "groups": list(entry.get("groups") or []),
                    "extra": {"arn": [arn], "canonicalArn": [canonical]}}
    raise Refused(f"ARN {canonical} is not mapped in kube-system/aws-auth")


class Authenticator:
    def __init__(self, kubeconfig: str) -> None:
        self.kubeconfig = kubeconfig

    def aws_auth(self) -> dict[str, str]:
        from kubernetes import client, config

        with config.new_client_from_config(config_file=self.kubeconfig) as api:
            try:
                return client.CoreV1Api(api).read_namespaced_config_map("aws-auth", "kube-system").data or {}
            except client.ApiException as error:
                if error.status == 404:
                    return {}
                raise

    def review(self, token: str) -> dict[str, Any]:
        """The TokenReview status for ``token``."""
        try:
            url, region = presigned_request(token, datetime.now(UTC))
            identity = signer(url, region)
            user = mapped_user(self.aws_auth(), identity["Arn"])
        except Refused as refusal:
            return {"authenticated": False, "error": str(refusal)}
        user["uid"] = f"aws-iam-authenticator:{identity['Account']}:{identity['UserId']}"
        return {"authenticated": True, "user": user}


def map_identity(kubeconfig: str, arn: str, username: str, groups: list[str]) -> None:
    """Map an IAM user or role to a Kubernetes user in kube-system/aws-auth, as `eksctl create
    iamidentitymapping` does on EKS."""
    from kubernetes import client, config

    with config.new_client_from_config(config_file=kubeconfig) as api:
        core = client.CoreV1Api(api)
        kind, key = ("mapRoles", "rolearn") if ":role/" in arn else ("mapUsers", "userarn")
        try:
            data = core.read_namespaced_config_map("aws-auth", "kube-system").data or {}
        except client.ApiException as error:
            if error.status != 404:
                raise
            core.create_namespaced_config_map("kube-system", {"metadata": {"name": "aws-auth"}, "data": {}})
            data = {}
        entries = [e for e in yaml.safe_load(data.get(kind) or "[]") if e.get(key) != arn]
        entries.append({key: arn, "username": username, "groups": groups})
        core.patch_namespaced_config_map("aws-auth", "kube-system", {"data": {kind: yaml.safe_dump(entries)}})


class Handler(BaseHTTPRequestHandler):
    authenticator: Authenticator

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        review = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
        review["status"] = self.authenticator.review((review.get("spec") or {}).get("token") or "")
        data = json.dumps(review).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:  # tokens stay out of the log
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--kubeconfig", required=True, help="admin kubeconfig, to read kube-system/aws-auth")
    args = parser.parse_args()
    Handler.authenticator = Authenticator(args.kubeconfig)
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    print(f"EKS token authenticator on http://127.0.0.1:{server.server_port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()

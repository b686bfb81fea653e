"""Whole-string checks of every patterned input, one table for the params form and the plan.

JSON Schema's ``pattern`` searches rather than matches (json-schema.org, "Regular Expressions":
patterns are not implicitly anchored), and Python's ``$`` also matches before a trailing
newline (docs.python.org, ``re``), so each pattern is anchored as ``^(?:...)$(?!\\n)``: the
lookahead refuses the position before a final newline in Python and is a no-op in ECMA-262,
which the form's browser uses. The plan re-checks every field with ``re.fullmatch`` all the
same, so a conf that reached it some other way (an API call with params validation off) is
held to the same table.

Connection and Secrets Manager ids are also limited to what the operator of the Airflow
deployment allows (``[llm_on_eks]`` in airflow.cfg, or ``AIRFLOW__LLM_ON_EKS__*``): whoever may
trigger a run must not be able to copy any connection's password, or any secret the worker can
read, into a Kubernetes Secret of their choosing.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from airflow.sdk.configuration import conf

from llm_on_eks.naming import (
    DEPLOYMENT_NAME_BODY,
    DNS_LABEL_BODY,
    DNS_SUBDOMAIN_BODY,
    RESERVED_NAMESPACES,
    S3_BUCKET_BODY,
)


def anchored(body: str) -> str:
    return rf"^(?:{body})$(?!\n)"


# Airflow connection ids: letters, digits, '_', '.', '-' (airflow.models.connection, sanitize_conn_id).
CONN_ID_BODY = r"[A-Za-z0-9_.-]{1,250}"
# EKS CreateCluster: 1-100 characters, alphanumerics, '-' and '_', starting alphanumeric (EKS API reference).
CLUSTER_NAME_BODY = r"[0-9A-Za-z][A-Za-z0-9_-]{0,99}"
# IAM role ARNs: path and name use letters, digits and +=,.@_- (IAM User Guide, "IAM identifiers").
ARN_BODY = r"arn:aws[a-z-]*:iam::[0-9]{12}:role/[A-Za-z0-9+=,.@_/-]{1,512}"
SUBNET_BODY = r"subnet-[0-9a-f]{1,17}"
# Secrets Manager names: letters, digits and /_+=.@- (Secrets Manager API reference, CreateSecret).
SECRET_ID_BODY = r"[A-Za-z0-9/_+=.@-]{1,512}"

# Every patterned field of the deploy and teardown forms, and its pattern's body.
PATTERNS: dict[str, str] = {
    "deployment_name": DEPLOYMENT_NAME_BODY,
    "cluster_name": CLUSTER_NAME_BODY,
    # AWS's region names: us-gov-west-1, us-isob-east-1, ap-southeast-7 (their middle part is a
    # direction of 4-9 letters); bounded, so that names keeping the region whole (the bucket) fit.
    "region": r"[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]{4,9}-[0-9]{1,2}",
    "namespace": DNS_LABEL_BODY,
    "kubernetes_version": r"1\.[0-9]{1,3}",
    "cluster_role_arn": ARN_BODY,
    "node_role_arn": ARN_BODY,
    "subnet_ids": SUBNET_BODY,
    "security_group_ids": r"sg-[0-9a-f]{1,17}",
    "fsx_subnet_id": SUBNET_BODY,
    # EC2 capacity reservation ids, On-Demand Capacity Reservations and Capacity Blocks alike:
    # "cr-" and 17 hex digits, as EC2 issues them (cr-02168da1478b509e0 in the EKS user guide,
    # "Create a managed node group with Capacity Blocks for ML").
    "capacity_reservation_id": r"cr-[0-9a-f]{17}",
    # A Karpenter NodePool's name: it is also the value of the nodes' karpenter.sh/nodepool label,
    # so a DNS subdomain of at most 63 characters (Karpenter's NodePool CRD, Kubernetes label values).
    "nodepool": r"(?=.{1,63}$)" + DNS_SUBDOMAIN_BODY,
    "artifact_bucket": S3_BUCKET_BODY,
    "aws_conn_id": CONN_ID_BODY,
    "kubernetes_conn_id": CONN_ID_BODY,
    "hf_token_conn_id": CONN_ID_BODY,
    "hf_token_secret_id": SECRET_ID_BODY,
    # Scheme, a host without user info, an optional port and path; the host itself is judged by
    # endpoint_problem, which a pattern cannot do.
    "endpoint_url": r"https?://[A-Za-z0-9.\[\]:-]+(/[!-~]*)?",
}
# Fields whose empty string means "use the default"; an empty required field is refused.
OPTIONAL = frozenset({"deployment_name", "kubernetes_version", "cluster_role_arn", "node_role_arn", "fsx_subnet_id",
                      "capacity_reservation_id", "nodepool", "artifact_bucket", "kubernetes_conn_id", "hf_token_secret_id",
                      "endpoint_url"})


def schema(field: str) -> dict[str, Any]:
    """The JSON Schema keywords of a patterned field, for its Param (items' for an array)."""
    keywords: dict[str, Any] = {"pattern": anchored(PATTERNS[field])}
    if field == "namespace":
        keywords["not"] = {"enum": sorted(RESERVED_NAMESPACES)}
    return keywords


class InputError(ValueError):
    """A field is malformed or not allowed; the message names it."""


def check_fields(params: Mapping[str, Any]) -> None:
    """Every patterned field present in ``params``, whole string, with the field named."""
    for field, body in PATTERNS.items():
        if field not in params or params[field] is None:
            continue
        value = params[field]
        values = value if isinstance(value, list) else [value]
        if value == "" and field in OPTIONAL:
            continue
        for item in values:
            if not isinstance(item, str) or not re.fullmatch(body, item):
                raise InputError(f"{field}: {item!r} is not valid (must match {body})")
    if params.get("namespace") in RESERVED_NAMESPACES:
        raise InputError(f"namespace: {params['namespace']!r} is reserved for the cluster itself "
                         f"({', '.join(sorted(RESERVED_NAMESPACES))} are refused)")


def check_known(conf: Mapping[str, Any], known: Iterable[str]) -> None:
    """Refuse conf keys the form does not have: a typo (``max_model_length``) would otherwise be
    silently ignored and the run go ahead with the default."""
    known = set(known)
    unknown = sorted(set(conf) - known)
    if unknown:
        raise InputError(f"unknown conf key(s) {', '.join(unknown)}; known keys: {', '.join(sorted(known))}")


@dataclass(frozen=True)
class Allowed:
    """What a run may name, set by whoever runs Airflow, not by whoever triggers: glob patterns
    (fnmatch) of connection ids and Secrets Manager ids, and whether a loopback endpoint_url is
    allowed (local runs only)."""

    conn_ids: tuple[str, ...] = ("aws_default", "kubernetes_default", "hf_default", "llm_on_eks_*")
    secret_ids: tuple[str, ...] = ("llm-on-eks/*",)
    loopback_endpoint: bool = False

    @classmethod
    def from_config(cls) -> Allowed:
        """``[llm_on_eks] allowed_conn_ids``, ``allowed_secret_ids`` (comma-separated globs) and
        ``allow_loopback_endpoint``; the defaults above where unset."""
        def globs(key: str, default: tuple[str, ...]) -> tuple[str, ...]:
            value = conf.get("llm_on_eks", key, fallback=None)
            return default if value is None else tuple(p.strip() for p in value.split(",") if p.strip())

        return cls(conn_ids=globs("allowed_conn_ids", cls.conn_ids),
                   secret_ids=globs("allowed_secret_ids", cls.secret_ids),
                   loopback_endpoint=conf.getboolean("llm_on_eks", "allow_loopback_endpoint", fallback=False))


def _allowed(value: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatchcase(value, p) for p in patterns)


ALLOW_LISTED = ("aws_conn_id", "kubernetes_conn_id", "hf_token_conn_id", "hf_token_secret_id", "endpoint_url")


def check_allowed(params: Mapping[str, Any], allowed: Allowed) -> None:
    """Connection ids, the secret id and endpoint_url against what the Airflow deployment allows."""
    for field in ("aws_conn_id", "kubernetes_conn_id", "hf_token_conn_id"):
        value = params.get(field)
        if value and not _allowed(value, allowed.conn_ids):
            raise InputError(f"{field}: connection {value!r} is not allowed here (allowed: "
                             f"{', '.join(allowed.conn_ids)}; set [llm_on_eks] allowed_conn_ids to change)")
    secret = params.get("hf_token_secret_id")
    if secret and not _allowed(secret, allowed.secret_ids):
        raise InputError(f"hf_token_secret_id: secret {secret!r} is not allowed here (allowed: "
                         f"{', '.join(allowed.secret_ids)}; set [llm_on_eks] allowed_secret_ids to change)")
    url = params.get("endpoint_url")
    problem = endpoint_problem(url, allowed.loopback_endpoint) if url else None
    if problem:
        raise InputError(f"endpoint_url: {problem}")


# EC2's instance metadata service over IPv6 (EC2 User Guide, "Instance metadata service").
EC2_METADATA_V6 = ipaddress.ip_address("fd00:ec2::254")
LOCAL_HOSTNAMES = ("localhost", "localhost.localdomain")


def endpoint_problem(url: str, loopback_allowed: bool = False) -> str | None:
    """Why the smoke test and benchmark must not send requests to ``url``, or None. Only literal
    addresses and localhost names are judged: a name that resolves to a metadata address
    (DNS rebinding) is beyond a check made before the request."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises for a port that is not a number or out of range
    except ValueError as exc:  # an unclosed "[" (IPv6 literal), a bad port
        return f"{url!r} is not a valid URL ({exc})"
    if parts.scheme not in ("http", "https"):
        return f"{url!r}: only http and https are allowed"
    if parts.username or parts.password:
        return "credentials in the URL are refused (they would be logged and kept in the run's conf)"
    host = (parts.hostname or "").rstrip(".").lower()
    if not host:
        return f"{url!r} has no host"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        loopback = host in LOCAL_HOSTNAMES or host.endswith(".localhost")
        return None if loopback_allowed or not loopback else f"loopback host {host!r} is refused"
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    if address.is_link_local or address == EC2_METADATA_V6:
        return f"{host} is a link-local or instance metadata address"
    if address.is_unspecified or address.is_multicast:
        return f"{host} is not a host address"
    if address.is_loopback and not loopback_allowed:
        return f"loopback address {host} is refused (allow_loopback_endpoint is off)"
    return None

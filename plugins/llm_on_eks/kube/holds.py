"""Who is using a deployment right now: one hold per run of a DAG that uses it (``llm_endpoint``),
kept in the cluster where every run and the idle teardown see it, never in a worker's memory.

A hold is a ``coordination.k8s.io/v1`` Lease of its own next to the deployment's Lease
(``llm_on_eks.kube.lease``), named after the deployment and the holding run: each holder writes
only its own object, so two holders never race, and a holder that dies without releasing stops
counting once ``renewTime + leaseDurationSeconds`` has passed, as a stale leader-election Lease
does (client-go ``tryAcquireOrRenew``). A teardown takes the deployment's Lease first and then
reads the holds, and a holder writes its hold before it looks at the deployment: of the two,
whichever comes second sees the other (``operators.lease``, ``operators.llm_endpoint``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from llm_on_eks.kube.lease import LeaseView, delete_unchanged, micro_time, view
from llm_on_eks.naming import DEPLOYMENT_KEY, LABEL_PREFIX, identity_hash, k8s_labels, lease_name

HOLD_KEY = f"{LABEL_PREFIX}/hold"


def hold_name(deployment: str, holder: str) -> str:
    return f"{lease_name(deployment)}-hold-{identity_hash(holder)}"


def _selector(deployment: str) -> str:
    return f"{DEPLOYMENT_KEY}={deployment},{HOLD_KEY}=true"


def take_hold(api: Any, namespace: str, deployment: str, holder: str, duration_s: int,
              now: datetime | None = None) -> str:
    """Record (or renew) ``holder``'s hold for ``duration_s``; holds that expired are deleted on
    the way, so a killed holder's object does not stay for ever. What was done."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    now = now or datetime.now(UTC)
    coordination, name = client.CoordinationV1Api(api), hold_name(deployment, holder)
    for expired in _holds(api, namespace, deployment):
        if expired.metadata.name != name and not _live(view(expired), now):
            # Left when its holder renewed it since it was read.
            delete_unchanged(api, namespace, expired.metadata.name, expired.metadata.resource_version)
    body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": name, "labels": {**k8s_labels(deployment), HOLD_KEY: "true"}},
            "spec": {"holderIdentity": holder, "leaseDurationSeconds": int(duration_s), "acquireTime": micro_time(now),
                     "renewTime": micro_time(now)}}
    try:
        coordination.create_namespaced_lease(namespace, body)
        return "held"
    except ApiException as exc:
        if exc.status != 409:  # a retried task finds its own hold: renewed
            raise
    coordination.patch_namespaced_lease(name, namespace, {"spec": {"renewTime": micro_time(now),
                                                                   "leaseDurationSeconds": int(duration_s)}})
    return "renewed"


def drop_hold(api: Any, namespace: str, deployment: str, holder: str) -> str:
    """Delete ``holder``'s hold; what was done (already gone is done)."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    try:
        client.CoordinationV1Api(api).delete_namespaced_lease(hold_name(deployment, holder), namespace)
    except ApiException as exc:
        if exc.status == 404:
            return "not held (already released, or expired and removed)"
        raise
    return "released"


def live_holds(api: Any, namespace: str, deployment: str, now: datetime | None = None) -> list[LeaseView]:
    """The holds that have not expired, by holder."""
    now = now or datetime.now(UTC)
    found = [view(raw) for raw in _holds(api, namespace, deployment)]
    return sorted((h for h in found if _live(h, now)), key=lambda h: h.holder or "")


def describe_holds(holds: list[LeaseView]) -> str:
    return ", ".join(f"{h.holder} (until {h.expires().isoformat(timespec='minutes')})" for h in holds)


def _live(hold: LeaseView, now: datetime) -> bool:
    expires = hold.expires()
    return bool(hold.holder) and expires is not None and expires > now


def _holds(api: Any, namespace: str, deployment: str) -> list[Any]:
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    try:
        return client.CoordinationV1Api(api).list_namespaced_lease(namespace, label_selector=_selector(deployment)).items
    except ApiException as exc:
        if exc.status == 404:  # no namespace: nothing held
            return []
        raise


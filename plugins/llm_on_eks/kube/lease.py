"""One deploy or teardown of a deployment at a time: a ``coordination.k8s.io/v1`` Lease in the
deployment's namespace, named after the deployment (deploy_llama4 and deploy_model share
deployment names, so it is per deployment, not per DAG).

The protocol is client-go's leader election (k8s.io/client-go/tools/leaderelection,
``tryAcquireOrRenew``): read the Lease; create it when missing; take it when it is free or
stale (``renewTime + leaseDurationSeconds`` has passed: its holder stopped renewing); renew it
when this run holds it; otherwise it is held. Every write carries the ``resourceVersion`` that
was read, so of two runs racing for the same Lease the API server lets exactly one through
(409 Conflict for the other, which reads again). Releasing deletes the Lease with that
``resourceVersion`` as a precondition, so a run never frees a Lease another run has taken
over. (Kubernetes docs, "Leases"; API reference, Lease v1.)

``holderIdentity`` is ``<dag id>/<run id>``: what the loser's message names.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from llm_on_eks.naming import LABEL_PREFIX, k8s_labels, lease_name

# What the holder is doing to the deployment: the idle judge keeps one a deploy is working on.
ACTION_ANNOTATION = f"{LABEL_PREFIX}/lease-action"
POLL_S = 5
# Renewals lost to a sibling step of the same run writing at the same moment, tried again.
RENEW_ATTEMPTS = 5


@dataclass(frozen=True)
class LeaseView:
    """What a read Lease says (None for a field it does not carry)."""

    holder: str | None
    renewed: datetime | None
    duration_s: int | None
    action: str | None
    resource_version: str | None

    def expires(self) -> datetime | None:
        if self.renewed is None or self.duration_s is None:
            return None
        return self.renewed + timedelta(seconds=self.duration_s)

    def describe(self) -> str:
        expires = self.expires()
        return (f"held by run {self.holder} ({self.action or 'unknown action'}), renewed "
                f"{self.renewed.isoformat(timespec='seconds') if self.renewed else 'never'}, until "
                f"{expires.isoformat(timespec='seconds') if expires else 'unknown'}")


@dataclass(frozen=True)
class LeaseDecision:
    # create: no Lease; take: free or stale; renew: this run holds it; wait: another run holds it
    step: str
    reason: str


def decide(found: LeaseView | None, me: str, now: datetime) -> LeaseDecision:
    """What a run (holder identity ``me``) does with the Lease it read at ``now``."""
    if found is None:
        return LeaseDecision("create", "free: no lease")
    if not found.holder:
        return LeaseDecision("take", "free: released")
    if found.holder == me:
        return LeaseDecision("renew", "held by this run")
    expires = found.expires()
    if expires is None or expires <= now:
        # A Lease without renewTime or duration cannot say it is alive: client-go treats it so.
        return LeaseDecision("take", f"stale: {found.describe()}")
    return LeaseDecision("wait", found.describe())


class LeaseHeld(Exception):
    """Another run holds the deployment's Lease (the message names it)."""


def micro_time(when: datetime) -> str:
    # MicroTime wants exactly six fractional digits (RFC 3339 micro); isoformat drops them at 0.
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def view(lease: Any) -> LeaseView:
    spec, meta = lease.spec, lease.metadata
    renewed = spec.renew_time or spec.acquire_time
    return LeaseView(holder=spec.holder_identity or None, renewed=renewed, duration_s=spec.lease_duration_seconds,
                     action=(meta.annotations or {}).get(ACTION_ANNOTATION), resource_version=meta.resource_version)


def _read(api: Any, namespace: str, deployment: str) -> Any:
    """The V1Lease, or None."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    try:
        return client.CoordinationV1Api(api).read_namespaced_lease(lease_name(deployment), namespace)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def read(api: Any, namespace: str, deployment: str) -> LeaseView | None:
    raw = _read(api, namespace, deployment)
    return view(raw) if raw is not None else None


def _body(deployment: str, me: str, action: str, duration_s: int, now: datetime, acquired: datetime,
          transitions: int, resource_version: str | None) -> dict[str, Any]:
    metadata = {"name": lease_name(deployment), "labels": k8s_labels(deployment),
                "annotations": {ACTION_ANNOTATION: action}}
    if resource_version:
        metadata["resourceVersion"] = resource_version
    return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": metadata,
            "spec": {"holderIdentity": me, "leaseDurationSeconds": int(duration_s), "acquireTime": micro_time(acquired),
                     "renewTime": micro_time(now), "leaseTransitions": transitions}}


def try_acquire(api: Any, namespace: str, deployment: str, me: str, action: str, duration_s: int,
                now: datetime | None = None) -> tuple[LeaseDecision, LeaseView | None]:
    """One round of client-go's tryAcquireOrRenew: (what was decided, the Lease read). A write
    that lost a race (409) counts as ``wait`` with the reason re-read on the next round."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    now = now or datetime.now(UTC)
    coordination = client.CoordinationV1Api(api)
    raw = _read(api, namespace, deployment)
    found = view(raw) if raw is not None else None
    decision = decide(found, me, now)
    if decision.step == "wait":
        return decision, found
    acquired = raw.spec.acquire_time if decision.step == "renew" and raw.spec.acquire_time else now
    transitions = (raw.spec.lease_transitions or 0) + (decision.step == "take") if raw else 0
    body = _body(deployment, me, action, duration_s, now, acquired, transitions, found and found.resource_version)
    try:
        if found is None:
            coordination.create_namespaced_lease(namespace, body)
        else:
            coordination.replace_namespaced_lease(lease_name(deployment), namespace, body)
    except ApiException as exc:
        if exc.status != 409:  # created or written by another run since the read: it won
            raise
        return LeaseDecision("wait", "another run wrote the lease at the same moment"), found
    return decision, found


def acquire(api: Any, namespace: str, deployment: str, me: str, action: str, duration_s: int,
            wait_s: float) -> LeaseDecision:
    """Take (or renew) the Lease, waiting up to ``wait_s`` for its holder; LeaseHeld after that."""
    deadline = time.monotonic() + wait_s
    while True:
        decision, found = try_acquire(api, namespace, deployment, me, action, duration_s)
        if decision.step != "wait":
            return decision
        if time.monotonic() >= deadline:
            raise LeaseHeld(f"lease {namespace}/{lease_name(deployment)} is {decision.reason}; waited {wait_s:.0f} s")
        time.sleep(POLL_S)


def renew(api: Any, namespace: str, deployment: str, me: str, action: str, duration_s: int) -> LeaseDecision:
    """Extend the Lease this run holds; LeaseHeld when it does not hold it any more (it went stale
    and another run took it over, or it was deleted): the step must not act then. A write lost to
    a sibling step of the same run renewing at the same moment (parallel steps each renew as they
    start: a 409 with the holder unchanged) is read and tried again."""
    for _ in range(RENEW_ATTEMPTS):
        found = read(api, namespace, deployment)
        if found is None or found.holder != me:
            raise LeaseHeld(f"this run ({me}) no longer holds lease {namespace}/{lease_name(deployment)}: "
                            + (found.describe() if found else "it is gone"))
        decision, _ = try_acquire(api, namespace, deployment, me, action, duration_s)
        if decision.step == "renew":
            return decision
    raise LeaseHeld(f"lease {namespace}/{lease_name(deployment)} could not be renewed: {decision.reason}")


def release(api: Any, namespace: str, deployment: str, me: str) -> str:
    """Delete the Lease if this run holds it (precondition: the version read, so a Lease another
    run took over meanwhile stays); what was done."""

    found = read(api, namespace, deployment)
    if found is None:
        return "already free"
    if found.holder != me:
        return f"not this run's: {found.describe()}"
    return {"deleted": "released", "gone": "already free",
            "changed": "taken over by another run meanwhile: left to it"}[
        delete_unchanged(api, namespace, lease_name(deployment), found.resource_version)]


def delete_unchanged(api: Any, namespace: str, name: str, resource_version: str | None) -> str:
    """Delete Lease ``name`` unless it was written since it was read at ``resource_version``
    (a precondition the API server checks): deleted, gone (already) or changed (left)."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    options = client.V1DeleteOptions(preconditions=client.V1Preconditions(resource_version=resource_version))
    try:
        client.CoordinationV1Api(api).delete_namespaced_lease(name, namespace, body=options)
    except ApiException as exc:
        if exc.status == 404:
            return "gone"
        if exc.status == 409:
            return "changed"
        raise
    return "deleted"


def holder_of(api: Any, namespace: str, deployment: str, now: datetime | None = None) -> LeaseView | None:
    """The live holder of the deployment's Lease, or None when it is free or stale."""
    found = read(api, namespace, deployment)
    if found is None or not found.holder:
        return None
    expires = found.expires()
    return found if expires is not None and expires > (now or datetime.now(UTC)) else None


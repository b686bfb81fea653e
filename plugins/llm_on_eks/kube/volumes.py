"""The static FSx volume: a PersistentVolume naming the file system and the claim pods mount.

Created once and adopted afterwards. A PV whose claim was deleted (a torn-down namespace) stays
Released with the old claim's uid and would never bind again: it is freed for the new claim.
A PV pointing at another file system is refused, not silently reused: the PV's source cannot be
changed in place and mounting the wrong weights would be worse than failing. A PV or claim of
the same name without our managed-by label is someone else's: refused, never adopted.
"""

from __future__ import annotations

import time
from typing import Any

from llm_on_eks.naming import MANAGED_BY_KEY, PROJECT, is_managed


class ForeignVolume(ValueError):
    """A PersistentVolume or claim of our name that this project did not make."""


def _refuse_foreign(kind: str, name: str, labels: dict[str, str] | None) -> None:
    if not is_managed(labels):
        raise ForeignVolume(f"{kind} {name} exists without the label {MANAGED_BY_KEY}={PROJECT}: someone else's, "
                            f"so it is not used. Deploy into another namespace, or hand it over by adding that label")


def ensure_static_volume(api, pv: dict[str, Any], pvc: dict[str, Any]) -> dict[str, str]:
    """Create or adopt the PV and its claim; returns what happened to each. A foreign claim is
    refused before the PV is made, so a refusal leaves nothing behind."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    core = client.CoreV1Api(api)
    name, claim = pv["metadata"]["name"], pvc["metadata"]
    claim_name = f"{claim['namespace']}/{claim['name']}"
    try:
        existing = core.read_namespaced_persistent_volume_claim(claim["name"], claim["namespace"])
        _refuse_foreign("PersistentVolumeClaim", claim_name, existing.metadata.labels)
    except ApiException as exc:
        if exc.status != 404:
            raise
    try:
        core.create_persistent_volume(pv)
        pv_action = "created"
    except ApiException as exc:
        if exc.status != 409:
            raise
        pv_action = _adopt(core, name, pv)
    try:
        core.create_namespaced_persistent_volume_claim(claim["namespace"], pvc)
        pvc_action = "created"
    except ApiException as exc:
        if exc.status != 409:
            raise
        pvc_action = "exists"
    return {"pv": f"{name} {pv_action}", "pvc": f"{claim_name} {pvc_action}"}


def wait_bound(api, namespace: str, name: str, budget_s: float, poll_s: float = 0.5) -> bool:
    """Until the claim is Bound (within ``budget_s``); whether it is. A pod created before that
    fails scheduling ("unbound immediate PersistentVolumeClaims") and is tried again only after the
    scheduler's backoff, up to 10 s (its podMaxBackoffSeconds). kube-controller-manager's volume
    binder binds a pre-bound static PV 0.2-15 s after the claim is made (measured on the local
    control plane: at the latest at its 15 s resync, --pvclaimbinder-sync-period)."""
    from kubernetes import client

    core, deadline = client.CoreV1Api(api), time.monotonic() + budget_s
    while True:
        if core.read_namespaced_persistent_volume_claim(name, namespace).status.phase == "Bound":
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(poll_s)


def _adopt(core, name: str, wanted: dict[str, Any]) -> str:
    existing = core.read_persistent_volume(name)
    _refuse_foreign("PersistentVolume", name, existing.metadata.labels)
    have = existing.spec.csi.volume_handle if existing.spec.csi else None
    want = wanted["spec"]["csi"]["volumeHandle"]
    if have != want:
        raise ValueError(f"PersistentVolume {name} points at {have}, not {want}: "
                         "remove it (teardown_deployment) before using another file system")
    if existing.status.phase == "Released":
        # A JSON patch replaces the whole claimRef: a merge would keep the deleted claim's uid.
        core.patch_persistent_volume(name, [{"op": "replace", "path": "/spec/claimRef", "value": wanted["spec"]["claimRef"]}])
        return "freed for a new claim"
    return "exists"

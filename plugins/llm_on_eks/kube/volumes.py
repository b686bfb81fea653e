"""The static FSx volume: a PersistentVolume naming the file system and the claim pods mount.

Created once and adopted afterwards. A PV whose claim was deleted (a torn-down namespace) stays
Released with the old claim's uid and would never bind again: it is freed for the new claim.
A PV pointing at another file system is refused, not silently reused: the PV's source cannot be
changed in place and mounting the wrong weights would be worse than failing.
"""

from __future__ import annotations

from typing import Any


def ensure_static_volume(api, pv: dict[str, Any], pvc: dict[str, Any]) -> dict[str, str]:
    """Create or adopt the PV and its claim; returns what happened to each."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    core = client.CoreV1Api(api)
    name = pv["metadata"]["name"]
    try:
        core.create_persistent_volume(pv)
        pv_action = "created"
    except ApiException as exc:
        if exc.status != 409:
            raise
        pv_action = _adopt(core, name, pv)
    try:
        core.create_namespaced_persistent_volume_claim(pvc["metadata"]["namespace"], pvc)
        pvc_action = "created"
    except ApiException as exc:
        if exc.status != 409:
            raise
        pvc_action = "exists"
    return {"pv": f"{name} {pv_action}", "pvc": f"{pvc['metadata']['namespace']}/{pvc['metadata']['name']} {pvc_action}"}


def _adopt(core, name: str, wanted: dict[str, Any]) -> str:
    existing = core.read_persistent_volume(name)
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

"""The static FSx volume on the local control plane: made once and adopted afterwards, and a
PersistentVolume or claim of our name that this project did not make is refused, never used,
with nothing created by the refused attempt."""

from __future__ import annotations

import copy

import pytest

from llm_on_eks.kube.manifests import fsx_volume
from llm_on_eks.kube.volumes import ForeignVolume, ensure_static_volume
from llm_on_eks.plan import build_plan

FSX = {"file_system_id": "fs-0123456789abcdef0", "mount_name": "abcdefgh",
       "dns_name": "fs-0123456789abcdef0.fsx.us-west-2.amazonaws.com"}


@pytest.fixture
def core(api):
    from kubernetes import client

    return client.CoreV1Api(api)


@pytest.fixture
def volume(core, namespace):
    """Scout's PV and claim in a fresh namespace; whatever PV of that name exists is deleted after."""
    from kubernetes.client.exceptions import ApiException

    plan = build_plan({"cluster_name": "c1", "region": "us-west-2", "model": "llama4-scout", "accelerator": "gpu",
                       "namespace": namespace, "deployment_name": "scout"})
    pv, pvc = fsx_volume(plan["storage"]["fsx"], namespace, FSX)
    yield pv, pvc
    try:
        core.delete_persistent_volume(pv["metadata"]["name"])
    except ApiException as exc:
        if exc.status != 404:
            raise


def _unlabelled(manifest: dict) -> dict:
    foreign = copy.deepcopy(manifest)
    foreign["metadata"]["labels"] = {"owner": "someone-else"}
    return foreign


def _pv_exists(core, name: str) -> bool:
    from kubernetes.client.exceptions import ApiException

    try:
        core.read_persistent_volume(name)
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise
    return True


def test_ours_is_created_then_adopted(core, volume):
    pv, pvc = volume
    first = ensure_static_volume(core.api_client, pv, pvc)
    assert first["pv"].endswith(" created") and first["pvc"].endswith(" created")
    second = ensure_static_volume(core.api_client, pv, pvc)
    assert second["pv"].endswith(" exists") and second["pvc"].endswith(" exists")


def test_a_claim_someone_else_made_is_refused_before_the_pv_is_made(core, volume):
    pv, pvc = volume
    namespace, claim = pvc["metadata"]["namespace"], pvc["metadata"]["name"]
    core.create_namespaced_persistent_volume_claim(namespace, _unlabelled(pvc))
    with pytest.raises(ForeignVolume, match=f"PersistentVolumeClaim {namespace}/{claim} exists without the label"):
        ensure_static_volume(core.api_client, pv, pvc)
    assert not _pv_exists(core, pv["metadata"]["name"])
    assert core.read_namespaced_persistent_volume_claim(claim, namespace).metadata.labels == {"owner": "someone-else"}


def test_a_pv_someone_else_made_is_refused_and_left_as_it_was(core, volume):
    pv, pvc = volume
    name = pv["metadata"]["name"]
    core.create_persistent_volume(_unlabelled(pv))
    with pytest.raises(ForeignVolume, match=f"PersistentVolume {name} exists without the label"):
        ensure_static_volume(core.api_client, pv, pvc)
    # As it was made (the PV controller may update its status meanwhile: not ours to compare).
    after = core.read_persistent_volume(name)
    assert after.metadata.labels == {"owner": "someone-else"}
    assert after.spec.csi.volume_handle == FSX["file_system_id"]
    assert core.list_namespaced_persistent_volume_claim(pvc["metadata"]["namespace"]).items == []

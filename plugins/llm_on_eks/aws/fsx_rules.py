"""How the FSx steps judge what they find: adopt a file system, wait for it, or refuse it.

A file system belongs to a cluster (shared by its deployments, tagged with the cluster, not one
deployment); each deployment using it adds a ``used-by`` tag, which is how the teardown knows
whether anyone else still needs it. Plain functions over DescribeFileSystems answers, importable
without the Amazon provider.
"""

from __future__ import annotations

from typing import Any

from llm_on_eks.naming import LABEL_PREFIX
from llm_on_eks.plan.types import FsxSection

USED_BY_PREFIX = f"{LABEL_PREFIX}/used-by/"
# Lifecycle states a file system or association can be used or waited out in; anything else
# (FAILED, MISCONFIGURED, DELETING) needs a human.
USABLE = {"AVAILABLE", "UPDATING"}
BROKEN = {"FAILED", "MISCONFIGURED", "MISCONFIGURED_UNAVAILABLE", "DELETING"}


def used_by_key(user: str) -> str:
    """The tag of one user, ``naming.fsx_user``: namespace and deployment, so the same name in
    two namespaces is two users."""
    return f"{USED_BY_PREFIX}{user}"


def tags_of(resource: dict[str, Any]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in resource.get("Tags") or []}


def first_made(file_systems: list[dict[str, Any]]) -> dict[str, Any]:
    """Of file systems two runs made at once for one name, the one both keep: the first made
    (CreationTime, set by FSx), then the lowest id. FSx names are only tags, so nothing stops the
    second create; ordering by FSx's own clock keeps the one a run that looked first already kept."""
    return min(file_systems, key=lambda fs: (fs.get("CreationTime") is None, fs.get("CreationTime") or 0,
                                             fs["FileSystemId"]))


def users_of(file_system: dict[str, Any]) -> list[str]:
    """Deployments that said they use this file system (their ``used-by`` tags)."""
    return sorted(k.removeprefix(USED_BY_PREFIX) for k in tags_of(file_system) if k.startswith(USED_BY_PREFIX))


def file_system_problems(fs: dict[str, Any], spec: FsxSection) -> list[str]:
    """Why an existing file system of the spec's name cannot be adopted; empty when it can."""
    lustre, problems = fs.get("LustreConfiguration") or {}, []
    if lustre.get("DeploymentType") != spec["deployment_type"]:
        problems.append(f"deployment type {lustre.get('DeploymentType')}, the plan needs {spec['deployment_type']}")
    if fs.get("StorageCapacity", 0) < spec["storage_capacity_gib"]:
        problems.append(f"{fs.get('StorageCapacity')} GiB, the plan needs {spec['storage_capacity_gib']}")
    if fs.get("Lifecycle") in BROKEN:
        problems.append(f"lifecycle {fs['Lifecycle']} {fs.get('FailureDetails', '')}".strip())
    return problems


def association_problems(association: dict[str, Any], spec: FsxSection) -> list[str]:
    """Why the association found at the spec's file system path cannot serve; empty when it can."""
    if association["DataRepositoryPath"].rstrip("/") != spec["data_repository_path"].rstrip("/"):
        return [f"{spec['file_system_path']} is linked to {association['DataRepositoryPath']}, "
                f"the plan needs {spec['data_repository_path']}"]
    if association["Lifecycle"] in ("FAILED", "MISCONFIGURED", "DELETING"):
        return [f"data repository association {association['AssociationId']} is {association['Lifecycle']} "
                f"{association.get('FailureDetails', '')}"]
    return []

"""Names, tags and labels shared by every step.

Every resource a deployment owns is found again by these names and tags, never by remembering
ids between runs: that is what makes each step safe to retry and to re-run, and what the idle
teardown uses to discover deployments.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

PROJECT = "llm-on-eks"
LABEL_PREFIX = "llm-on-eks.io"
MANAGED_BY_KEY = f"{LABEL_PREFIX}/managed-by"
DEPLOYMENT_KEY = f"{LABEL_PREFIX}/deployment"
CLUSTER_KEY = f"{LABEL_PREFIX}/cluster"
NAMESPACE_KEY = f"{LABEL_PREFIX}/namespace"
REGION_KEY = f"{LABEL_PREFIX}/region"
# On a deployment's node group while its last deploy run has failed; removed when one succeeds.
FAILED_AT_KEY = f"{LABEL_PREFIX}/failed-at"
ACCELERATOR_KEY = f"{LABEL_PREFIX}/accelerator"
IDLE_TTL_ANNOTATION = f"{LABEL_PREFIX}/idle-ttl-minutes"
PROTECTED_ANNOTATION = f"{LABEL_PREFIX}/protected"
MODEL_ANNOTATION = f"{LABEL_PREFIX}/model"
# The cluster's shared system node group carries a role instead of a deployment.
ROLE_KEY = f"{LABEL_PREFIX}/role"
SYSTEM_ROLE = "system"
# Set once, when a resource is created: which run made it and when. A retry (Airflow clears a
# task's XComs between tries) or a resumed deferral tells "created by this run" from
# "adopted" by these tags, never from memory.
CREATED_BY_RUN_KEY = f"{LABEL_PREFIX}/created-by-run"
CREATED_AT_KEY = f"{LABEL_PREFIX}/created-at"

# Helm release names are at most 53 characters and node group names 63; the longest suffix
# we append is "-nodes", and Kubernetes Job names get "-compile-" plus a hash.
DEPLOYMENT_NAME_PATTERN = r"^[a-z]([-a-z0-9]{0,38}[a-z0-9])?$"
DEPLOYMENT_NAME_MAX = 40


def default_deployment_name(model_id: str, accelerator: str) -> str:
    return f"{model_id}-{accelerator}"[:DEPLOYMENT_NAME_MAX].rstrip("-")


def check_deployment_name(name: str) -> None:
    if not re.fullmatch(DEPLOYMENT_NAME_PATTERN, name):
        raise ValueError(
            f"deployment name {name!r} must be 1-{DEPLOYMENT_NAME_MAX} lowercase letters, digits or '-', "
            "starting with a letter and not ending with '-'"
        )


def nodegroup_name(deployment: str) -> str:
    return f"{deployment}-nodes"


def fsx_name(cluster: str) -> str:
    """The cluster's shared FSx file system (its Name tag)."""
    return f"{cluster}-model-weights"


def fsx_claim_name(cluster: str) -> str:
    """The PersistentVolumeClaim each namespace reads the file system through."""
    return fsx_name(cluster)[:63]


def artifact_bucket(cluster: str, region: str) -> str:
    return f"{PROJECT}-{cluster}-{region}".lower()[:63]


def lease_name(deployment: str) -> str:
    """The Kubernetes Lease that lets one deploy or teardown of a deployment act at a time."""
    return f"{PROJECT}-{deployment}"


def aws_tags(deployment: str, cluster: str, namespace: str, region: str) -> dict[str, str]:
    """Tags on every AWS resource a deployment creates: how ensure-steps, the teardown and the
    idle teardown's discovery find them and the deployment they belong to."""
    return {MANAGED_BY_KEY: PROJECT, DEPLOYMENT_KEY: deployment, CLUSTER_KEY: cluster, NAMESPACE_KEY: namespace,
            REGION_KEY: region}


def system_tags(cluster: str) -> dict[str, str]:
    """Tags of the cluster's system node group: shared by the cluster's deployments."""
    return {MANAGED_BY_KEY: PROJECT, CLUSTER_KEY: cluster, ROLE_KEY: SYSTEM_ROLE}


def creation_tags(run_id: str, now: datetime) -> dict[str, str]:
    """Added to a create request's tags; AWS tag values allow the characters of a run id."""
    return {CREATED_BY_RUN_KEY: run_id[:256], CREATED_AT_KEY: now.astimezone(UTC).isoformat(timespec="seconds")}


def created_by_run(tags: dict[str, str] | None, run_id: str) -> bool:
    return (tags or {}).get(CREATED_BY_RUN_KEY) == run_id[:256]


def k8s_labels(deployment: str) -> dict[str, str]:
    """Labels on every Kubernetes object a deployment creates, for discovery and cleanup."""
    return {MANAGED_BY_KEY: PROJECT, DEPLOYMENT_KEY: deployment}

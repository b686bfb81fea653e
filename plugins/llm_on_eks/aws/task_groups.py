"""The provision and storage task groups of the deploy DAG."""

from __future__ import annotations

from typing import Any

from airflow.sdk import TaskGroup, XComArg


def provision_group(plan: Any) -> TaskGroup:
    """preflight -> cluster -> node group -> add-ons: nothing is created unless preflight passes."""
    from llm_on_eks.operators.aws_steps import (
        EnsureAddonsOperator,
        EnsureClusterOperator,
        EnsureNodegroupOperator,
        PreflightOperator,
    )

    with TaskGroup(group_id="provision") as group:
        (
            PreflightOperator(task_id="preflight", plan=plan)
            >> EnsureClusterOperator(task_id="ensure_cluster", plan=plan)
            >> EnsureNodegroupOperator(task_id="ensure_nodegroup", plan=plan)
            >> EnsureAddonsOperator(task_id="ensure_addons", plan=plan)
        )
    return group


def storage_group(plan: Any) -> tuple[TaskGroup, XComArg]:
    """Artifact bucket, then FSx linked to it; returns the group and the FSx handles' XCom."""
    from llm_on_eks.operators.aws_steps import EnsureArtifactBucketOperator, EnsureFsxOperator

    with TaskGroup(group_id="storage") as group:
        fsx = EnsureFsxOperator(task_id="ensure_fsx", plan=plan)
        EnsureArtifactBucketOperator(task_id="ensure_artifact_bucket", plan=plan) >> fsx
    return group, fsx.output

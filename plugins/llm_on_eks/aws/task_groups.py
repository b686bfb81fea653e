"""The AWS task groups: provision and storage (deploy DAGs), teardown (teardown DAGs).

``deferrable`` and ``waiter_delay`` pass through to every waiting step; None keeps each
operator's default (``[operators] default_deferrable``, and a poll interval sized for AWS).
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import TaskGroup, TriggerRule, XComArg


def _waits(deferrable: bool | None, waiter_delay: int | None) -> dict[str, Any]:
    return {k: v for k, v in (("deferrable", deferrable), ("waiter_delay", waiter_delay)) if v is not None}


def provision_group(plan: Any, *, deferrable: bool | None = None, waiter_delay: int | None = None) -> TaskGroup:
    """preflight -> cluster -> (system node group, accelerator node group) -> add-ons: nothing is
    created unless preflight passes; add-ons (coredns) need the untainted system nodes."""
    from llm_on_eks.operators.aws_steps import (
        EnsureAddonsOperator,
        EnsureClusterOperator,
        EnsureNodegroupOperator,
        EnsureSystemNodegroupOperator,
        PreflightOperator,
    )

    waits = _waits(deferrable, waiter_delay)
    with TaskGroup(group_id="provision") as group:
        cluster = EnsureClusterOperator(task_id="ensure_cluster", plan=plan, **waits)
        nodegroups = [EnsureSystemNodegroupOperator(task_id="ensure_system_nodegroup", plan=plan, **waits),
                      EnsureNodegroupOperator(task_id="ensure_nodegroup", plan=plan, **waits)]
        PreflightOperator(task_id="preflight", plan=plan) >> cluster >> nodegroups
        nodegroups >> EnsureAddonsOperator(task_id="ensure_addons", plan=plan, **waits)
    return group


def storage_group(plan: Any, *, deferrable: bool | None = None,
                  waiter_delay: int | None = None) -> tuple[TaskGroup, XComArg]:
    """Artifact bucket, then FSx linked to it; returns the group and the FSx handles' XCom."""
    from llm_on_eks.operators.aws_steps import EnsureArtifactBucketOperator, EnsureFsxOperator

    with TaskGroup(group_id="storage") as group:
        fsx = EnsureFsxOperator(task_id="ensure_fsx", plan=plan, **_waits(deferrable, waiter_delay))
        EnsureArtifactBucketOperator(task_id="ensure_artifact_bucket", plan=plan) >> fsx
    return group, fsx.output


def teardown_group(plan: Any, *, delete_cluster: Any = False, delete_fsx: Any = False, delete_artifacts: Any = False,
                   deferrable: bool | None = None, waiter_delay: int | None = None,
                   group_id: str = "teardown_aws") -> TaskGroup:
    """node group (until gone) -> FSx (opt-in, unused) -> system node group and cluster (opt-in,
    ours, no other node group) -> bucket (opt-in). The opt-ins may be templates
    (``"{{ params.delete_cluster }}"``)."""
    from llm_on_eks.operators.aws_teardown import (
        DeleteArtifactsOperator,
        DeleteClusterOperator,
        DeleteFsxOperator,
        DeleteNodegroupOperator,
        DeleteSystemNodegroupOperator,
    )

    waits = _waits(deferrable, waiter_delay)
    with TaskGroup(group_id=group_id) as group:
        nodegroup = DeleteNodegroupOperator(task_id="delete_nodegroup", plan=plan, **waits)
        fsx = DeleteFsxOperator(task_id="delete_fsx", plan=plan, delete_fsx=delete_fsx, **waits)
        # FSx goes before the bucket it exports to; the cluster only once no node group is left.
        # A profile without FSx skips delete_fsx: the cluster and bucket still run after it.
        system = DeleteSystemNodegroupOperator(task_id="delete_system_nodegroup", plan=plan,
                                               delete_cluster=delete_cluster, trigger_rule=TriggerRule.NONE_FAILED,
                                               **waits)
        cluster = DeleteClusterOperator(task_id="delete_cluster", plan=plan, delete_cluster=delete_cluster,
                                        trigger_rule=TriggerRule.NONE_FAILED, **waits)
        bucket = DeleteArtifactsOperator(task_id="delete_artifacts", plan=plan, delete_artifacts=delete_artifacts,
                                         trigger_rule=TriggerRule.NONE_FAILED)
        nodegroup >> fsx >> system >> cluster >> bucket
    return group

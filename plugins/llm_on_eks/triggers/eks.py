"""The EKS waits the Amazon provider has no trigger for: an add-on becoming ACTIVE, a cluster
gone after our own delete, and a node group becoming ACTIVE that also ends on a health issue.

Shaped like the provider's EKS triggers (an ``AwsBaseWaiterTrigger`` over a botocore waiter), so
they serialize, log and report errors the way they do.
"""

from __future__ import annotations

from airflow.providers.amazon.aws.hooks.eks import EksHook
from airflow.providers.amazon.aws.triggers.base import AwsBaseWaiterTrigger
from airflow.providers.amazon.aws.triggers.eks import EksCreateNodegroupTrigger

from llm_on_eks.aws.eks_hook import EksNodegroupHook


class EksNodegroupActiveTrigger(EksCreateNodegroupTrigger):
    """The provider's EksCreateNodegroupTrigger (``nodegroup_active``, reporting status and health
    issues), waiting with our ``nodegroup_active``: a node group CREATING with a health issue
    (no capacity, no quota, no addresses) ends the wait at once (``llm_on_eks.aws.eks_hook``)."""

    aws_hook_class = EksNodegroupHook


class EksAddonActiveTrigger(AwsBaseWaiterTrigger):
    """Wait until ``addon_name`` on ``cluster_name`` is ACTIVE (CREATE_FAILED or DEGRADED end it)."""

    aws_hook_class = EksHook

    def __init__(self, cluster_name: str, addon_name: str, waiter_delay: int, waiter_max_attempts: int,
                 aws_conn_id: str | None, region_name: str | None = None, verify: bool | str | None = None,
                 botocore_config: dict | None = None):
        super().__init__(
            serialized_fields={"cluster_name": cluster_name, "addon_name": addon_name, "region_name": region_name},
            waiter_name="addon_active",
            waiter_args={"clusterName": cluster_name, "addonName": addon_name},
            failure_message="EKS add-on did not become active",
            status_message="EKS add-on status is",
            status_queries=["addon.status", "addon.health.issues"],
            return_key="addon_name",
            return_value=addon_name,
            waiter_delay=waiter_delay,
            waiter_max_attempts=waiter_max_attempts,
            aws_conn_id=aws_conn_id,
            region_name=region_name,
            verify=verify,
            botocore_config=botocore_config,
        )


class EksClusterDeletedTrigger(AwsBaseWaiterTrigger):
    """Wait until ``cluster_name`` is gone. The provider's EksDeleteClusterTrigger also sends the
    delete (and deletes node groups and Fargate profiles first); the teardown sends its own
    delete after its own checks, so it only needs the wait (botocore's ``cluster_deleted``)."""

    aws_hook_class = EksHook

    def __init__(self, cluster_name: str, waiter_delay: int, waiter_max_attempts: int, aws_conn_id: str | None,
                 region_name: str | None = None, verify: bool | str | None = None, botocore_config: dict | None = None):
        super().__init__(
            serialized_fields={"cluster_name": cluster_name, "region_name": region_name},
            waiter_name="cluster_deleted",
            waiter_args={"name": cluster_name},
            failure_message="EKS cluster was not deleted",
            status_message="EKS cluster status is",
            status_queries=["cluster.status"],
            return_key="cluster_name",
            return_value=cluster_name,
            waiter_delay=waiter_delay,
            waiter_max_attempts=waiter_max_attempts,
            aws_conn_id=aws_conn_id,
            region_name=region_name,
            verify=verify,
            botocore_config=botocore_config,
        )

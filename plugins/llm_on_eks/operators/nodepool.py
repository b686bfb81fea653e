"""The ``provision.ensure_nodepool`` step: on an EKS Auto Mode cluster the deployment's
accelerator nodes come from a Karpenter NodePool (``llm_on_eks.kube.nodepool``) and
``provision.ensure_nodegroup`` makes none; on any other cluster this step makes nothing. Its
result tells ``device_plugin`` whether the platform brings the plugin and launches the nodes
only when the serving pods ask for them.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import Context
from airflow.sdk.exceptions import AirflowFailException

from llm_on_eks.aws import eks as rules
from llm_on_eks.kube.access import api_client
from llm_on_eks.kube.nodepool import NodePoolError, ensure_nodepool, manifest
from llm_on_eks.operators.base import DeploymentStepOperator
from llm_on_eks.plan.types import NodePoolSpec


class EnsureNodePoolOperator(DeploymentStepOperator):
    """Apply the deployment's NodePool, or check the one the params name, when the cluster runs
    EKS Auto Mode (its DescribeCluster ``computeConfig``).

    :param nodepool: the NodePool: named in the params, or the one to make for the deployment
    """

    template_fields = (*DeploymentStepOperator.template_fields, "nodepool")

    def __init__(self, *, nodepool: NodePoolSpec, **kwargs) -> None:
        super().__init__(**kwargs)
        self.nodepool = nodepool

    def describe(self) -> Any:
        spec = self.nodepool
        return {"find": {"service": "eks", "operation": "describe_cluster", "kwargs": {"name": self.access["cluster"]}},
                "if_auto_mode": (f"check NodePool {spec['name']} takes {spec['instance_type']} nodes" if spec["given"]
                                 else {"apply": manifest(spec)}),
                "otherwise": "nothing: provision.ensure_nodegroup makes the nodes"}

    def run(self, context: Context) -> Any:
        from airflow.providers.amazon.aws.hooks.eks import EksHook

        access, spec = self.access, self.nodepool
        name = access["cluster"]
        cluster = rules.describe_cluster(EksHook(aws_conn_id=access["aws_conn_id"], region_name=access["region"]).conn,
                                         name)
        if not rules.auto_mode(cluster):  # a NodePool named for such a cluster was refused by preflight
            return {"cluster": name, "auto_mode": False, "nodepool": None,
                    "action": "none: not an EKS Auto Mode cluster (provision.ensure_nodegroup makes the nodes)"}
        try:
            with api_client(access) as api:
                done = ensure_nodepool(api, spec)
        except NodePoolError as exc:
            raise AirflowFailException(str(exc)) from None
        self.log.info("EKS Auto Mode cluster %s: NodePool %s %s", name, done["nodepool"], done["action"])
        return {"cluster": name, "auto_mode": True, **done}

"""The teardown plan: what a teardown acts on, from the deployment's identity alone."""

from __future__ import annotations

from typing import Any

from llm_on_eks import inputs, naming
from llm_on_eks.catalog import Catalog, default_catalog
from llm_on_eks.plan.defaults import PlanError, param
from llm_on_eks.plan.deploy import check_inputs
from llm_on_eks.plan.sections import target_section
from llm_on_eks.plan.types import Plan, TeardownPlan

TEARDOWN_KEYS = ("deployment_name", "cluster_name", "region", "namespace", "aws_conn_id", "kubernetes_conn_id",
                 "artifact_bucket", "dry_run", "reason")


def build_teardown_plan(params: dict[str, Any], catalog: Catalog | None = None,
                        allowed: inputs.Allowed | None = None) -> TeardownPlan:
    """The teardown of ``params["deployment_name"]`` on the params' cluster and namespace, named by
    the rules a deploy names it by."""
    check_inputs(params, allowed)
    catalog = catalog or default_catalog()
    deployment = params.get("deployment_name") or ""
    try:
        naming.check_deployment_name(deployment)
    except ValueError as exc:
        raise PlanError(f"deployment_name: {exc}") from exc
    cluster, region, namespace = param(params, "cluster_name"), param(params, "region"), param(params, "namespace")
    target = target_section(params, deployment, cluster, region, namespace)
    return {
        "deployment": deployment,
        "dry_run": target["dry_run"],
        "reason": params.get("reason") or "requested",
        "target": target,
        **_cluster_sections(params, cluster, region),
        "nodegroup": {"name": naming.nodegroup_name(cluster, region, namespace, deployment), "role": "accelerator",
                      "tags": naming.aws_tags(deployment, cluster, namespace, region),
                      "launch_template": naming.launch_template_name(cluster, region, namespace, deployment)},
        "nodepool": {"name": naming.nodepool_name(cluster, region, namespace, deployment)},
        "kubernetes": {"conn_id": params.get("kubernetes_conn_id"), "namespace": namespace,
                       "release": deployment, "labels": naming.k8s_labels(deployment)},
        "hf_token": {"k8s_secret": {"name": catalog.hf_token_secret_name, "key": catalog.hf_token_secret_key}},
    }


def _cluster_sections(params: dict[str, Any], cluster: str, region: str) -> dict[str, Any]:
    """What a cluster's deployments share: the cluster, its system node group, FSx and bucket."""
    return {
        "aws": {"conn_id": param(params, "aws_conn_id"), "region": region},
        "cluster": {"name": cluster},
        "system_nodegroup": {"name": naming.system_nodegroup_name(cluster, region), "role": naming.SYSTEM_ROLE,
                             "tags": naming.system_tags(cluster), "launch_template": None},
        "storage": {"artifact_bucket": params.get("artifact_bucket") or naming.artifact_bucket(cluster, region),
                    "fsx": {"name": naming.fsx_name(cluster), "pvc_name": naming.fsx_claim_name(cluster, region)}},
    }


def build_cluster_removal_plan(params: dict[str, Any], reason: str) -> dict[str, Any]:
    """The removal of an unused cluster of ours (``params``: its name, region and connections):
    its FSx, system node group, the cluster, and the network and roles made with it; no
    deployment's. The idle teardown decides it (``aws.teardown.quiet_cluster_decision``)."""
    check_inputs(params, None)
    cluster, region = param(params, "cluster_name"), param(params, "region")
    return {"target": target_section(params, None, cluster, region, param(params, "namespace")),
            **_cluster_sections(params, cluster, region), "reason": reason}


def teardown_params(plan: Plan) -> dict[str, Any]:
    """The teardown params that find what ``plan`` deployed (its identity and how to reach it)."""
    return {"deployment_name": plan["deployment"], "cluster_name": plan["cluster"]["name"],
            "region": plan["aws"]["region"], "namespace": plan["kubernetes"]["namespace"],
            "aws_conn_id": plan["aws"]["conn_id"], "kubernetes_conn_id": plan["kubernetes"]["conn_id"],
            "artifact_bucket": plan["storage"]["artifact_bucket"]}

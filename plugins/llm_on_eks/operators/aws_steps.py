"""AWS steps of a deployment: preflight, cluster, node group, add-ons, artifact bucket, FSx."""

from __future__ import annotations

from typing import Any

from llm_on_eks.aws import api_calls
from llm_on_eks.operators.base import PlanStepOperator

# What the cluster needs for accelerator pods beyond what EKS installs (seed 000, seed 001).
ADDONS = {
    "gpu": ["vpc-cni", "coredns", "kube-proxy", "aws-fsx-csi-driver"],
    "neuron": ["vpc-cni", "coredns", "kube-proxy"],
}


class PreflightOperator(PlanStepOperator):
    """Before anything is created: the instance type is offered, the version supported, the quota enough."""

    def describe(self, plan: dict[str, Any]) -> Any:
        return {"checks": api_calls.preflight_requests(plan)}


class EnsureClusterOperator(PlanStepOperator):
    """Adopt the named EKS cluster, or create it when the plan allows."""

    def describe(self, plan: dict[str, Any]) -> Any:
        find = {"service": "eks", "operation": "describe_cluster", "kwargs": {"name": plan["cluster"]["name"]}}
        if not plan["cluster"]["create"]:
            return {"find": find, "if_missing": "fail: create_cluster is off"}
        return {"find": find, "if_missing": {"service": "eks", "operation": "create_cluster",
                                             "kwargs": api_calls.create_cluster_request(plan)},
                "wait_for": "cluster ACTIVE"}


class EnsureNodegroupOperator(PlanStepOperator):
    """Adopt the deployment's accelerator node group, or create it."""

    def describe(self, plan: dict[str, Any]) -> Any:
        return {
            "find": {"service": "eks", "operation": "describe_nodegroup",
                     "kwargs": {"clusterName": plan["cluster"]["name"], "nodegroupName": plan["nodegroup"]["name"]}},
            "if_missing": {"service": "eks", "operation": "create_nodegroup",
                           "kwargs": api_calls.create_nodegroup_request(plan)},
            "wait_for": "node group ACTIVE",
        }


class EnsureAddonsOperator(PlanStepOperator):
    """The EKS add-ons accelerator serving needs (CSI driver for FSx on GPU profiles)."""

    def describe(self, plan: dict[str, Any]) -> Any:
        return {"ensure": [{"service": "eks", "operation": "create_addon",
                            "kwargs": {"clusterName": plan["cluster"]["name"], "addonName": name,
                                       "resolveConflicts": "PRESERVE", "tags": dict(plan["tags"])}}
                           for name in ADDONS[plan["profile"]["accelerator"]]]}


class EnsureArtifactBucketOperator(PlanStepOperator):
    """The S3 bucket for the Neuron compile cache, staged-weight markers and FSx's data repository."""

    def describe(self, plan: dict[str, Any]) -> Any:
        bucket = plan["storage"]["artifact_bucket"]
        return {"find": {"service": "s3", "operation": "head_bucket", "kwargs": {"Bucket": bucket}},
                "if_missing": [{"service": "s3", "operation": "create_bucket",
                                "kwargs": api_calls.create_bucket_request(plan)},
                               {"service": "s3", "operation": "put_bucket_tagging",
                                "kwargs": api_calls.bucket_tagging_request(plan)}]}


class EnsureFsxOperator(PlanStepOperator):
    """FSx for Lustre linked to S3, for profiles that stage weights; others skip it."""

    def describe(self, plan: dict[str, Any]) -> Any:
        if plan["storage"]["fsx"] is None:
            return {"skip": f"the {plan['profile']['weights']} weight path needs no FSx"}
        name = plan["storage"]["fsx"]["name"]
        return {
            "find": {"service": "fsx", "operation": "describe_file_systems", "filter_by_tag": {"Name": name}},
            "if_missing": {"service": "fsx", "operation": "create_file_system",
                           "kwargs": api_calls.create_file_system_request(plan)},
            "wait_for": "file system AVAILABLE",
            "link": {"service": "fsx", "operation": "create_data_repository_association",
                     "kwargs": api_calls.create_data_repository_association_request(plan, "<file system id>")},
            "hands_on": ["file_system_id", "dns_name", "mount_name"],
        }

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


# On-demand vCPU quotas by instance family, found by name (Service Quotas, service code ec2).
QUOTA_NAMES = {"p": "Running On-Demand P instances", "g": "Running On-Demand G and VT instances",
               "trn": "Running On-Demand Trn instances"}


class PreflightOperator(PlanStepOperator):
    """Before anything is created: the instance type is offered, the version supported, the quota
    enough. A check AWS does not answer is reported as unknown, never counted as passed."""

    def describe(self, plan: dict[str, Any]) -> Any:
        return {"checks": api_calls.preflight_requests(plan)}

    def run(self, plan: dict[str, Any], context: Any) -> Any:
        from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook
        from airflow.sdk.exceptions import AirflowFailException

        def client(name: str):
            return AwsBaseHook(aws_conn_id=plan["aws"]["conn_id"], client_type=name,
                               region_name=plan["aws"]["region"]).get_conn()

        checks = [_check("instance type offered", lambda: _offered(client("ec2"), plan)),
                  _check("cluster version supported", lambda: _version_supported(client("eks"), plan)),
                  _check("on-demand vCPU quota", lambda: _quota(client("service-quotas"), plan))]
        for check in checks:
            self.log.info("preflight %s: %s (%s)", check["check"], check["status"], check["detail"])
        failed = [c for c in checks if c["status"] == "fail"]
        if failed:
            raise AirflowFailException("preflight failed, nothing was created: "
                                       + "; ".join(f"{c['check']}: {c['detail']}" for c in failed))
        return {"checks": checks}


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


def _check(name: str, probe) -> dict[str, str]:
    """Run one probe; an API that refuses to answer makes the check unknown, not passed."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        passed, detail = probe()
    except (ClientError, BotoCoreError, NotImplementedError) as exc:
        return {"check": name, "status": "unknown", "detail": f"AWS did not answer: {exc}"}
    return {"check": name, "status": "pass" if passed else "fail", "detail": detail}


def _offered(ec2, plan: dict[str, Any]) -> tuple[bool, str]:
    request = api_calls.preflight_requests(plan)[0]["kwargs"]
    offerings = ec2.describe_instance_type_offerings(**request)["InstanceTypeOfferings"]
    instance, region = plan["nodegroup"]["instance_type"], plan["aws"]["region"]
    return bool(offerings), f"{instance} is {'' if offerings else 'not '}offered in {region}"


def _version_supported(eks, plan: dict[str, Any]) -> tuple[bool, str]:
    version = plan["cluster"]["version"]
    found = eks.describe_cluster_versions(clusterVersions=[version])["clusterVersions"]
    return bool(found), f"EKS {'supports' if found else 'does not support'} Kubernetes {version}"


def _quota(quotas, plan: dict[str, Any]) -> tuple[bool, str]:
    import re

    from llm_on_eks.catalog import default_catalog

    instance = default_catalog().instance_type(plan["nodegroup"]["instance_type"])
    family = re.match(r"[a-z]+", instance.name).group()
    name = QUOTA_NAMES.get(family) or QUOTA_NAMES.get(family[0])
    if name is None:
        raise NotImplementedError(f"no quota known for the {family} family")
    pages = quotas.get_paginator("list_service_quotas").paginate(ServiceCode="ec2")
    quota = next((q for page in pages for q in page["Quotas"] if q["QuotaName"] == name), None)
    if quota is None:
        raise NotImplementedError(f"quota {name!r} not listed")
    needed = (instance.vcpus or 0) * plan["profile"]["nodes"]
    return quota["Value"] >= needed, f"{name}: {quota['Value']:.0f} vCPUs, {needed} needed"

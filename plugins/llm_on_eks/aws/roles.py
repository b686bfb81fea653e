"""The cluster's and the nodes' IAM roles: checked when given, made with the cluster when not,
removed with it. Their trust and managed policies are AWS's (EKS user guide, "Amazon EKS cluster
IAM role" and "Amazon EKS node IAM role"). The nodes' role we make may also use the artifact
buckets of the cluster's deployments: the weight-staging and Neuron compile Jobs write there, and
serving pods read streamed weights and compiled artifacts, with the node's identity."""

from __future__ import annotations

import json
import logging
from typing import Any

from llm_on_eks.naming import CLUSTER_KEY, REGION_KEY, is_managed

ROLES: dict[str, dict[str, Any]] = {
    "cluster": {"service": "eks.amazonaws.com", "policies": ("AmazonEKSClusterPolicy",),
                "param": "cluster_role_arn"},
    "node": {"service": "ec2.amazonaws.com",
             "policies": ("AmazonEKSWorkerNodePolicy", "AmazonEKS_CNI_Policy", "AmazonEC2ContainerRegistryReadOnly"),
             "param": "node_role_arn"},
}

ARTIFACTS_POLICY_PREFIX = "llm-on-eks-artifacts-"


def name_of(arn: str) -> str:
    """A role ARN's name: the part after the last '/' (a role's path sits between)."""
    return arn.rsplit("/", 1)[-1]


def trust_policy(kind: str) -> dict[str, Any]:
    return {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"Service": ROLES[kind]["service"]}, "Action": "sts:AssumeRole"}]}


def policy_arn(partition: str, policy: str) -> str:
    return f"arn:{partition}:iam::aws:policy/{policy}"


def _listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def trusts(document: dict[str, Any] | str, service: str) -> bool:
    """Whether the trust policy lets ``service`` assume the role (an unconditional Allow)."""
    if isinstance(document, str):
        document = json.loads(document)
    for statement in _listed(document.get("Statement", [])):
        principals = (statement.get("Principal") or {})
        services = _listed(principals.get("Service", [])) if isinstance(principals, dict) else []
        actions = _listed(statement.get("Action", []))
        if (statement.get("Effect") == "Allow" and service in services and not statement.get("Condition")
                and any(a in ("sts:AssumeRole", "sts:*", "*") for a in actions)):
            return True
    return False


def attached(iam, name: str) -> set[str]:
    names: set[str] = set()
    for page in iam.get_paginator("list_attached_role_policies").paginate(RoleName=name):
        names |= {p["PolicyName"] for p in page["AttachedPolicies"]}
    return names


def role_problems(iam, arn: str, kind: str) -> list[str]:
    """Why a given role cannot serve as the cluster's or the nodes' role; empty when it can."""
    spec, name = ROLES[kind], name_of(arn)
    try:
        role = iam.get_role(RoleName=name)["Role"]
    except iam.exceptions.NoSuchEntityException:
        return [f"{spec['param']} {arn}: no such role in the account"]
    problems = []
    if not trusts(role["AssumeRolePolicyDocument"], spec["service"]):
        problems.append(f"{spec['param']} {arn}: its trust policy does not let {spec['service']} assume it "
                        "(sts:AssumeRole)")
    lacking = [p for p in spec["policies"] if p not in attached(iam, name)]
    if lacking:
        problems.append(f"{spec['param']} {arn}: attach the AWS managed policies {', '.join(lacking)}")
    return problems


def find_arn(iam, name: str) -> str | None:
    try:
        return iam.get_role(RoleName=name)["Role"]["Arn"]
    except iam.exceptions.NoSuchEntityException:
        return None


def is_ours(role: dict[str, Any], cluster: str, region: str) -> bool:
    tags = {t["Key"]: t["Value"] for t in role.get("Tags") or []}
    return is_managed(tags) and tags.get(CLUSTER_KEY) == cluster and tags.get(REGION_KEY) == region


def ensure_role(iam, name: str, kind: str, cluster: str, region: str, tags: dict[str, str], partition: str,
                log: logging.Logger) -> dict[str, str]:
    """Find the role by name or create it, and attach the managed policies it lacks. A role of
    that name that is not this project's for the cluster is refused, never changed."""
    spec = ROLES[kind]
    try:
        role = iam.get_role(RoleName=name)["Role"]
        action = "adopted"
    except iam.exceptions.NoSuchEntityException:
        try:
            iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust_policy(kind)),
                            Description=f"EKS {kind} role of cluster {cluster} ({region}), made by llm-on-eks",
                            Tags=[{"Key": k, "Value": v} for k, v in tags.items()])
            action = "created"
        except iam.exceptions.EntityAlreadyExistsException:
            action = "adopted"
        role = iam.get_role(RoleName=name)["Role"]
    if not is_ours(role, cluster, region):
        raise ValueError(f"IAM role {name} exists and is not llm-on-eks's for {cluster} in {region}: name "
                         f"{spec['param']} instead")
    for policy in sorted(set(spec["policies"]) - attached(iam, name)):
        iam.attach_role_policy(RoleName=name, PolicyArn=policy_arn(partition, policy))
    log.info("IAM %s role %s %s", kind, name, action)
    return {"name": name, "arn": role["Arn"], "action": action}


def artifacts_policy(partition: str, bucket: str) -> dict[str, Any]:
    """Read and write objects of one artifact bucket, and list it (vLLM's streamer lists the
    weights' prefix; the Jobs check what is there)."""
    arn = f"arn:{partition}:s3:::{bucket}"
    return {"Version": "2012-10-17", "Statement": [
        {"Sid": "ListArtifacts", "Effect": "Allow", "Action": ["s3:ListBucket", "s3:GetBucketLocation"],
         "Resource": arn},
        {"Sid": "ReadWriteArtifacts", "Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject"],
         "Resource": f"{arn}/*"}]}


def grant_artifacts(iam, name: str, bucket: str, partition: str, log: logging.Logger) -> None:
    """An inline policy per bucket on a role of ours, put only when missing or different: a
    deploy that finds everything in place changes nothing."""
    policy_name, wanted = f"{ARTIFACTS_POLICY_PREFIX}{bucket}", artifacts_policy(partition, bucket)
    try:
        # botocore decodes IAM's URL-encoded policy documents into dicts (handlers.json_decode_policies).
        if iam.get_role_policy(RoleName=name, PolicyName=policy_name)["PolicyDocument"] == wanted:
            return
    except iam.exceptions.NoSuchEntityException:
        pass
    iam.put_role_policy(RoleName=name, PolicyName=policy_name, PolicyDocument=json.dumps(wanted))
    log.info("IAM role %s may use s3://%s", name, bucket)


def delete_role(iam, name: str, log: logging.Logger) -> None:
    """Detach its policies and delete its inline ones, take it out of its instance profiles, delete it."""
    for policy in iam.list_attached_role_policies(RoleName=name)["AttachedPolicies"]:
        iam.detach_role_policy(RoleName=name, PolicyArn=policy["PolicyArn"])
    for policy_name in iam.list_role_policies(RoleName=name)["PolicyNames"]:
        iam.delete_role_policy(RoleName=name, PolicyName=policy_name)
    for profile in iam.list_instance_profiles_for_role(RoleName=name)["InstanceProfiles"]:
        iam.remove_role_from_instance_profile(InstanceProfileName=profile["InstanceProfileName"], RoleName=name)
    iam.delete_role(RoleName=name)
    log.info("IAM role %s deleted", name)

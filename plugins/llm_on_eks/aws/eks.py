"""How the EKS steps judge what they find: adopt it, wait for it, or refuse it with a reason.

The decisions are plain functions over DescribeCluster / DescribeNodegroup / DescribeAddon
answers, so the operators stay thin and the rules can be read (and tested) in one place.
Every resource is found by its name first; tags then say whose it is.
"""

from __future__ import annotations

from typing import Any

from llm_on_eks.aws.api_calls import capacity_type, scaling_config, vcpu_quota_request
from llm_on_eks.naming import DEPLOYMENT_KEY, MANAGED_BY_KEY, ROLE_KEY
from llm_on_eks.plan.types import NodegroupSpec

# An inference-ready cluster runs EKS 1.30 or newer (the AL2023 accelerated AMIs the device
# plugins rely on; AWS docs, "Amazon EKS optimized accelerated Amazon Linux AMIs").
MIN_KUBERNETES = (1, 30)
CLUSTER_USABLE = {"ACTIVE", "UPDATING"}
CLUSTER_PENDING = {"CREATING"}
NODEGROUP_USABLE = {"ACTIVE"}
NODEGROUP_PENDING = {"CREATING", "UPDATING"}
ADDON_USABLE = {"ACTIVE"}
ADDON_PENDING = {"CREATING", "UPDATING"}
# Taints that keep a pod without a matching toleration off a node (PreferNoSchedule does not).
BLOCKING_TAINTS = {"NO_SCHEDULE", "NO_EXECUTE"}
# The tags that say whose a node group is: the deployment's for an accelerator node group, the
# role's (with the cluster in its name) for the cluster's shared system node group.
OWNER_KEYS = (MANAGED_BY_KEY, DEPLOYMENT_KEY, ROLE_KEY)


def _not_found(client, call, **kwargs) -> Any:
    try:
        return call(**kwargs)
    except client.exceptions.ResourceNotFoundException:
        return None


def describe_cluster(eks, name: str) -> dict[str, Any] | None:
    found = _not_found(eks, eks.describe_cluster, name=name)
    return found and found["cluster"]


def describe_nodegroup(eks, cluster: str, name: str) -> dict[str, Any] | None:
    found = _not_found(eks, eks.describe_nodegroup, clusterName=cluster, nodegroupName=name)
    return found and found["nodegroup"]


def describe_addon(eks, cluster: str, name: str) -> dict[str, Any] | None:
    found = _not_found(eks, eks.describe_addon, clusterName=cluster, addonName=name)
    return found and found["addon"]


def auto_mode(cluster: dict[str, Any] | None) -> bool:
    """Whether EKS Auto Mode runs the cluster's compute (DescribeCluster's computeConfig): its nodes
    come from Karpenter NodePools, not managed node groups (``llm_on_eks.kube.nodepool``)."""
    return bool(((cluster or {}).get("computeConfig") or {}).get("enabled"))


# Add-ons an EKS Auto Mode cluster runs as part of its nodes; installed as add-ons they would only
# serve nodes outside Auto Mode (EKS user guide, "Automate cluster infrastructure with EKS Auto Mode").
AUTO_MODE_BUILT_IN = ("vpc-cni", "coredns", "kube-proxy")


def list_nodegroups(eks, cluster: str) -> list[str]:
    names: list[str] = []
    for page in eks.get_paginator("list_nodegroups").paginate(clusterName=cluster):
        names.extend(page["nodegroups"])
    return names


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


def cluster_problems(cluster: dict[str, Any]) -> list[str]:
    """Why an existing cluster cannot carry the deployment; empty when it can."""
    problems = []
    if cluster["status"] not in CLUSTER_USABLE | CLUSTER_PENDING:
        problems.append(f"status is {cluster['status']}")
    if _version(cluster["version"]) < MIN_KUBERNETES:
        problems.append(f"Kubernetes {cluster['version']} is older than "
                        f"{'.'.join(map(str, MIN_KUBERNETES))}, the oldest the accelerator AMIs support")
    return problems


def owner_tags(want: NodegroupSpec) -> dict[str, str]:
    """The tags a node group of the spec (and its launch template) must carry to be ours."""
    return {k: want["tags"][k] for k in OWNER_KEYS if k in want["tags"]}


def nodegroup_problems(nodegroup: dict[str, Any], want: NodegroupSpec,
                       reservation: dict[str, Any] | None = None) -> list[str]:
    """Why an existing node group of the spec's name cannot be adopted; empty when it can.
    ``reservation``: DescribeCapacityReservations' answer for the spec's reservation, if it has one.

    Scaling is not judged here: a different size is the plan changing, and is applied."""
    problems: list[str] = []
    tags = nodegroup.get("tags") or {}
    owner = owner_tags(want)
    if any(tags.get(k) != v for k, v in owner.items()):
        problems.append(f"it is not tagged {', '.join(f'{k}={v}' for k, v in owner.items())} "
                        "(someone else's node group has this name)")
    if nodegroup["status"] not in NODEGROUP_USABLE | NODEGROUP_PENDING:
        issues = "; ".join(i.get("message", i.get("code", "")) for i in (nodegroup.get("health") or {}).get("issues", []))
        problems.append(f"status is {nodegroup['status']}" + (f" ({issues})" if issues else ""))
    if want["capacity_reservation_id"]:
        # The instance type is the launch template's, which targets the reservation.
        template = (nodegroup.get("launchTemplate") or {}).get("name")
        if template != want["launch_template"]:
            problems.append(f"it launches from launch template {template}, the plan needs {want['launch_template']} "
                            f"(capacity reservation {want['capacity_reservation_id']})")
    elif nodegroup.get("instanceTypes") != [want["instance_type"]]:
        problems.append(f"instance types {nodegroup.get('instanceTypes')}, the plan needs [{want['instance_type']}]")
    if nodegroup.get("amiType") != want["ami_type"]:
        problems.append(f"AMI type {nodegroup.get('amiType')}, the plan needs {want['ami_type']}")
    capacity = capacity_type(want, reservation)
    if nodegroup.get("capacityType", "ON_DEMAND") != capacity:
        problems.append(f"capacity type {nodegroup.get('capacityType')}, the plan needs {capacity}")
    labels = nodegroup.get("labels") or {}
    missing = {k: v for k, v in want["labels"].items() if labels.get(k) != v}
    if missing:
        problems.append(f"labels lack {missing} (the Helm chart selects nodes by them)")
    taints = {(t["key"], t.get("value"), t["effect"]) for t in nodegroup.get("taints") or []}
    missing_taints = [t for t in want["taints"] if (t["key"], t["value"], t["effect"]) not in taints]
    if missing_taints:
        problems.append(f"taints lack {missing_taints}")
    wanted = {(t["key"], t["value"], t["effect"]) for t in want["taints"]}
    extra = sorted(f"{k}={v or ''}:{e}" for k, v, e in taints if e in BLOCKING_TAINTS and (k, v, e) not in wanted)
    if extra:
        problems.append(f"it is tainted {extra}, which the pods meant for it do not tolerate")
    return problems


# What to try when a node group's instances cannot launch, by its health issue's code (EKS API
# reference, Issue; botocore's EKS model, NodegroupIssueCode) or by the EC2 error EKS quotes in
# an AsgInstanceLaunchFailures message (EC2 API reference, "Error codes").
QUOTA_ADVICE = "request a quota increase (Service Quotas, ec2 {quota}: the family's running on-demand vCPUs)"
LAUNCH_ADVICE = {
    "InsufficientInstanceCapacity": "EC2 has no {instance_type} to spare there now: try another availability zone "
                                    "(subnet_ids) or region, or reserve it: an On-Demand Capacity Reservation or "
                                    "a Capacity Block for ML, passed as capacity_reservation_id",
    "ReservationCapacityExceeded": "the capacity reservation has fewer instances available than the node group "
                                   "launches: free its instances, reserve more, or name another one",
    "InstanceLimitExceeded": QUOTA_ADVICE,
    "VcpuLimitExceeded": QUOTA_ADVICE,
    "InsufficientFreeAddresses": "give subnet_ids with more free addresses, or larger subnets (each node holds two "
                                 "network interfaces' worth)",
    "Ec2SubnetInvalidConfiguration": "the subnets must give instances addresses they can use: public subnets need "
                                     "auto-assign public IPv4 (MapPublicIpOnLaunch); or give private subnets with a "
                                     "NAT gateway",
}


def launch_failure(nodegroup: dict[str, Any], instance_type: str) -> str | None:
    """The node group's health issues, each with what to try; None when it reports none."""
    issues = (nodegroup.get("health") or {}).get("issues") or []
    if not issues:
        return None
    quota = (vcpu_quota_request(instance_type) or {}).get("QuotaCode", "for the instance family")
    told = []
    for issue in issues:
        code, message = issue.get("code", "Unknown"), issue.get("message", "")
        advice = next((advice for key, advice in LAUNCH_ADVICE.items() if key == code or key in message), None)
        told.append(f"{code}: {message}" + (f" ({advice.format(instance_type=instance_type, quota=quota)})"
                                            if advice else ""))
    return "; ".join(told)


def is_untainted(nodegroup: dict[str, Any]) -> bool:
    """Pods without tolerations (coredns, the weight-staging Job) can run on its nodes."""
    return not any(t.get("effect") in BLOCKING_TAINTS for t in nodegroup.get("taints") or [])


def untainted_nodegroups(eks, cluster: str) -> list[dict[str, Any]]:
    """The cluster's managed node groups that take pods without tolerations and are not failing."""
    found = []
    for name in list_nodegroups(eks, cluster):
        group = describe_nodegroup(eks, cluster, name)
        if group and is_untainted(group) and group["status"] in NODEGROUP_USABLE | NODEGROUP_PENDING:
            found.append(group)
    return found


def scaling_differs(nodegroup: dict[str, Any], want: NodegroupSpec) -> bool:
    have = nodegroup.get("scalingConfig") or {}
    return any(have.get(k) != v for k, v in scaling_config(want).items())


def addon_problems(addon: dict[str, Any]) -> list[str]:
    if addon["status"] in ADDON_USABLE | ADDON_PENDING:
        return []
    issues = "; ".join(i.get("message", "") for i in (addon.get("health") or {}).get("issues", []))
    return [f"add-on {addon['addonName']} is {addon['status']}" + (f" ({issues})" if issues else "")]

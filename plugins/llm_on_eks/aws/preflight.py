"""Preflight's probes: each asks AWS one question before anything is created and answers pass,
fail, or unknown (AWS did not answer), never passing what it could not check."""

from __future__ import annotations

from datetime import UTC, datetime

from airflow.sdk.exceptions import AirflowNotFoundException

from llm_on_eks.aws import api_calls, capacity, network, roles
from llm_on_eks.aws import eks as eks_rules
from llm_on_eks.aws.hf_token import read_hf_token, token_origin
from llm_on_eks.catalog import default_catalog
from llm_on_eks.plan.types import AwsSection, HfTokenSection, NodegroupSpec, NodePoolSpec

# Checks whose "unknown" stops the run unless the operator says to proceed: without the token no
# pod ever gets weights, and without quota or a usable reservation the node group never gets
# nodes; either way the money goes on a cluster, file system and node group that cannot serve.
MUST_KNOW = ("on-demand vCPU quota", "HF token source", "capacity reservation")


def check(name: str, probe) -> dict[str, str]:
    """Run one probe; an API that refuses to answer makes the check unknown, not passed."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        passed, detail = probe()
    except (ClientError, BotoCoreError, NotImplementedError) as exc:
        return {"check": name, "status": "unknown", "detail": f"AWS did not answer: {exc}"}
    return {"check": name, "status": "pass" if passed else "fail", "detail": detail}


def offered(ec2, region: str, instance: str) -> tuple[bool, str]:
    offerings = ec2.describe_instance_type_offerings(
        **api_calls.instance_offering_request(instance))["InstanceTypeOfferings"]
    return bool(offerings), f"{instance} is {'' if offerings else 'not '}offered in {region}"


def _addresses_needed(ec2, nodegroup: NodegroupSpec) -> int:
    """The node group's nodes' addresses, by DescribeInstanceTypes' addresses per interface."""
    per_interface = ec2.describe_instance_types(
        InstanceTypes=[nodegroup["instance_type"]])["InstanceTypes"][0]["NetworkInfo"]["Ipv4AddressesPerInterface"]
    return network.addresses_needed(nodegroup["scaling"]["desired_size"], per_interface)


def subnets_fit(ec2, subnet_ids: list[str], nodegroup: NodegroupSpec) -> tuple[bool, str]:
    """Given subnets: each in a zone that offers the node group's instance type, one VPC, and
    room for its nodes' addresses."""
    instance_type = nodegroup["instance_type"]
    zones = network.offering_zones(ec2, instance_type)
    found = ec2.describe_subnets(Filters=[{"Name": "subnet-id", "Values": list(subnet_ids)}])["Subnets"]
    needed = _addresses_needed(ec2, nodegroup)
    problems = network.subnet_problems(found, subnet_ids, zones, instance_type, needed)
    return not problems, "; ".join(problems) or (
        f"{', '.join(subnet_ids)} in {', '.join(sorted({s['AvailabilityZone'] for s in found}))}, which offer "
        f"{instance_type}, with room for {needed} addresses")


def cluster_subnets_fit(eks, ec2, cluster: str, nodegroup: NodegroupSpec) -> tuple[bool, str]:
    """An existing cluster's subnets, where a new node group goes without subnet_ids: some in a
    zone that offers its instance type (``network.node_subnets``), with room for its nodes'
    addresses. Nothing to check for a cluster still to be made (its network fits by construction)
    or a node group that exists (its nodes hold their addresses already)."""
    found = eks_rules.describe_cluster(eks, cluster)
    if found is None:
        return True, f"cluster {cluster} is made by this run, in subnets chosen for {nodegroup['instance_type']}"
    if eks_rules.describe_nodegroup(eks, cluster, nodegroup["name"]) is not None:
        return True, f"node group {nodegroup['name']} exists in its own subnets"
    subnet_ids = (found.get("resourcesVpcConfig") or {}).get("subnetIds") or []
    instance_type = nodegroup["instance_type"]
    try:
        fitting = network.node_subnets(ec2, cluster, subnet_ids, instance_type)
    except network.NetworkError as exc:
        return False, str(exc)
    free = sum(s.get("AvailableIpAddressCount", 0) for s in network.subnets(ec2, fitting))
    needed = _addresses_needed(ec2, nodegroup)
    if free < needed:
        return False, f"cluster {cluster}'s subnets {fitting} have {free} free addresses, the node group needs {needed}"
    return True, f"cluster {cluster}'s subnets {', '.join(fitting)} offer {instance_type}, room for {needed} addresses"


def reservation_fits(ec2, nodegroup: NodegroupSpec, subnet_ids: list[str]) -> tuple[bool, str]:
    """The capacity reservation the accelerator nodes launch into: usable for long enough, of
    their instance type, with room for them, in a zone of the given subnets (``aws.capacity``)."""
    try:
        reservation = capacity.describe_reservation(ec2, nodegroup["capacity_reservation_id"])
    except capacity.CapacityError as exc:
        return False, str(exc)
    zones = sorted({s["AvailabilityZone"] for s in network.subnets(ec2, subnet_ids)}) if subnet_ids else None
    problems = capacity.reservation_problems(reservation, nodegroup, zones, datetime.now(UTC))
    return not problems, "; ".join(problems) or capacity.summary(reservation)


def nodes_source_fits(eks, cluster: str, nodepool: NodePoolSpec, nodegroup: NodegroupSpec) -> tuple[bool, str]:
    """Where the accelerator nodes will come from: a managed node group, or on an EKS Auto Mode
    cluster a NodePool (``kube.nodepool``). A NodePool is named only for an Auto Mode cluster
    (one this project creates is not), and there a capacity reservation is a NodeClass's to select."""
    found = eks_rules.describe_cluster(eks, cluster)
    if not eks_rules.auto_mode(found):
        if nodepool["given"]:
            state = "does not exist yet (one made here is not in Auto Mode)" if found is None else "is not in Auto Mode"
            return False, (f"nodepool: NodePool {nodepool['name']} is named, and EKS cluster {cluster} {state}; leave "
                           "nodepool empty to have a managed node group made")
        return True, f"a managed node group of {nodegroup['instance_type']}"
    if nodegroup["capacity_reservation_id"]:
        return False, ("capacity_reservation_id: on EKS Auto Mode a NodeClass selects capacity reservations "
                       "(capacityReservationSelectorTerms, EKS user guide \"Manage compute for AI/ML workloads\"); "
                       "name a NodePool whose NodeClass selects it in nodepool, and leave capacity_reservation_id empty")
    return True, (f"EKS Auto Mode: NodePool {nodepool['name']} "
                  + ("(given)" if nodepool["given"] else "(made for the deployment)"))


def role_fits(iam, arn: str, kind: str) -> tuple[bool, str]:
    problems = roles.role_problems(iam, arn, kind)
    return not problems, "; ".join(problems) or f"{arn} trusts {roles.ROLES[kind]['service']} with the policies it needs"


def version_supported(eks, version: str) -> tuple[bool, str]:
    found = eks.describe_cluster_versions(clusterVersions=[version])["clusterVersions"]
    return bool(found), f"EKS {'supports' if found else 'does not support'} Kubernetes {version}"


def quota(quotas, nodegroup: NodegroupSpec) -> tuple[bool, str]:
    """The family's on-demand vCPU quota against the node group's nodes. The applied value when
    the account has one, else AWS's default (GetServiceQuota answers NoSuchResourceException for
    a quota never adjusted). Instances already running are not subtracted."""
    instance = default_catalog().instance_type(nodegroup["instance_type"])
    request = api_calls.vcpu_quota_request(instance.name)
    if request is None:
        raise NotImplementedError(f"no vCPU quota known for {instance.name}")
    try:
        quota = quotas.get_service_quota(**request)["Quota"]
    except quotas.exceptions.NoSuchResourceException:
        quota = quotas.get_aws_default_service_quota(**request)["Quota"]
    needed = (instance.vcpus or 0) * nodegroup["scaling"]["desired_size"]
    return quota["Value"] >= needed, f"{quota.get('QuotaName', request['QuotaCode'])}: {quota['Value']:.0f} vCPUs, {needed} needed"


def hf_token_source(aws: AwsSection, hf_token: HfTokenSection) -> tuple[bool, str]:
    """The token can be read before anything is paid for (Llama 4 is gated: no token, no
    weights). Only where it was found is reported, never the value."""
    from botocore.exceptions import ClientError

    try:
        read_hf_token(aws, hf_token)
    except (ValueError, AirflowNotFoundException) as exc:
        return False, f"no token: {exc}"
    except ClientError as exc:
        # Not "unknown": AccessDenied (or a missing key, a failed decryption) means the serving
        # pods would never get the token, so nothing may be created for them.
        code = exc.response["Error"]["Code"]
        if code == "ResourceNotFoundException":
            return False, f"no token: {token_origin(hf_token)} does not exist"
        return False, f"no token: reading {token_origin(hf_token)} failed with {code}"
    return True, f"token found in {token_origin(hf_token)}"

"""The AWS API requests a deployment makes, built from the plan's sections.

One function per request, used both by the dry run (which shows them) and by the steps that
send them, so what a dry run prints is exactly what a real run asks AWS for.
"""

from __future__ import annotations

import re
from typing import Any

from llm_on_eks.naming import DEPLOYMENT_KEY, NAMESPACE_KEY, PROJECT, QUIET_MINUTES_KEY
from llm_on_eks.plan.types import ClusterSection, FsxSection, NodegroupSpec


def _tags(tags: dict[str, str], created: dict[str, str] | None = None) -> dict[str, str]:
    """The plan's owner tags, plus the creating run's (``naming.creation_tags``) on a create."""
    return {**tags, **(created or {})}


def instance_offering_request(instance_type: str) -> dict[str, Any]:
    return {"LocationType": "region", "Filters": [{"Name": "instance-type", "Values": [instance_type]}]}


# On-demand vCPU quotas by instance family (Service Quotas, service code ec2): the codes an
# increase is filed against ("Amazon EC2 instance type quotas" in the EC2 user guide).
VCPU_QUOTA_CODES = {"p": "L-417A185B",    # Running On-Demand P instances
                    "g": "L-DB2E81BA",    # Running On-Demand G and VT instances
                    "trn": "L-2C3B7624",  # Running On-Demand Trn instances
                    "inf": "L-1945791B"}  # Running On-Demand Inf instances


def vcpu_quota_request(instance_type: str) -> dict[str, str] | None:
    """GetServiceQuota's arguments for the instance's family; None for a family not listed."""
    family = re.match(r"[a-z]*", instance_type).group()
    code = VCPU_QUOTA_CODES.get(family) or VCPU_QUOTA_CODES.get(family[:1])
    return {"ServiceCode": "ec2", "QuotaCode": code} if code else None


def capacity_reservation_request(reservation_id: str) -> dict[str, Any]:
    return {"CapacityReservationIds": [reservation_id]}


def preflight_requests(cluster: ClusterSection, nodegroups: list[NodegroupSpec]) -> list[dict[str, Any]]:
    """Checks that must pass before anything is created: offered, supported, within quota, the
    capacity reservation usable. ``nodegroups``: the ones the run may create, the accelerator
    group (whose quota and reservation count) first."""
    instance_type, reservation_id = nodegroups[0]["instance_type"], nodegroups[0]["capacity_reservation_id"]
    checks = [
        {"service": "ec2", "operation": "describe_instance_type_offerings",
         "kwargs": instance_offering_request(instance_type)},
        {"service": "ec2", "operation": "describe_instance_types", "kwargs": {"InstanceTypes": [instance_type]}},
        {"service": "eks", "operation": "describe_cluster_versions",
         "kwargs": {"clusterVersions": [cluster["version"]]}},
        {"service": "service-quotas", "operation": "get_service_quota",
         "kwargs": vcpu_quota_request(instance_type)},
    ]
    if reservation_id:
        checks.append({"service": "ec2", "operation": "describe_capacity_reservations",
                       "kwargs": capacity_reservation_request(reservation_id)})
    return checks + [{"service": "ec2", "operation": "describe_instance_type_offerings",
                      "kwargs": instance_offering_request(group["instance_type"])} for group in nodegroups[1:]]


def create_cluster_request(cluster: ClusterSection, tags: dict[str, str], created: dict[str, str] | None = None, *,
                           role_arn: str | None = None, subnet_ids: list[str] | None = None) -> dict[str, Any]:
    """The role and subnets are the given ones, else the ones provision made (looked up at run time)."""
    vpc_config: dict[str, Any] = {"subnetIds": subnet_ids or cluster["subnet_ids"] or ["<provision.ensure_network's>"],
                                  "endpointPublicAccess": True,
                                  "endpointPrivateAccess": True}
    if cluster["security_group_ids"]:
        vpc_config["securityGroupIds"] = cluster["security_group_ids"]
    return {
        "name": cluster["name"],
        "version": cluster["version"],
        "roleArn": role_arn or cluster["role_arn"] or "<provision.ensure_roles' cluster role>",
        "resourcesVpcConfig": vpc_config,
        "accessConfig": {"authenticationMode": "API_AND_CONFIG_MAP", "bootstrapClusterCreatorAdminPermissions": True},
        "tags": _tags(tags, created) | quiet_tags(cluster),
    }


def quiet_tags(cluster: ClusterSection) -> dict[str, str]:
    """A created cluster's opt-in to its removal once unused (``operators.idle_teardown``)."""
    return {QUIET_MINUTES_KEY: str(cluster["quiet_minutes"])} if cluster["quiet_minutes"] else {}


def create_nodegroup_request(cluster: str, group: NodegroupSpec, subnet_ids: list[str] | None = None,
                             created: dict[str, str] | None = None, node_role: str | None = None,
                             reservation: dict[str, Any] | None = None) -> dict[str, Any]:
    """The accelerator or the system node group; subnets default to the cluster's in zones that
    offer the instance type (with a capacity reservation: in its zone), the role to the one made
    with the cluster, all looked up at run time, as is ``reservation`` (DescribeCapacityReservations'
    answer for the spec's reservation)."""
    # With a launch template the instance type and disk size are the template's: EKS refuses a node
    # group that also names them (EKS user guide, "Customize managed nodes with launch templates").
    machine = ({"launchTemplate": {"name": group["launch_template"]}} if group["capacity_reservation_id"]
               else {"instanceTypes": [group["instance_type"]], "diskSize": group["disk_size_gib"]})
    return {
        "clusterName": cluster,
        "nodegroupName": group["name"],
        "scalingConfig": scaling_config(group),
        "subnets": subnet_ids or group["subnet_ids"] or ["<the cluster's subnets offering the instance type>"],
        **machine,
        "amiType": group["ami_type"],
        "capacityType": capacity_type(group, reservation),
        "nodeRole": node_role or group["node_role_arn"] or "<provision.ensure_roles' node role>",
        "labels": dict(group["labels"]),
        "taints": [dict(t) for t in group["taints"]],
        "tags": _tags(group["tags"], created),
    }


def is_capacity_block(reservation: dict[str, Any]) -> bool:
    """A Capacity Block for ML, not an On-Demand Capacity Reservation (DescribeCapacityReservations'
    ReservationType: "capacity-block" or "default", botocore's EC2 model)."""
    return reservation.get("ReservationType") == "capacity-block"


def capacity_type(group: NodegroupSpec, reservation: dict[str, Any] | None = None) -> str:
    """CAPACITY_BLOCK on a Capacity Block, which EKS requires of its node groups (EKS user guide,
    "Create a managed node group with Capacity Blocks for ML"; botocore's EKS model, CapacityTypes);
    else the spec's. Before the reservation is read (a dry run) both are named."""
    if not group["capacity_reservation_id"]:
        return group["capacity_type"]
    if reservation is None:
        return f"<CAPACITY_BLOCK for a Capacity Block, else {group['capacity_type']}>"
    return "CAPACITY_BLOCK" if is_capacity_block(reservation) else group["capacity_type"]


# The root volume of the EKS-optimized AL2023 AMIs (awslabs/amazon-eks-ami, templates/al2023/template.json).
ROOT_DEVICE = "/dev/xvda"


def launch_template_data(group: NodegroupSpec, reservation: dict[str, Any] | None = None) -> dict[str, Any]:
    """What the nodes of a node group on a capacity reservation launch with. Before the
    reservation is read (a dry run) the Capacity Block's market type is named as a condition."""
    data: dict[str, Any] = {
        # Named here, not in the node group: a Capacity Block's template must carry it (EKS user
        # guide, "Create a managed node group with Capacity Blocks for ML"), and EKS takes it from
        # one place only ("Customize managed nodes with launch templates"), as it does the disk size.
        "InstanceType": group["instance_type"],
        "BlockDeviceMappings": [{"DeviceName": ROOT_DEVICE, "Ebs": {"VolumeSize": group["disk_size_gib"],
                                                                     "VolumeType": "gp3", "DeleteOnTermination": True}}],
        # Pods reach the instance metadata service (IMDSv2: the node role's credentials, which the
        # weight Jobs read S3 with) one hop further than the node; EKS's own template sets 2 (same guide).
        "MetadataOptions": {"HttpTokens": "required", "HttpPutResponseHopLimit": 2},
        "CapacityReservationSpecification": {
            "CapacityReservationTarget": {"CapacityReservationId": group["capacity_reservation_id"]}},
    }
    if reservation is None:
        data["InstanceMarketOptions"] = "<{MarketType: capacity-block} for a Capacity Block, else none>"
    elif is_capacity_block(reservation):
        data["InstanceMarketOptions"] = {"MarketType": "capacity-block"}
    return data


def create_launch_template_request(group: NodegroupSpec, reservation: dict[str, Any] | None = None,
                                   created: dict[str, str] | None = None) -> dict[str, Any]:
    """The node group's launch template, tagged as the node group is."""
    return {"LaunchTemplateName": group["launch_template"],
            "LaunchTemplateData": launch_template_data(group, reservation),
            "TagSpecifications": [{"ResourceType": "launch-template",
                                   "Tags": [{"Key": k, "Value": v} for k, v in _tags(group["tags"], created).items()]}]}


def launch_template_filter(name: str) -> dict[str, Any]:
    """DescribeLaunchTemplates' arguments for one template by name: an empty answer when it is
    missing (naming it in LaunchTemplateNames makes a missing one an error)."""
    return {"Filters": [{"Name": "launch-template-name", "Values": [name]}]}


def scaling_config(group: NodegroupSpec) -> dict[str, int]:
    scaling = group["scaling"]
    return {"minSize": scaling["min_size"], "maxSize": scaling["max_size"], "desiredSize": scaling["desired_size"]}


def create_addon_request(cluster_name: str, addon: str, tags: dict[str, str],
                         created: dict[str, str] | None = None) -> dict[str, Any]:
    """EKS picks the add-on version that matches the cluster; PRESERVE keeps settings someone
    changed on a self-managed copy instead of overwriting them."""
    return {"clusterName": cluster_name, "addonName": addon, "resolveConflicts": "PRESERVE",
            "tags": _tags(tags, created)}


def create_bucket_request(bucket: str, region: str) -> dict[str, Any]:
    request: dict[str, Any] = {"Bucket": bucket}
    if region != "us-east-1":
        request["CreateBucketConfiguration"] = {"LocationConstraint": region}
    return request


def bucket_tagging_request(bucket: str, tags: dict[str, str], created: dict[str, str] | None = None) -> dict[str, Any]:
    return {"Bucket": bucket, "Tagging": {"TagSet": [{"Key": k, "Value": v} for k, v in _tags(tags, created).items()]}}


def fsx_tags(fsx: FsxSection, tags: dict[str, str], created: dict[str, str] | None = None) -> list[dict[str, str]]:
    """FSx is shared by a cluster's deployments: tagged with the cluster, not one deployment."""
    shared = {k: v for k, v in _tags(tags, created).items() if k not in (DEPLOYMENT_KEY, NAMESPACE_KEY)}
    return [{"Key": "Name", "Value": fsx["name"]}, *({"Key": k, "Value": v} for k, v in shared.items())]


def create_file_system_request(fsx: FsxSection, tags: dict[str, str], subnet_id: str | None = None,
                               security_group_ids: list[str] | None = None, token: str | None = None,
                               created: dict[str, str] | None = None) -> dict[str, Any]:
    """``token`` makes a resent request idempotent. A fixed one would also be reused after a
    teardown, and FSx could answer with the deleted file system, so the step passes one per try.
    Subnet and security groups default to the cluster's, looked up at run time."""
    security_group_ids = fsx["security_group_ids"] or security_group_ids
    request: dict[str, Any] = {
        "ClientRequestToken": (token or f"{PROJECT}-{fsx['name']}")[:63],
        "FileSystemType": "LUSTRE",
        "StorageCapacity": fsx["storage_capacity_gib"],
        "StorageType": "SSD",
        "SubnetIds": [subnet_id or fsx["subnet_id"] or "<the cluster's first subnet>"],
        "LustreConfiguration": {
            "DeploymentType": fsx["deployment_type"],
            "PerUnitStorageThroughput": fsx["throughput_per_tib"],
            "DataCompressionType": "LZ4",
        },
        "Tags": fsx_tags(fsx, tags, created),
    }
    if security_group_ids:
        request["SecurityGroupIds"] = list(security_group_ids)
    return request


def create_data_repository_association_request(fsx: FsxSection, file_system_id: str, token: str | None = None,
                                                tags: dict[str, str] | None = None) -> dict[str, Any]:
    """Links the file system to the S3 prefix both ways: staged weights and markers show in S3.
    ``tags``: the plan's owner tags, of which the association carries the cluster's."""
    request: dict[str, Any] = {"ClientRequestToken": token[:63]} if token else {}
    return {
        **request,
        "FileSystemId": file_system_id,
        "FileSystemPath": fsx["file_system_path"],
        "DataRepositoryPath": fsx["data_repository_path"],
        "BatchImportMetaDataOnCreate": True,
        "S3": {
            "AutoImportPolicy": {"Events": ["NEW", "CHANGED", "DELETED"]},
            "AutoExportPolicy": {"Events": ["NEW", "CHANGED", "DELETED"]},
        },
        "Tags": fsx_tags(fsx, tags or {}),
    }


# Prefixes the later steps write under: the Neuron compile cache (the neuron section) and the
# weights FSx imports from and exports staged-weight markers to (the storage section's fsx).
ARTIFACT_PREFIXES = ("neuron-cache/", "models/")


def artifact_prefix_requests(bucket: str) -> list[dict[str, Any]]:
    """An empty object per prefix, so the prefixes show (and FSx has something to link to)."""
    return [{"Bucket": bucket, "Key": prefix} for prefix in ARTIFACT_PREFIXES]

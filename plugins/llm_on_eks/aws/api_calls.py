"""The AWS API requests a deployment makes, built from the plan.

One function per request, used both by the dry run (which shows them) and by the steps that
send them, so what a dry run prints is exactly what a real run asks AWS for.
"""

from __future__ import annotations

from typing import Any

from llm_on_eks.naming import CLUSTER_KEY, LABEL_PREFIX, MANAGED_BY_KEY, PROJECT

# The cluster's system node group: untainted nodes for what tolerates no accelerator taint
# (coredns, the FSx weight-staging Job at 4 CPU / 16 GiB, controllers). One per cluster we create,
# shared by its deployments: tagged with the cluster and a role, never with one deployment.
ROLE_KEY = f"{LABEL_PREFIX}/role"
SYSTEM_ROLE = "system"
SYSTEM_INSTANCE_TYPE = "m6i.xlarge"  # 4 vCPU, 16 GiB
# On-demand list prices in us-east-1, for estimates only. A deployment's cost is its accelerator
# nodes; a cluster we create adds its control plane and system nodes, shared by its deployments.
SYSTEM_HOURLY_USD = 0.192
SYSTEM_SCALING = {"min_size": 1, "max_size": 3, "desired_size": 2}
EKS_CONTROL_PLANE_HOURLY_USD = 0.10
CLUSTER_HOURLY_USD = round(EKS_CONTROL_PLANE_HOURLY_USD + SYSTEM_HOURLY_USD * SYSTEM_SCALING["desired_size"], 3)


def _tags(plan: dict[str, Any]) -> dict[str, str]:
    return dict(plan["tags"])


def system_nodegroup_name(cluster: str) -> str:
    return f"{cluster[:56]}-system"  # node group names are at most 63 characters


def system_plan(plan: dict[str, Any]) -> dict[str, Any]:
    """The plan as the system node group's steps see it: the node group and tags are the
    cluster's, so the accelerator node group's ensure and delete code serves both."""
    cluster = plan["cluster"]["name"]
    nodegroup = {
        "name": system_nodegroup_name(cluster),
        "role": SYSTEM_ROLE,
        "instance_type": SYSTEM_INSTANCE_TYPE,
        "ami_type": "AL2023_x86_64_STANDARD",
        "capacity_type": "ON_DEMAND",
        "disk_size_gib": 50,
        "scaling": dict(SYSTEM_SCALING),
        "labels": {ROLE_KEY: SYSTEM_ROLE},
        "taints": [],
        "node_role_arn": plan["nodegroup"]["node_role_arn"],
        "subnet_ids": list(plan["nodegroup"]["subnet_ids"]),
        "hourly_usd_estimate": round(SYSTEM_HOURLY_USD * SYSTEM_SCALING["desired_size"], 3),
    }
    tags = {MANAGED_BY_KEY: PROJECT, CLUSTER_KEY: cluster, ROLE_KEY: SYSTEM_ROLE}
    return {**plan, "nodegroup": nodegroup, "tags": tags}


def preflight_requests(plan: dict[str, Any]) -> list[dict[str, Any]]:
    """Checks that must pass before anything is created: offered, supported, within quota."""
    instance_type = plan["nodegroup"]["instance_type"]
    return [
        {"service": "ec2", "operation": "describe_instance_type_offerings",
         "kwargs": {"LocationType": "region", "Filters": [{"Name": "instance-type", "Values": [instance_type]}]}},
        {"service": "ec2", "operation": "describe_instance_types", "kwargs": {"InstanceTypes": [instance_type]}},
        {"service": "eks", "operation": "describe_cluster_versions",
         "kwargs": {"clusterVersions": [plan["cluster"]["version"]]}},
        {"service": "service-quotas", "operation": "list_service_quotas", "kwargs": {"ServiceCode": "ec2"}},
    ]


def create_cluster_request(plan: dict[str, Any]) -> dict[str, Any]:
    cluster = plan["cluster"]
    vpc_config: dict[str, Any] = {"subnetIds": cluster["subnet_ids"], "endpointPublicAccess": True,
                                  "endpointPrivateAccess": True}
    if cluster["security_group_ids"]:
        vpc_config["securityGroupIds"] = cluster["security_group_ids"]
    return {
        "name": cluster["name"],
        "version": cluster["version"],
        "roleArn": cluster["role_arn"],
        "resourcesVpcConfig": vpc_config,
        "accessConfig": {"authenticationMode": "API_AND_CONFIG_MAP", "bootstrapClusterCreatorAdminPermissions": True},
        "tags": _tags(plan),
    }


def create_nodegroup_request(plan: dict[str, Any], subnet_ids: list[str] | None = None) -> dict[str, Any]:
    """The accelerator node group (or, given ``system_plan(plan)``, the system node group);
    subnets default to the cluster's, looked up at run time."""
    group = plan["nodegroup"]
    return {
        "clusterName": plan["cluster"]["name"],
        "nodegroupName": group["name"],
        "scalingConfig": {"minSize": group["scaling"]["min_size"], "maxSize": group["scaling"]["max_size"],
                          "desiredSize": group["scaling"]["desired_size"]},
        "subnets": subnet_ids or group["subnet_ids"] or ["<the cluster's subnets>"],
        "instanceTypes": [group["instance_type"]],
        "amiType": group["ami_type"],
        "capacityType": group["capacity_type"],
        "diskSize": group["disk_size_gib"],
        "nodeRole": group["node_role_arn"],
        "labels": dict(group["labels"]),
        "taints": [dict(t) for t in group["taints"]],
        "tags": _tags(plan),
    }


def create_addon_request(plan: dict[str, Any], addon: str) -> dict[str, Any]:
    """EKS picks the add-on version that matches the cluster; PRESERVE keeps settings someone
    changed on a self-managed copy instead of overwriting them."""
    return {"clusterName": plan["cluster"]["name"], "addonName": addon, "resolveConflicts": "PRESERVE",
            "tags": _tags(plan)}


def create_bucket_request(plan: dict[str, Any]) -> dict[str, Any]:
    request: dict[str, Any] = {"Bucket": plan["storage"]["artifact_bucket"]}
    if plan["aws"]["region"] != "us-east-1":
        request["CreateBucketConfiguration"] = {"LocationConstraint": plan["aws"]["region"]}
    return request


def bucket_tagging_request(plan: dict[str, Any]) -> dict[str, Any]:
    return {"Bucket": plan["storage"]["artifact_bucket"],
            "Tagging": {"TagSet": [{"Key": k, "Value": v} for k, v in _tags(plan).items()]}}


def fsx_tags(plan: dict[str, Any]) -> list[dict[str, str]]:
    """FSx is shared by a cluster's deployments: tagged with the cluster, not one deployment."""
    fsx = plan["storage"]["fsx"]
    tags = {k: v for k, v in _tags(plan).items() if not k.endswith("/deployment")}
    return [{"Key": "Name", "Value": fsx["name"]}, *({"Key": k, "Value": v} for k, v in tags.items())]


def create_file_system_request(plan: dict[str, Any], subnet_id: str | None = None,
                               security_group_ids: list[str] | None = None, token: str | None = None) -> dict[str, Any]:
    """``token`` makes a resent request idempotent. A fixed one would also be reused after a
    teardown, and FSx could answer with the deleted file system, so the step passes one per try.
    Subnet and security groups default to the cluster's, looked up at run time."""
    fsx = plan["storage"]["fsx"]
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
        "Tags": fsx_tags(plan),
    }
    if security_group_ids:
        request["SecurityGroupIds"] = list(security_group_ids)
    return request


def create_data_repository_association_request(plan: dict[str, Any], file_system_id: str,
                                                token: str | None = None) -> dict[str, Any]:
    """Links the file system to the S3 prefix both ways: staged weights and markers show in S3."""
    fsx = plan["storage"]["fsx"]
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
        "Tags": fsx_tags(plan),
    }


# Prefixes the later steps write under: the Neuron compile cache (plan["neuron"]) and the
# weights FSx imports from and exports staged-weight markers to (plan["storage"]["fsx"]).
ARTIFACT_PREFIXES = ("neuron-cache/", "models/")


def artifact_prefix_requests(plan: dict[str, Any]) -> list[dict[str, Any]]:
    """An empty object per prefix, so the prefixes show (and FSx has something to link to)."""
    return [{"Bucket": plan["storage"]["artifact_bucket"], "Key": prefix} for prefix in ARTIFACT_PREFIXES]

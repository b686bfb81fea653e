"""The local AWS a running Airflow uses (local_stack/aws.py): the moto server with the gap filler's
answers served over HTTP, so clients in any process (a task, the triggerer) see what the tests'
in-process filler gives, and what is created stays CREATING for a settling time (a short one here);
held as the benchmarks hold it, a deleted node group stays DELETING. Started as the demo starts
it, stopped by PID."""

from __future__ import annotations

import subprocess
import sys

import boto3
import pytest
from botocore.exceptions import ClientError

from local_stack.stack import ROOT, free_port, http_ok, stop_pid, wait_until

SUBNET = "subnet-0a1b2c3d4e5f60001"
SETTLE_S = 2.0


@pytest.fixture(scope="module")
def local_aws():
    port = free_port(5056)
    process = subprocess.Popen([sys.executable, "-m", "local_stack.aws", "--port", str(port),
                                "--settle-s", str(SETTLE_S), f"--hold=nodegroup_delete={SETTLE_S}"], cwd=ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: http_ok(f"{url}/moto-api/"), 60, "local AWS", process.pid)
        yield url
    finally:
        stop_pid(process.pid)
        process.wait(timeout=10)


def _client(url: str, service: str, region: str = "us-west-2"):
    return boto3.session.Session().client(service, endpoint_url=url, region_name=region,
                                          aws_access_key_id="testing", aws_secret_access_key="testing")


def test_eks_first_looks_say_creating_and_addons_are_answered(local_aws):
    eks = _client(local_aws, "eks")
    created = eks.create_cluster(name="c1", roleArn="arn:aws:iam::123456789012:role/eks",
                                 resourcesVpcConfig={"subnetIds": [SUBNET]})
    assert created["cluster"]["status"] == "CREATING"
    assert eks.describe_cluster(name="c1")["cluster"]["status"] == "CREATING"
    wait_until(lambda: eks.describe_cluster(name="c1")["cluster"]["status"] == "ACTIVE", 10 * SETTLE_S, "cluster ACTIVE")

    addon = eks.create_addon(clusterName="c1", addonName="vpc-cni", tags={"owner": "test"})["addon"]
    assert (addon["status"], addon["tags"]) == ("CREATING", {"owner": "test"})
    assert eks.describe_addon(clusterName="c1", addonName="vpc-cni")["addon"]["status"] == "CREATING"
    wait_until(lambda: eks.describe_addon(clusterName="c1", addonName="vpc-cni")["addon"]["status"] == "ACTIVE",
               10 * SETTLE_S, "add-on ACTIVE")
    assert eks.list_addons(clusterName="c1")["addons"] == ["vpc-cni"]
    with pytest.raises(eks.exceptions.ResourceNotFoundException):
        eks.describe_addon(clusterName="c1", addonName="coredns")
    with pytest.raises(eks.exceptions.ResourceInUseException):
        eks.create_addon(clusterName="c1", addonName="vpc-cni")
    assert eks.delete_addon(clusterName="c1", addonName="vpc-cni")["addon"]["status"] == "DELETING"
    assert eks.list_addons(clusterName="c1")["addons"] == []


def test_a_namesake_in_another_region_leaves_an_active_cluster_active(local_aws):
    """EKS names are regional: the demo makes llm-demo in us-west-2 and in us-east-2."""
    west, east = _client(local_aws, "eks"), _client(local_aws, "eks", "us-east-2")
    config = {"name": "c3", "roleArn": "arn:aws:iam::123456789012:role/eks", "resourcesVpcConfig": {"subnetIds": [SUBNET]}}
    west.create_cluster(**config)
    wait_until(lambda: west.describe_cluster(name="c3")["cluster"]["status"] == "ACTIVE", 10 * SETTLE_S, "cluster ACTIVE")
    assert east.create_cluster(**config)["cluster"]["status"] == "CREATING"
    assert west.describe_cluster(name="c3")["cluster"]["status"] == "ACTIVE"
    assert east.describe_cluster(name="c3")["cluster"]["status"] == "CREATING"


def test_a_held_node_group_delete_says_deleting_then_it_is_gone(local_aws):
    """benchmarks/kill_steps.py's teardown wait: DELETING (a second delete changes nothing, the
    cluster cannot go yet) until the hold has passed, then gone."""
    eks = _client(local_aws, "eks")
    eks.create_cluster(name="c2", roleArn="arn:aws:iam::123456789012:role/eks", resourcesVpcConfig={"subnetIds": [SUBNET]})
    eks.create_nodegroup(clusterName="c2", nodegroupName="n1", nodeRole="arn:aws:iam::123456789012:role/node",
                         subnets=[SUBNET])
    assert eks.delete_nodegroup(clusterName="c2", nodegroupName="n1")["nodegroup"]["status"] == "DELETING"
    assert eks.delete_nodegroup(clusterName="c2", nodegroupName="n1")["nodegroup"]["status"] == "DELETING"
    assert eks.list_nodegroups(clusterName="c2")["nodegroups"] == ["n1"]
    with pytest.raises(eks.exceptions.ResourceInUseException):
        eks.delete_cluster(name="c2")
    wait_until(lambda: eks.list_nodegroups(clusterName="c2")["nodegroups"] == [], 10 * SETTLE_S, "node group gone")
    with pytest.raises(eks.exceptions.ResourceNotFoundException):
        eks.describe_nodegroup(clusterName="c2", nodegroupName="n1")
    assert eks.delete_cluster(name="c2")["cluster"]["name"] == "c2"


def test_fsx_lifecycle_mount_name_and_associations_are_answered(local_aws):
    fsx = _client(local_aws, "fsx")
    fs = fsx.create_file_system(FileSystemType="LUSTRE", StorageCapacity=1200, SubnetIds=[SUBNET])["FileSystem"]
    assert fs["Lifecycle"] == "CREATING" and fs["LustreConfiguration"]["MountName"]
    fs_id = fs["FileSystemId"]
    def lifecycle():
        return fsx.describe_file_systems(FileSystemIds=[fs_id])["FileSystems"][0]["Lifecycle"]

    assert lifecycle() == "CREATING"
    wait_until(lambda: lifecycle() == "AVAILABLE", 10 * SETTLE_S, "file system AVAILABLE")

    association = fsx.create_data_repository_association(
        FileSystemId=fs_id, FileSystemPath="/models", DataRepositoryPath="s3://bucket/models",
        Tags=[{"Key": "owner", "Value": "test"}])["Association"]
    assert association["Lifecycle"] == "CREATING"
    with pytest.raises(ClientError, match="already linked"):
        fsx.create_data_repository_association(FileSystemId=fs_id, FileSystemPath="/models",
                                               DataRepositoryPath="s3://bucket/models")
    found = fsx.describe_data_repository_associations(Filters=[{"Name": "file-system-id", "Values": [fs_id]}])
    assert [a["AssociationId"] for a in found["Associations"]] == [association["AssociationId"]]
    with pytest.raises(ClientError) as missing:
        fsx.delete_data_repository_association(AssociationId="dra-0123456789abcdef0")
    assert missing.value.response["Error"]["Code"] == "DataRepositoryAssociationNotFound"


def test_ec2_vcpu_quotas_are_answered(local_aws):
    quotas = _client(local_aws, "service-quotas")
    quota = quotas.get_service_quota(ServiceCode="ec2", QuotaCode="L-417A185B")["Quota"]
    assert (quota["QuotaName"], quota["Value"]) == ("Running On-Demand P instances", 384.0)
    assert quotas.get_aws_default_service_quota(ServiceCode="ec2", QuotaCode="L-2C3B7624")["Quota"]["Value"] == 384.0
    with pytest.raises(quotas.exceptions.NoSuchResourceException):
        quotas.get_service_quota(ServiceCode="ec2", QuotaCode="L-00000000")


def test_a_hold_keeps_one_kind_creating_and_an_unknown_kind_is_refused():
    """The critical-path benchmark's delaying layer (benchmarks/critical_path.py): a held kind stays
    CREATING past its first look, the others settle as before; a misspelt kind is named."""
    from local_stack.aws_gaps import AwsGaps

    gaps = AwsGaps(settle_s=0.0, holds={"cluster": 600.0})
    for key in (("cluster", "c1"), ("nodegroup", "c1", "n1")):
        gaps._started_creating(key)
    assert [gaps._still_creating(("cluster", "c1")) for _ in range(2)] == [True, True]
    assert [gaps._still_creating(("nodegroup", "c1", "n1")) for _ in range(2)] == [True, False]
    with pytest.raises(ValueError, match=r"unknown kind\(s\) \['clusters'\]"):
        AwsGaps(holds={"clusters": 1.0})

"""The provision and storage groups through dag.test() against the moto server: GPU (p5 + FSx)
and Trainium2 (trn2, no FSx), waiting in the worker and deferred; a second run adopts everything
and creates nothing. A created cluster gets one untainted system node group beside the tainted
accelerator one."""

from __future__ import annotations

import pytest

from llm_on_eks.naming import CLUSTER_KEY, CREATED_AT_KEY, CREATED_BY_RUN_KEY, DEPLOYMENT_KEY, MANAGED_BY_KEY
from tests.aws.conftest import CREATE, client
from tests.dag_runs import load_dag, run_dag

# Regions where moto's offering data (like AWS's) has the instance type: p5.48xlarge in
# us-west-2, trn2.48xlarge in us-east-2 (Ohio, where Trn2 launched).
SYSTEM = "llm-inference-system"
ROLE_KEY = "llm-on-eks.io/role"

PLANS = {
    "gpu": {"model": "llama4-scout", "accelerator": "gpu", "region": "us-west-2"},
    "trn2": {"model": "llama4-scout", "accelerator": "neuron", "region": "us-east-2"},
}


def load(dag_id: str):
    return load_dag("tests/dags/aws_steps/aws_steps.py", dag_id)


def inventory(moto_url: str, region: str, cluster: str = "llm-inference") -> dict:
    """What moto holds: clusters, the cluster's node groups, file systems, buckets."""
    eks = client(moto_url, "eks", region)
    clusters = eks.list_clusters()["clusters"]
    return {
        "clusters": clusters,
        "nodegroups": sorted(eks.list_nodegroups(clusterName=cluster)["nodegroups"]) if cluster in clusters else [],
        "file_systems": [fs["FileSystemId"] for fs in client(moto_url, "fsx", region).describe_file_systems()["FileSystems"]],
        "buckets": [b["Name"] for b in client(moto_url, "s3", region).list_buckets()["Buckets"]],
    }


# Each accelerator once, each way of waiting once (tests/e2e runs both in the worker, and
# tests/ui/test_parallel_deploys.py both deferred to a real triggerer).
@pytest.mark.parametrize(("accelerator", "deferrable"), [("gpu", True), ("trn2", False)],
                         ids=["gpu-deferred", "trn2-in_worker"])
def test_provision_twice_makes_one_of_each(aws_env, gaps, accelerator, deferrable):
    conf = {**PLANS[accelerator], **CREATE}
    region = conf["region"]
    dag = load("aws_provision" + ("_deferrable" if deferrable else ""))

    first = run_dag(dag, conf)
    assert first.failed() == [], first.states
    assert first.xcoms["provision.ensure_cluster"]["action"] == "created"
    assert first.xcoms["provision.ensure_nodegroup"]["action"] == "created"
    assert first.xcoms["provision.ensure_system_nodegroup"]["action"] == "created"
    expected_addons = ({"vpc-cni", "coredns", "kube-proxy", "aws-fsx-csi-driver"} if accelerator == "gpu"
                       else {"vpc-cni", "coredns", "kube-proxy"})
    assert set(first.xcoms["provision.ensure_addons"]["addons"]) == expected_addons
    assert first.xcoms["storage.ensure_artifact_bucket"]["action"] == "created"
    # The waits polled: each resource was reported CREATING once, then ACTIVE/AVAILABLE.
    assert gaps.calls["eks.DescribeCluster"] >= 2 and gaps.calls["eks.DescribeNodegroup"] >= 2

    second = run_dag(dag, conf)
    assert second.failed() == [], second.states
    assert second.xcoms["provision.ensure_cluster"]["action"] == "adopted"
    assert second.xcoms["provision.ensure_nodegroup"]["action"] == "adopted"
    assert second.xcoms["provision.ensure_system_nodegroup"]["action"] == "adopted"
    assert set(second.xcoms["provision.ensure_addons"]["addons"].values()) == {"adopted"}
    assert second.xcoms["storage.ensure_artifact_bucket"]["action"] == "adopted"
    # One accelerator node group and one system node group, each created once.
    assert gaps.calls["eks.CreateCluster"] == 1 and gaps.calls["eks.CreateNodegroup"] == 2
    assert gaps.calls["eks.CreateAddon"] == len(expected_addons)

    held = inventory(aws_env, region)
    assert held["clusters"] == ["llm-inference"]
    assert held["nodegroups"] == [SYSTEM, f"llm-serving_llama4-scout-{conf['accelerator']}-nodes"]
    assert held["buckets"] == [f"llm-on-eks-llm-inference-{region}"]
    eks = client(aws_env, "eks", region)
    group = eks.describe_nodegroup(clusterName="llm-inference", nodegroupName=held["nodegroups"][1])["nodegroup"]
    assert group["tags"][MANAGED_BY_KEY] == "llm-on-eks" and group["tags"][DEPLOYMENT_KEY] == f"llama4-scout-{conf['accelerator']}"
    system = eks.describe_nodegroup(clusterName="llm-inference", nodegroupName=SYSTEM)["nodegroup"]
    assert_system_nodegroup(system)
    keys = {o["Key"] for o in client(aws_env, "s3", region).list_objects_v2(Bucket=held["buckets"][0])["Contents"]}
    assert keys == {"neuron-cache/", "models/"}

    if accelerator == "gpu":
        assert group["instanceTypes"] == ["p5.48xlarge"] and group["amiType"] == "AL2023_x86_64_NVIDIA"
        assert group["taints"] == [{"key": "nvidia.com/gpu", "value": "true", "effect": "NO_SCHEDULE"}]
        assert len(held["file_systems"]) == 1
        handles = second.xcoms["storage.ensure_fsx"]
        assert first.xcoms["storage.ensure_fsx"]["action"] == "created" and handles["action"] == "adopted"
        assert handles["file_system_id"] == held["file_systems"][0]
        assert handles["dns_name"] == f"{handles['file_system_id']}.fsx.{region}.amazonaws.com"
        assert len(handles["mount_name"]) == 8
        fs = client(aws_env, "fsx", region).describe_file_systems()["FileSystems"][0]
        assert fs["LustreConfiguration"]["DeploymentType"] == "PERSISTENT_2" and fs["StorageCapacity"] == 2400
        associations = client(aws_env, "fsx", region).describe_data_repository_associations()["Associations"]
        assert [(a["FileSystemId"], a["FileSystemPath"], a["DataRepositoryPath"]) for a in associations] == [
            (handles["file_system_id"], "/models", f"s3://llm-on-eks-llm-inference-{region}/models/")]
        assert gaps.calls["fsx.CreateFileSystem"] == 1 and gaps.calls["fsx.CreateDataRepositoryAssociation"] == 1
    else:
        assert group["instanceTypes"] == ["trn2.48xlarge"] and group["amiType"] == "AL2023_x86_64_NEURON"
        assert group["taints"] == [{"key": "aws.amazon.com/neuron", "value": "true", "effect": "NO_SCHEDULE"}]
        assert held["file_systems"] == []
        assert first.xcoms["storage.ensure_fsx"]["fsx"] is None and gaps.calls["fsx.CreateFileSystem"] == 0


def assert_system_nodegroup(group: dict, cluster: str = "llm-inference") -> None:
    """Small, general purpose, untainted, labelled; the cluster's (no deployment's tag)."""
    assert group["instanceTypes"] == ["m6i.xlarge"] and group["amiType"] == "AL2023_x86_64_STANDARD"
    assert group["scalingConfig"] == {"minSize": 1, "maxSize": 3, "desiredSize": 2}
    assert not group.get("taints")
    assert group["labels"] == {ROLE_KEY: "system"}
    # The cluster's owner tags, and the run that created it (never a deployment's).
    owner = {k: v for k, v in group["tags"].items() if k not in (CREATED_BY_RUN_KEY, CREATED_AT_KEY)}
    assert owner == {MANAGED_BY_KEY: "llm-on-eks", CLUSTER_KEY: cluster, ROLE_KEY: "system"}
    assert group["tags"][CREATED_BY_RUN_KEY].startswith("manual__") and CREATED_AT_KEY in group["tags"]

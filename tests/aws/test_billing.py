"""What still bills on a cluster after a teardown (``llm_on_eks.aws.billing``), read from the moto
server: a cluster of ours with its system node group, a deployment's node group and the FSx file
system it used; then the deployment gone, and everything left used by no deployment."""

from __future__ import annotations

import pytest

from llm_on_eks import naming
from llm_on_eks.aws.fsx_rules import used_by_key
from llm_on_eks.operators.billing import billing_report
from tests.aws.conftest import NODE_ROLE, ROLE, client, foreign_network

REGION, CLUSTER = "us-west-2", "llm-inference"
AWS = {"conn_id": "aws_default", "region": REGION}


def _prices(report):
    return {(i["kind"], i["what"]): (i["hourly_usd"], i["used_by"]) for i in report["items"]}


def test_what_still_bills_and_what_no_deployment_uses(aws_env, gaps):
    eks, fsx = client(aws_env, "eks", REGION), client(aws_env, "fsx", REGION)
    subnets = foreign_network(aws_env, REGION)
    eks.create_cluster(name=CLUSTER, version="1.33", roleArn=ROLE, resourcesVpcConfig={"subnetIds": subnets},
                       tags=naming.cluster_tags(CLUSTER, REGION))
    groups = {naming.system_nodegroup_name(CLUSTER, REGION): ("m6i.xlarge", 2, naming.system_tags(CLUSTER)),
              "team-a_scout-nodes": ("p5.48xlarge", 1, naming.aws_tags("scout", CLUSTER, "team-a", REGION))}
    for name, (instance, size, tags) in groups.items():
        eks.create_nodegroup(clusterName=CLUSTER, nodegroupName=name, instanceTypes=[instance], subnets=subnets,
                             nodeRole=NODE_ROLE, tags=tags,
                             scalingConfig={"minSize": size, "maxSize": size, "desiredSize": size})
    fs_tags = {"Name": naming.fsx_name(CLUSTER), **naming.cluster_tags(CLUSTER, REGION), used_by_key("team-a/scout"): "1"}
    file_system = fsx.create_file_system(
        FileSystemType="LUSTRE", StorageCapacity=2400, SubnetIds=subnets[:1],
        LustreConfiguration={"DeploymentType": "PERSISTENT_2", "PerUnitStorageThroughput": 500},
        Tags=[{"Key": k, "Value": v} for k, v in fs_tags.items()])["FileSystem"]

    serving = billing_report(AWS, CLUSTER)
    assert _prices(serving) == {
        ("EKS control plane", "ours"): (0.10, ["team-a/scout"]),
        ("node group", "2 x m6i.xlarge"): (0.384, ["team-a/scout"]),
        ("node group", "1 x p5.48xlarge"): (55.04, ["team-a/scout"]),
        # 2400 GiB at $0.340 per GB-month (PERSISTENT_2, 500 MB/s/TiB), 730 hours a month.
        ("FSx file system", "2400 GiB at 500 MB/s/TiB"): (1.118, ["team-a/scout"])}
    assert serving["unused_hourly_usd"] == 0 and serving["hourly_usd"] == pytest.approx(56.64, abs=0.01)

    # The deployment's teardown: its node group and its used-by tag go; the shared things stay.
    eks.delete_nodegroup(clusterName=CLUSTER, nodegroupName="team-a_scout-nodes")
    fsx.untag_resource(ResourceARN=file_system["ResourceARN"], TagKeys=[used_by_key("team-a/scout")])
    left = billing_report(AWS, CLUSTER)
    assert {i["kind"] for i in left["items"]} == {"EKS control plane", "node group", "FSx file system"}
    assert all(i["used_by"] == [] for i in left["items"])
    assert left["unused_hourly_usd"] == left["hourly_usd"] == pytest.approx(1.60, abs=0.01)
    assert left["summary"].startswith(f"{CLUSTER}: $1.60/hour still billing, $1.60/hour of it used by no deployment")

    eks.delete_nodegroup(clusterName=CLUSTER, nodegroupName=naming.system_nodegroup_name(CLUSTER, REGION))
    eks.delete_cluster(name=CLUSTER)
    assert billing_report(AWS, CLUSTER)["items"] == []

"""Re-running after failures injected mid-way ends with exactly one of each resource, and a
teardown recognises and removes what a run made without hearing back; an existing cluster is
reused without create permission; an incompatible node group is refused, not duplicated. All
through dag.test() against the moto server."""

from __future__ import annotations

from botocore.exceptions import EndpointConnectionError

from llm_on_eks.naming import CREATED_BY_RUN_KEY
from tests.aws.conftest import CREATE, NODE_ROLE, ROLE, client, foreign_network
from tests.aws.test_provision import PLANS, SYSTEM, inventory, load
from tests.dag_runs import run_dag


def lost(operation: str) -> EndpointConnectionError:
    return EndpointConnectionError(endpoint_url=f"https://{operation}.example (response lost, injected by the test)")


def test_rerun_after_failures_mid_way_leaves_one_of_each(aws_env, gaps):
    # Deferred: a retry after a deferral is the harder case (the resume protocol, llm_on_eks.operators.base);
    # what a run adopts is the same in the worker.
    conf = {**PLANS["gpu"], **CREATE}
    region, dag = conf["region"], load("aws_provision_deferrable")

    # Run 1: the node group and the file system are created, but the answers never arrive (as
    # when the worker dies right after the call): the tags sent with the create say who made them.
    gaps.lose_response("eks.CreateNodegroup", lost("CreateNodegroup"), nodegroupName="llm-serving_llama4-scout-gpu-nodes")
    gaps.lose_response("fsx.CreateFileSystem", lost("CreateFileSystem"))
    first = run_dag(dag, conf)
    eks = client(aws_env, "eks", region)
    group = eks.describe_nodegroup(clusterName="llm-inference", nodegroupName="llm-serving_llama4-scout-gpu-nodes")["nodegroup"]
    assert group["tags"][CREATED_BY_RUN_KEY] == first.run_id
    assert first.states["provision.ensure_cluster"] == "success"
    assert first.states["provision.ensure_nodegroup"] == "failed"
    # The add-ons wait for the system node group only, so the accelerator's failure spares them.
    assert first.states["provision.ensure_addons"] == "success"
    assert first.states["storage.ensure_fsx"] == "failed"
    held = inventory(aws_env, region)
    assert held["nodegroups"] == [SYSTEM, "llm-serving_llama4-scout-gpu-nodes"] and len(held["file_systems"]) == 1

    # Run 2: linking FSx to S3 is refused once (after the file system was adopted).
    gaps.fail("fsx.CreateDataRepositoryAssociation", "ServiceLimitExceeded")
    second = run_dag(dag, conf)
    assert second.states["provision.ensure_nodegroup"] == "success"
    assert second.xcoms["provision.ensure_nodegroup"]["action"] == "adopted"
    assert second.states["provision.ensure_addons"] == "success"
    assert second.states["storage.ensure_fsx"] == "failed"

    # Run 3: everything adopted, the association made; still one of each.
    third = run_dag(dag, conf)
    assert third.failed() == [], third.states
    assert third.xcoms["storage.ensure_fsx"]["action"] == "adopted"
    held = inventory(aws_env, region)
    assert held == {"clusters": ["llm-inference"], "nodegroups": [SYSTEM, "llm-serving_llama4-scout-gpu-nodes"],
                    "file_systems": held["file_systems"][:1], "buckets": ["llm-on-eks-llm-inference-us-west-2"]}
    associations = client(aws_env, "fsx", region).describe_data_repository_associations()["Associations"]
    assert len(associations) == 1 and associations[0]["FileSystemId"] == held["file_systems"][0]
    assert gaps.calls["eks.CreateCluster"] == 1 and gaps.calls["eks.CreateNodegroup"] == 2
    assert gaps.calls["fsx.CreateFileSystem"] == 1 and gaps.calls["fsx.CreateDataRepositoryAssociation"] == 2

    # The teardown recognises the node group nobody heard created, by its tags, and removes it.
    down = run_dag(load("aws_teardown_deferrable"), {**conf, "delete_fsx": True})
    assert down.failed() == [], down.states
    assert down.xcoms["teardown_aws.delete_nodegroup"]["action"] == "deleted"
    assert down.xcoms["teardown_aws.delete_fsx"]["action"] == "deleted"
    held = inventory(aws_env, region)
    assert (held["nodegroups"], held["file_systems"]) == ([SYSTEM], [])


def test_existing_cluster_is_reused_without_create_permission(aws_env, gaps):
    region = PLANS["trn2"]["region"]
    subnets = foreign_network(aws_env, region)
    client(aws_env, "eks", region).create_cluster(name="team-cluster", version="1.32", roleArn=ROLE,
                                                  resourcesVpcConfig={"subnetIds": subnets})
    # From here on the connection may not create clusters, as an IAM policy without
    # eks:CreateCluster would answer.
    gaps.fail("eks.CreateCluster", "AccessDeniedException", times=10)
    creates_before = gaps.calls["eks.CreateCluster"]
    result = run_dag(load("aws_provision"), {**PLANS["trn2"], "cluster_name": "team-cluster", "node_role_arn": NODE_ROLE})
    assert result.failed() == [], result.states
    cluster = result.xcoms["provision.ensure_cluster"]
    assert (cluster["action"], cluster["managed"], cluster["version"]) == ("adopted", False, "1.32")
    assert gaps.calls["eks.CreateCluster"] == creates_before
    # The node group went into the adopted cluster's subnets.
    group = client(aws_env, "eks", region).describe_nodegroup(clusterName="team-cluster",
                                                              nodegroupName="llm-serving_llama4-scout-neuron-nodes")["nodegroup"]
    assert group["subnets"] == subnets


def test_missing_cluster_without_create_fails_clearly(aws_env, gaps, capfd):
    foreign_network(aws_env, PLANS["trn2"]["region"])
    result = run_dag(load("aws_provision"), {**PLANS["trn2"], "node_role_arn": NODE_ROLE})
    assert result.states["provision.ensure_cluster"] == "failed"
    assert "EKS cluster llm-inference does not exist in us-east-2" in capfd.readouterr().out
    assert gaps.calls["eks.CreateCluster"] == 0 and gaps.calls["eks.CreateNodegroup"] == 0


def test_incompatible_node_group_is_refused_not_duplicated(aws_env, gaps, capfd):
    region = PLANS["gpu"]["region"]
    eks, subnets = client(aws_env, "eks", region), foreign_network(aws_env, region)
    eks.create_cluster(name="llm-inference", version="1.33", roleArn=ROLE, resourcesVpcConfig={"subnetIds": subnets})
    eks.create_nodegroup(clusterName="llm-inference", nodegroupName="llm-serving_llama4-scout-gpu-nodes", nodeRole=NODE_ROLE,
                         subnets=subnets, instanceTypes=["g5.48xlarge"], amiType="AL2023_x86_64_NVIDIA")
    result = run_dag(load("aws_provision"), {**PLANS["gpu"], **CREATE})
    assert result.states["provision.ensure_nodegroup"] == "failed"
    out = capfd.readouterr().out
    assert "node group llm-serving_llama4-scout-gpu-nodes in llm-inference exists but cannot be adopted" in out
    assert "instance types ['g5.48xlarge'], the plan needs [p5.48xlarge]" in out
    assert eks.list_nodegroups(clusterName="llm-inference")["nodegroups"] == ["llm-serving_llama4-scout-gpu-nodes"]
    assert gaps.calls["eks.CreateNodegroup"] == 1  # the test's own, above


def test_node_group_that_fails_to_start_is_deleted_then_recreated(aws_env, gaps, capfd):
    # Deferred; the wait in the worker ends at a health issue the same way (test_capacity.py).
    conf = {**PLANS["trn2"], **CREATE}
    dag_id = "aws_provision_deferrable"
    gaps.fail_creation(conf["region"], "llm-inference", "llm-serving_llama4-scout-neuron-nodes")
    failed = run_dag(load(dag_id), conf)
    assert failed.states["provision.ensure_nodegroup"] == "failed"
    assert "the node group this run created was deleted" in capfd.readouterr().out
    # The system node group it made beside is healthy, and stays: the cluster's, shared.
    assert inventory(aws_env, conf["region"])["nodegroups"] == [SYSTEM]

    gaps.doomed.clear()
    again = run_dag(load(dag_id), conf)
    assert again.failed() == [], again.states
    assert again.xcoms["provision.ensure_nodegroup"]["action"] == "created"
    assert again.xcoms["provision.ensure_system_nodegroup"]["action"] == "adopted"
    assert inventory(aws_env, conf["region"])["nodegroups"] == [SYSTEM, "llm-serving_llama4-scout-neuron-nodes"]

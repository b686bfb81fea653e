"""The cluster's untainted system node group (coredns, the FSx weight-staging Job): created with
a cluster this project creates and only then; refused when a node group of its name is not ours or
is tainted; on a cluster we did not create, a missing untainted node group is reported with a
clear warning and nothing is created. The dry run shows it with its cost."""

from __future__ import annotations

from llm_on_eks.naming import CLUSTER_KEY, MANAGED_BY_KEY
from tests.aws.conftest import CREATE, NODE_ROLE, ROLE, client, foreign_network
from tests.aws.test_provision import PLANS, ROLE_KEY, SYSTEM, inventory, load
from tests.dag_runs import run_dag

WARNING = "has no managed node group without NoSchedule/NoExecute taints: coredns cannot schedule"


def test_existing_cluster_without_untainted_node_group_is_warned_about(aws_env, gaps, capfd):
    region = PLANS["trn2"]["region"]
    eks, subnets = client(aws_env, "eks", region), foreign_network(aws_env, region)
    eks.create_cluster(name="team-cluster", version="1.33", roleArn=ROLE, resourcesVpcConfig={"subnetIds": subnets})
    conf = {**PLANS["trn2"], "cluster_name": "team-cluster", "node_role_arn": NODE_ROLE}

    result = run_dag(load("aws_provision"), conf)
    assert result.failed() == [], result.states
    check = result.xcoms["provision.ensure_system_nodegroup"]
    assert check["action"] == "checked (create_cluster is off: none created)"
    assert check["untainted_nodegroups"] == [] and WARNING in check["warning"]
    assert "EKS cluster team-cluster " + WARNING in capfd.readouterr().out
    assert inventory(aws_env, region, cluster="team-cluster")["nodegroups"] == ["llm-serving_llama4-scout-neuron-nodes"]

    # The team adds general-purpose nodes: the check finds them and stays quiet.
    eks.create_nodegroup(clusterName="team-cluster", nodegroupName="workers", nodeRole=NODE_ROLE, subnets=subnets,
                         instanceTypes=["m6i.large"], amiType="AL2023_x86_64_STANDARD")
    again = run_dag(load("aws_provision"), conf)
    assert again.failed() == [], again.states
    check = again.xcoms["provision.ensure_system_nodegroup"]
    assert check["untainted_nodegroups"] == ["workers"] and check["warning"] is None
    assert WARNING not in capfd.readouterr().out


def test_create_cluster_on_someone_elses_cluster_creates_no_system_node_group(aws_env, gaps):
    region = PLANS["gpu"]["region"]
    client(aws_env, "eks", region).create_cluster(name="llm-inference", version="1.33", roleArn=ROLE,
                                                  resourcesVpcConfig={"subnetIds": foreign_network(aws_env, region)})
    result = run_dag(load("aws_provision"), {**PLANS["gpu"], **CREATE, "node_role_arn": NODE_ROLE})
    assert result.failed() == [], result.states
    check = result.xcoms["provision.ensure_system_nodegroup"]
    assert check["action"] == "checked (the cluster is not llm-on-eks's: none created)" and check["warning"]
    assert inventory(aws_env, region)["nodegroups"] == ["llm-serving_llama4-scout-gpu-nodes"]


def test_a_system_node_group_name_that_is_not_ours_or_is_tainted_is_refused(aws_env, gaps, capfd):
    region = PLANS["gpu"]["region"]
    eks, subnets = client(aws_env, "eks", region), foreign_network(aws_env, region)
    eks.create_cluster(name="llm-inference", version="1.33", roleArn=ROLE, resourcesVpcConfig={"subnetIds": subnets},
                       tags={MANAGED_BY_KEY: "llm-on-eks"})
    system = {"clusterName": "llm-inference", "nodegroupName": SYSTEM, "nodeRole": NODE_ROLE, "subnets": subnets,
              "instanceTypes": ["m6i.xlarge"], "amiType": "AL2023_x86_64_STANDARD", "labels": {ROLE_KEY: "system"}}
    eks.create_nodegroup(**system)
    result = run_dag(load("aws_provision"), {**PLANS["gpu"], **CREATE})
    assert result.states["provision.ensure_system_nodegroup"] == "failed"
    assert result.states["provision.ensure_addons"] == "upstream_failed"
    out = capfd.readouterr().out
    assert f"node group {SYSTEM} in llm-inference exists but cannot be adopted" in out
    assert "someone else's node group has this name" in out

    eks.delete_nodegroup(clusterName="llm-inference", nodegroupName=SYSTEM)
    eks.create_nodegroup(**system, tags={MANAGED_BY_KEY: "llm-on-eks", CLUSTER_KEY: "llm-inference", ROLE_KEY: "system"},
                         taints=[{"key": "dedicated", "value": "ops", "effect": "NO_SCHEDULE"}])
    result = run_dag(load("aws_provision"), {**PLANS["gpu"], **CREATE})
    assert result.states["provision.ensure_system_nodegroup"] == "failed"
    assert "it is tainted ['dedicated=ops:NO_SCHEDULE']" in capfd.readouterr().out
    assert gaps.calls["eks.CreateNodegroup"] == 3  # the test's two and the accelerator node group


def test_dry_run_shows_the_system_node_group_and_its_cost(aws_env, gaps):
    result = run_dag(load("aws_provision"), {**PLANS["gpu"], **CREATE, "dry_run": True})
    assert result.failed() == [], result.states
    would = result.xcoms["provision.ensure_system_nodegroup"]["would"]
    request = would["if_missing"]["kwargs"]
    assert request["nodegroupName"] == SYSTEM and request["instanceTypes"] == ["m6i.xlarge"]
    assert request["taints"] == [] and request["labels"] == {ROLE_KEY: "system"}
    assert request["amiType"] == "AL2023_x86_64_STANDARD"
    assert request["tags"] == {MANAGED_BY_KEY: "llm-on-eks", CLUSTER_KEY: "llm-inference", ROLE_KEY: "system"}
    assert would["estimate"].startswith("2 x m6i.xlarge ~$0.38/hour")
    checks = result.xcoms["provision.preflight"]["would"]["checks"]
    assert {"Name": "instance-type", "Values": ["m6i.xlarge"]} in checks[-2]["kwargs"]["Filters"]

    existing = run_dag(load("aws_provision"), {**PLANS["gpu"], "dry_run": True})
    assert "warn_if" in existing.xcoms["provision.ensure_system_nodegroup"]["would"]

    down = run_dag(load("aws_teardown"), {**PLANS["gpu"], "dry_run": True, "delete_cluster": True})
    assert down.failed() == [], down.states
    # A teardown's dry run makes the real run's read-only calls: nothing exists yet.
    would = down.xcoms["teardown_aws.delete_system_nodegroup"]["would"]
    assert would == {"nodegroup": SYSTEM, "action": "already gone"}
    assert gaps.calls["eks.CreateNodegroup"] == 0 and gaps.calls["eks.DeleteNodegroup"] == 0

"""The AWS teardown group through dag.test() against the moto server: after it, moto holds no
cluster, node group or file system of the deployment (when opted in); shared things stay while
another deployment uses them; what is already gone is a success; ResourceInUseException is
retried."""

from __future__ import annotations

from llm_on_eks.aws.fsx_rules import USED_BY_PREFIX
from tests.aws.conftest import CREATE, client
from tests.aws.test_provision import PLANS, SYSTEM, assert_system_nodegroup, inventory, load
from tests.dag_runs import run_dag

EVERYTHING = {"delete_cluster": True, "delete_fsx": True}


def test_teardown_leaves_nothing_of_the_deployment(aws_env, gaps):
    # Deferred; tests/e2e/test_teardown.py removes everything with the waits in the worker.
    conf = {**PLANS["gpu"], **CREATE}
    region = conf["region"]
    assert run_dag(load("aws_provision_deferrable"), conf).failed() == []
    assert len(inventory(aws_env, region)["file_systems"]) == 1

    # EKS refuses the node group delete twice (an update in progress): retried with backoff.
    gaps.fail("eks.DeleteNodegroup", "ResourceInUseException", times=2)
    down = run_dag(load("aws_teardown_deferrable"), {**conf, **EVERYTHING})
    assert down.failed() == [], down.states
    # Three tries for the accelerator node group, one for the system node group.
    assert gaps.calls["eks.DeleteNodegroup"] == 4
    steps = ("delete_nodegroup", "delete_fsx", "delete_system_nodegroup", "delete_cluster")
    assert {t: down.xcoms[f"teardown_aws.{t}"]["action"] for t in steps} == dict.fromkeys(steps, "deleted")
    held = inventory(aws_env, region)
    assert (held["clusters"], held["nodegroups"], held["file_systems"]) == ([], [], [])
    # S3 artifacts are kept by default.
    assert held["buckets"] == ["llm-on-eks-llm-inference-us-west-2"]
    assert down.xcoms["teardown_aws.delete_artifacts"]["action"].startswith("kept")

    # Everything already gone: a second teardown succeeds and deletes nothing.
    again = run_dag(load("aws_teardown_deferrable"), {**conf, **EVERYTHING, "delete_artifacts": True})
    assert again.failed() == [], again.states
    assert again.xcoms["teardown_aws.delete_nodegroup"]["action"] == "already gone"
    assert again.xcoms["teardown_aws.delete_system_nodegroup"]["action"] == "already gone"
    assert again.xcoms["teardown_aws.delete_cluster"]["action"] == "already gone"
    assert again.xcoms["teardown_aws.delete_artifacts"]["action"] == "deleted"
    assert inventory(aws_env, region)["buckets"] == []


def test_shared_cluster_and_fsx_stay_while_another_deployment_uses_them(aws_env, gaps):
    region = PLANS["gpu"]["region"]
    # A fresh DAG object per run: dag.test() leaves a run's conf in the object's params.
    def provision():
        return load("aws_provision")

    def teardown():
        return load("aws_teardown")

    runs = {name: run_dag(provision(), {**PLANS["gpu"], **CREATE, "deployment_name": name})
            for name in ("scout-a", "scout-b")}
    assert [r.failed() for r in runs.values()] == [[], []]
    # One system node group for the cluster: made by the first deployment, adopted by the second.
    assert [r.xcoms["provision.ensure_system_nodegroup"]["action"] for r in runs.values()] == ["created", "adopted"]
    held = inventory(aws_env, region)
    assert held["nodegroups"] == [SYSTEM, "llm-serving_scout-a-nodes", "llm-serving_scout-b-nodes"] and len(held["file_systems"]) == 1
    assert_system_nodegroup(client(aws_env, "eks", region).describe_nodegroup(
        clusterName="llm-inference", nodegroupName=SYSTEM)["nodegroup"])
    fsx = client(aws_env, "fsx", region)
    users = lambda: sorted(t["Key"].removeprefix(USED_BY_PREFIX)  # noqa: E731
                           for t in fsx.describe_file_systems()["FileSystems"][0]["Tags"]
                           if t["Key"].startswith(USED_BY_PREFIX))
    assert users() == ["llm-serving/scout-a", "llm-serving/scout-b"]

    down_a = run_dag(teardown(), {**PLANS["gpu"], "deployment_name": "scout-a", **EVERYTHING})
    assert down_a.failed() == [], down_a.states
    assert down_a.xcoms["teardown_aws.delete_fsx"]["action"] == "kept: still used by ['llm-serving/scout-b']"
    assert down_a.xcoms["teardown_aws.delete_system_nodegroup"]["action"] \
        == "kept: the cluster still carries node groups ['llm-serving_scout-b-nodes']"
    assert down_a.xcoms["teardown_aws.delete_cluster"]["action"] == "kept: still carries node groups ['llm-serving_scout-b-nodes']"
    held = inventory(aws_env, region)
    assert held["clusters"] == ["llm-inference"] and held["nodegroups"] == [SYSTEM, "llm-serving_scout-b-nodes"]
    assert users() == ["llm-serving/scout-b"]

    # Without the opt-ins only the node group goes.
    down_b = run_dag(teardown(), {**PLANS["gpu"], "deployment_name": "scout-b"})
    assert down_b.failed() == [], down_b.states
    assert down_b.xcoms["teardown_aws.delete_cluster"]["action"] == "kept: delete_cluster is off"
    assert down_b.xcoms["teardown_aws.delete_system_nodegroup"]["action"].startswith("kept: it goes with the cluster")
    held = inventory(aws_env, region)
    assert held["nodegroups"] == [SYSTEM] and held["clusters"] == ["llm-inference"] and len(held["file_systems"]) == 1
    assert users() == []

    final = run_dag(teardown(), {**PLANS["gpu"], "deployment_name": "scout-b", **EVERYTHING})
    assert final.failed() == [], final.states
    assert final.xcoms["teardown_aws.delete_system_nodegroup"]["action"] == "deleted"
    held = inventory(aws_env, region)
    assert (held["clusters"], held["nodegroups"], held["file_systems"]) == ([], [], [])


def test_cluster_not_created_by_us_is_never_deleted(aws_env, gaps):
    from tests.aws.conftest import NODE_ROLE, ROLE, foreign_network

    region = PLANS["trn2"]["region"]
    client(aws_env, "eks", region).create_cluster(name="team-cluster", version="1.33", roleArn=ROLE,
                                                  resourcesVpcConfig={"subnetIds": foreign_network(aws_env, region)})
    conf = {**PLANS["trn2"], "cluster_name": "team-cluster", "node_role_arn": NODE_ROLE}
    assert run_dag(load("aws_provision"), conf).failed() == []
    down = run_dag(load("aws_teardown"), {**conf, **EVERYTHING})
    assert down.failed() == [], down.states
    assert down.xcoms["teardown_aws.delete_cluster"]["action"] == "kept: not created by llm-on-eks"
    held = inventory(aws_env, region, cluster="team-cluster")
    assert held["clusters"] == ["team-cluster"] and held["nodegroups"] == []
    assert gaps.calls["eks.DeleteCluster"] == 0


def test_the_idle_judge_finds_a_deployment_gone_with_its_cluster(aws_env):
    """A deployment the Asset still names, whose EKS cluster was deleted outside a teardown run:
    nothing is left to read or remove, so the judge says so instead of failing on the cluster."""
    from llm_on_eks.operators.idle_teardown import JudgeDeploymentsOperator

    record = {"deployment": "scout", "cluster": "deleted-by-hand", "region": "us-west-2", "namespace": "llm",
              "aws_conn_id": "aws_default", "kubernetes_conn_id": None, "hourly_usd": 55.04}
    (verdict,) = JudgeDeploymentsOperator(task_id="judge_deployments", records=[record]).execute({})
    assert verdict["teardown"] is False and verdict["idle_cost_usd"] == 0
    assert verdict["reason"] == "gone: EKS cluster deleted-by-hand no longer exists in us-west-2"

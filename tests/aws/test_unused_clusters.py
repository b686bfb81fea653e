"""The idle teardown's removal of an unused cluster, on the moto server: a cluster a deploy created
with ``cluster_quiet_minutes`` (network, roles, system node group, FSx, bucket), its deployment
torn down. The idle teardown (the DAG dags/ builds, through dag.test()) starts the cluster's quiet
clock; a deployment arriving stops it; once unused past its time the cluster goes with its FSx,
system node group, network and roles, and its bucket stays. Another team's cluster that carries
the same tags is never touched. Time is moved as a clock would move it: the test sets the
quiet-since tag back."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from llm_on_eks import naming
from tests.aws.conftest import CREATE, NODE_ROLE, ROLE, client, foreign_network
from tests.aws.test_empty_account import holdings
from tests.aws.test_provision import PLANS, load
from tests.dag_runs import load_dag, run_dag

CLUSTER, THEIRS = "llm-inference", "platform"
OPT_IN = 30


def _judge() -> dict[str, dict]:
    """One idle-teardown run; its verdict on each cluster of this test."""
    result = run_dag(load_dag("tests/dags/lifecycle/lifecycle.py", "lifecycle_idle_teardown"))
    assert result.failed() == [], result.states
    return {c["cluster"]: c for c in result.xcoms["judge_clusters"] if c["cluster"] in (CLUSTER, THEIRS)} | {
        "summary": result.xcoms["summarize"], "states": result.states}


def _set_quiet_since(eks, name: str, minutes_ago: int) -> None:
    since = (datetime.now(UTC) - timedelta(minutes=minutes_ago)).isoformat(timespec="seconds")
    eks.tag_resource(resourceArn=eks.describe_cluster(name=name)["cluster"]["arn"], tags={naming.QUIET_SINCE_KEY: since})


def test_an_unused_cluster_of_ours_goes_after_its_quiet_time_and_a_foreign_one_stays(aws_env, gaps):
    conf = {**PLANS["gpu"], **CREATE, "cluster_quiet_minutes": OPT_IN}
    region = conf["region"]
    eks = client(aws_env, "eks", region)
    # Another team's cluster, tagged (by mistake) as if it had opted in and been quiet for a day.
    subnets = foreign_network(aws_env, region)
    theirs_tags = {naming.QUIET_MINUTES_KEY: "1", naming.QUIET_SINCE_KEY: "2026-01-01T00:00:00+00:00"}
    eks.create_cluster(name=THEIRS, version="1.33", roleArn=ROLE, resourcesVpcConfig={"subnetIds": subnets},
                       tags=theirs_tags)
    before = holdings(aws_env, region)

    made = run_dag(load("aws_provision"), conf)
    assert made.failed() == [], made.states
    assert eks.describe_cluster(name=CLUSTER)["cluster"]["tags"][naming.QUIET_MINUTES_KEY] == str(OPT_IN)
    # The deployment's teardown (node group; the shared things stay), recorded as teardown_deployment does;
    # and a teardown on the other team's cluster, so that its name is on record too.
    for cluster in (CLUSTER, THEIRS):
        down = run_dag(load("aws_teardown"), {**conf, "cluster_name": cluster})
        assert down.failed() == [], down.states

    first = _judge()
    assert first[CLUSTER]["reason"] == f"kept: unused from now; removed after {OPT_IN} min without a deployment"
    assert first[THEIRS]["reason"] == "kept: not created by llm-on-eks, never removed"
    assert naming.QUIET_SINCE_KEY in eks.describe_cluster(name=CLUSTER)["cluster"]["tags"]

    # Past its time, but a deployment has arrived (its node group): kept, and the clock stops.
    _set_quiet_since(eks, CLUSTER, OPT_IN + 1)
    arriving = "team-b_other-nodes"
    eks.create_nodegroup(clusterName=CLUSTER, nodegroupName=arriving, instanceTypes=["g5.2xlarge"],
                         subnets=made.xcoms["provision.ensure_network"]["private_subnet_ids"], nodeRole=NODE_ROLE,
                         tags=naming.aws_tags("other", CLUSTER, "team-b", region),
                         scalingConfig={"minSize": 1, "maxSize": 1, "desiredSize": 1})
    used = _judge()
    assert used[CLUSTER]["reason"] == "kept: used by team-b/other"
    assert naming.QUIET_SINCE_KEY not in eks.describe_cluster(name=CLUSTER)["cluster"]["tags"]

    # That deployment gone, and no deployment since for longer than the cluster's time: it goes.
    eks.delete_nodegroup(clusterName=CLUSTER, nodegroupName=arriving)
    _set_quiet_since(eks, CLUSTER, OPT_IN + 1)
    gone = _judge()
    assert gone[CLUSTER]["remove"] and gone[CLUSTER]["reason"] == f"unused {OPT_IN + 1} min, removed after {OPT_IN} min"
    steps = ("delete_fsx", "delete_system_nodegroup", "delete_cluster", "delete_network")
    assert {s: gone["states"][f"remove_cluster.teardown_aws.{s}"] for s in steps} == dict.fromkeys(steps, "success")
    assert {"cluster": CLUSTER, "region": region, "removed": True, "reason": gone[CLUSTER]["reason"]} \
        in gone["summary"]["clusters"]
    assert [b["cluster"] for b in gone["summary"]["still_billing"]] == [THEIRS]

    # In moto's own listings: nothing of ours but the bucket (compiled artifacts and staged weights
    # are costly to make again); the other team's cluster, network and roles as they were.
    left = holdings(aws_env, region)
    assert left == {**before, "buckets": [naming.artifact_bucket(CLUSTER, region)]}
    assert eks.describe_cluster(name=THEIRS)["cluster"]["tags"] == theirs_tags

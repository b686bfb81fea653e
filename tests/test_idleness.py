"""The idle teardown's rules and the Kubernetes cleanup decisions, table by table, no servers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from llm_on_eks.kube.cleanup import plugin_decision, release_decision, shared_decision
from llm_on_eks.naming import MANAGED_BY_KEY
from llm_on_eks.operators.idle_teardown import by_cluster, latest_records
from llm_on_eks.serving.idleness import Observation, judge
from llm_on_eks.serving.metrics import DeploymentLoad

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
COUNTS = {"requests_succeeded": 4.0, "prompt_tokens": 40.0, "generation_tokens": 16.0}
IDLE = DeploymentLoad(source="test", running=0.0, waiting=0.0, **COUNTS)


def ago(minutes: float) -> str:
    return (NOW - timedelta(minutes=minutes)).isoformat(timespec="seconds")


def seen(**changes) -> Observation:
    base = {"now": NOW, "idle_ttl_minutes": 60, "protected": False, "created_at": NOW - timedelta(hours=5),
            "ready": True, "load": IDLE, "state": {"counters": COUNTS, "last_active": ago(90)}}
    return Observation(**{**base, **changes})


@pytest.mark.parametrize(("changes", "teardown", "reason"), [
    ({}, True, "idle 90 min, TTL 60 min"),
    ({"state": {"counters": COUNTS, "last_active": ago(30)}}, False, "kept: idle 30 of 60 min"),
    ({"protected": True}, False, "kept: protected"),
    ({"created_at": NOW - timedelta(minutes=20)}, False, "kept: 20 min old, younger than its idle TTL of 60 min"),
    ({"ready": False}, False, "kept: pods not ready (never stopped while loading)"),
    ({"load": None}, False, "kept: metrics unreadable (not read)"),
    ({"load": DeploymentLoad(source="t", error="HTTP 503")}, False, "kept: metrics unreadable (HTTP 503)"),
    ({"load": DeploymentLoad(source="t", running=0.0, waiting=0.0)}, False,
     "kept: metrics unreadable (counters missing)"),
    ({"state": {}}, False, "kept: first reading, the idle clock starts now"),
    ({"load": DeploymentLoad(source="t", running=0.0, waiting=0.0, **{**COUNTS, "generation_tokens": 17.0})}, False,
     "kept: served since the last check"),
    # A restarted server's counters go back: that is change, never idleness.
    ({"load": DeploymentLoad(source="t", running=0.0, waiting=0.0, **{**COUNTS, "requests_succeeded": 0.0})},
     False, "kept: served since the last check"),
    ({"load": DeploymentLoad(source="t", running=1.0, waiting=0.0, **COUNTS)}, False, "kept: requests in flight"),
    ({"failed_at": NOW - timedelta(minutes=10)}, False, "kept: deploy failed 10 min ago, grace 30 min"),
    ({"failed_at": NOW - timedelta(minutes=45)}, True, "deploy failed 45 min ago"),
    ({"created_at": None, "ready": None, "load": None}, False, "kept: neither a release nor a node group"),
    ({"created_at": None, "ready": None, "load": None, "nodegroup_created_at": NOW - timedelta(minutes=30)}, False,
     "kept: node group without a release for 30 min"),
    ({"created_at": None, "ready": None, "load": None, "nodegroup_created_at": NOW - timedelta(hours=4)}, True,
     "node group without a release for 240 min"),
    # A run holding the deployment's Lease is working on it: a re-deploy after a failure too.
    ({"lease": ("deploy", "deploy_model/manual__1")}, False, "kept: deploy in progress (run deploy_model/manual__1)"),
    ({"lease": ("deploy", "deploy_llama4/manual__2"), "failed_at": NOW - timedelta(hours=2), "protected": True},
     False,
     "kept: deploy in progress (run deploy_llama4/manual__2)"),
    ({"lease": ("teardown", "teardown_deployment/manual__3")}, False,
     "kept: teardown in progress (run teardown_deployment/manual__3)"),
    # A DAG run using it through llm_endpoint: kept whatever its counters say, even once failed.
    ({"holds": ("nightly_batch/scheduled__1", "evals/manual__2"), "failed_at": NOW - timedelta(hours=2)}, False,
     "kept: in use by 2 run(s): nightly_batch/scheduled__1, evals/manual__2"),
    # A successful deploy restarts the clocks, even when a new server's counters read as the old.
    ({"deployed_at": NOW - timedelta(minutes=10)}, False, "kept: 10 min old, younger than its idle TTL of 60 min"),
    ({"deployed_at": NOW - timedelta(hours=2)}, False, "kept: first reading, the idle clock starts now"),
    ({"deployed_at": NOW - timedelta(hours=2),
      "state": {"counters": COUNTS, "last_active": ago(90), "deployed_at": ago(120)}}, True, "idle 90 min, TTL 60 min"),
], ids=["idle", "idle-not-long-enough", "protected", "too-young", "not-ready", "not-read", "http-error",
        "no-counters", "first-reading", "served", "counters-reset", "in-flight", "failed-in-grace", "failed",
        "nothing", "orphan-young", "orphan", "deploying", "redeploying-after-failure", "tearing-down", "held",
        "redeployed-recently", "redeployed-new-baseline", "idle-since-redeploy"])
def test_judge(changes, teardown, reason):
    verdict = judge(seen(**changes))
    assert verdict.teardown is teardown and verdict.reason.startswith(reason), verdict


def test_the_idle_clock_keeps_its_start_and_moves_on_activity():
    assert judge(seen()).state == {"counters": COUNTS, "last_active": ago(90)}
    moved = judge(seen(load=DeploymentLoad(source="t", running=0.0, waiting=0.0, **{**COUNTS, "prompt_tokens": 41.0})))
    assert moved.state["last_active"] == NOW.isoformat(timespec="seconds")
    assert judge(seen(load=None)).state is None  # an unreadable server leaves the clock alone


@pytest.mark.parametrize(("found", "values", "delete", "why"), [
    (None, None, False, "already gone"),
    ({"chart": "vllm-serving-0.1.0", "status": "deployed"}, {"labels": {MANAGED_BY_KEY: "llm-on-eks"}}, True,
     "release of chart vllm-serving-0.1.0 (deployed)"),
    ({"chart": "vllm-serving-0.1.0", "status": "failed"}, {"labels": {}}, False,
     "kept: its values lack the label llm-on-eks.io/managed-by=llm-on-eks"),
    ({"chart": "nginx-1.2.3", "status": "deployed"}, {"labels": {MANAGED_BY_KEY: "llm-on-eks"}}, False,
     "kept: made from chart nginx-1.2.3, not llm-on-eks's"),
])
def test_release_decision(found, values, delete, why):
    decision = release_decision(found, values)
    assert decision[0] is delete and decision[1].startswith(why)


@pytest.mark.parametrize(("labels", "others", "delete", "why"), [
    (None, [], False, "already gone"),
    ({}, [], False, "kept: not made by llm-on-eks"),
    ({MANAGED_BY_KEY: "llm-on-eks"}, ["other"], False, "kept: still used by ['other']"),
    ({MANAGED_BY_KEY: "llm-on-eks"}, [], True, "no other llm-on-eks deployment in the namespace"),
])
def test_shared_decision(labels, others, delete, why):
    assert shared_decision(labels, others) == (delete, why)


@pytest.mark.parametrize(("labels", "nodes", "delete"), [
    (None, [], False), ({}, [], False), ({MANAGED_BY_KEY: "llm-on-eks"}, ["p5-0"], False),
    ({MANAGED_BY_KEY: "llm-on-eks"}, [], True),
])
def test_plugin_decision(labels, nodes, delete):
    assert plugin_decision(labels, nodes, "gpu")[0] is delete


def test_latest_record_per_deployment_and_removed_ones_dropped():
    def record(name, namespace="ns", **extra):
        return {"deployment": name, "cluster": "c1", "region": "us-west-2", "namespace": namespace, **extra}

    extras = [record("a", hourly_usd=1), record("b"), record("a", hourly_usd=2), record("b", removed=True),
              record("a", namespace="other"), {"unrelated": True}, record("c", dry_run=True)]
    assert latest_records(extras) == [record("a", hourly_usd=2), record("a", namespace="other")]


def test_a_young_deployment_is_read_so_its_idle_clock_starts_at_once():
    young = judge(seen(created_at=NOW - timedelta(minutes=20), state={}))
    assert not young.teardown and young.reason.startswith("kept: 20 min old")
    assert young.state == {"counters": COUNTS, "last_active": NOW.isoformat(timespec="seconds")}
    # Never removed while young, however long the counters have stood still.
    assert not judge(seen(created_at=NOW - timedelta(minutes=20))).teardown


def test_deployments_are_judged_in_groups_by_cluster():
    """A record without a connection (an older one) is on the default connection's cluster."""
    records = [{"deployment": d, "cluster": c, "region": r, "aws_conn_id": conn}
               for d, c, r, conn in (("a", "c1", "us-west-2", "aws_default"), ("b", "c2", "us-west-2", "aws_default"),
                                     ("c", "c1", "us-west-2", None), ("d", "c1", "us-east-2", "aws_default"))]
    assert [[r["deployment"] for r in group] for group in by_cluster(records)] == [["d"], ["a", "c"], ["b"]]

"""The rule functions the AWS steps act on, table by table, without any server: whether a node
group or cluster can be adopted, what a teardown may delete, and when an unused cluster goes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from llm_on_eks.aws import eks as rules
from llm_on_eks.aws.teardown import (
    QuietVerdict,
    bucket_decision,
    cluster_decision,
    fsx_decision,
    nodegroup_decision,
    quiet_cluster_decision,
    system_nodegroup_decision,
)
from llm_on_eks.naming import (
    CLUSTER_KEY,
    DEPLOYMENT_KEY,
    MANAGED_BY_KEY,
    QUIET_MINUTES_KEY,
    QUIET_SINCE_KEY,
    ROLE_KEY,
    fsx_user,
)
from llm_on_eks.plan import build_plan

OURS = {MANAGED_BY_KEY: "llm-on-eks", DEPLOYMENT_KEY: "scout", CLUSTER_KEY: "c1"}
SYSTEM_TAGS = {MANAGED_BY_KEY: "llm-on-eks", CLUSTER_KEY: "c1", ROLE_KEY: "system"}


@pytest.fixture(scope="module")
def spec():
    plan = build_plan({"model": "llama4-scout", "accelerator": "gpu", "cluster_name": "c1",
                       "deployment_name": "scout"})
    return plan["nodegroup"]


def _group(spec, **changes):
    group = {"status": "ACTIVE", "tags": dict(spec["tags"]), "instanceTypes": [spec["instance_type"]],
             "amiType": spec["ami_type"], "capacityType": "ON_DEMAND", "labels": dict(spec["labels"]),
             "taints": [dict(t) for t in spec["taints"]],
             "scalingConfig": {"minSize": 1, "maxSize": 1, "desiredSize": 1}}
    group.update(changes)
    return group


@pytest.mark.parametrize(("changes", "problem"), [
    ({}, None),
    ({"status": "CREATING"}, None),
    ({"tags": {MANAGED_BY_KEY: "llm-on-eks", DEPLOYMENT_KEY: "other"}}, "someone else's node group"),
    ({"tags": {}}, "someone else's node group"),
    ({"status": "CREATE_FAILED", "health": {"issues": [{"message": "no capacity"}]}},
     "status is CREATE_FAILED (no capacity)"),
    ({"instanceTypes": ["p4d.24xlarge"]}, "instance types ['p4d.24xlarge']"),
    ({"amiType": "AL2023_x86_64_STANDARD"}, "AMI type AL2023_x86_64_STANDARD"),
    ({"capacityType": "SPOT"}, "capacity type SPOT"),
    ({"labels": {}}, "labels lack"),
    ({"taints": []}, "taints lack"),
    ({"taints": None}, "taints lack"),
], ids=["fits", "creating", "another-deployment", "untagged", "failed", "instance", "ami", "spot", "labels",
        "no-taint", "taints-none"])
def test_nodegroup_adoption(spec, changes, problem):
    problems = rules.nodegroup_problems(_group(spec, **changes), spec)
    if problem is None:
        assert problems == []
    else:
        assert any(problem in p for p in problems), problems


def test_an_extra_blocking_taint_is_refused_and_a_soft_one_is_not(spec):
    extra = {"key": "dedicated", "value": "x", "effect": "NO_EXECUTE"}
    soft = {"key": "soft", "value": "x", "effect": "PREFER_NO_SCHEDULE"}
    taints = [dict(t) for t in spec["taints"]]
    assert any("tainted ['dedicated=x:NO_EXECUTE']" in p
               for p in rules.nodegroup_problems(_group(spec, taints=[*taints, extra]), spec))
    assert rules.nodegroup_problems(_group(spec, taints=[*taints, soft]), spec) == []


@pytest.mark.parametrize(("scaling", "differs"), [
    ({"minSize": 1, "maxSize": 1, "desiredSize": 1}, False),
    ({"minSize": 1, "maxSize": 2, "desiredSize": 1}, True),
    ({}, True),
])
def test_scaling_differs(spec, scaling, differs):
    assert rules.scaling_differs({"scalingConfig": scaling}, spec) is differs


@pytest.mark.parametrize(("cluster", "problem"), [
    ({"status": "ACTIVE", "version": "1.34"}, None),
    ({"status": "CREATING", "version": "1.30"}, None),
    ({"status": "FAILED", "version": "1.34"}, "status is FAILED"),
    ({"status": "ACTIVE", "version": "1.29"}, "older than 1.30"),
])
def test_cluster_adoption(cluster, problem):
    problems = rules.cluster_problems(cluster)
    assert problems == [] if problem is None else any(problem in p for p in problems)


@pytest.mark.parametrize(("taints", "untainted"), [
    ([], True), (None, True), ([{"key": "a", "effect": "PREFER_NO_SCHEDULE"}], True),
    ([{"key": "a", "effect": "NO_SCHEDULE"}], False), ([{"key": "a", "effect": "NO_EXECUTE"}], False),
])
def test_untainted(taints, untainted):
    assert rules.is_untainted({"taints": taints}) is untainted


@pytest.mark.parametrize(("group", "delete", "reason"), [
    (None, False, "already gone"),
    ({"tags": OURS}, True, "node group of scout"),
    ({"tags": {**OURS, DEPLOYMENT_KEY: "other"}}, False, "not this deployment's"),
    ({"tags": {DEPLOYMENT_KEY: "scout"}}, False, "not this deployment's"),
    ({"tags": None}, False, "not this deployment's"),
])
def test_nodegroup_decision(group, delete, reason):
    decision = nodegroup_decision(group, "scout")
    assert decision.delete is delete and reason in decision.reason


CLUSTER = {"name": "c1", "tags": {MANAGED_BY_KEY: "llm-on-eks"}}


@pytest.mark.parametrize(("group", "cluster", "others", "opted_in", "delete", "reason"), [
    (None, CLUSTER, [], True, False, "already gone"),
    ({"tags": SYSTEM_TAGS}, CLUSTER, [], False, False, "delete_cluster is off"),
    ({"tags": SYSTEM_TAGS}, {"name": "c1", "tags": {}}, [], True, False, "not llm-on-eks's"),
    ({"tags": SYSTEM_TAGS}, None, [], True, False, "not llm-on-eks's"),
    ({"tags": {**SYSTEM_TAGS, CLUSTER_KEY: "c2"}}, CLUSTER, [], True, False, "not llm-on-eks's system node group"),
    ({"tags": {**SYSTEM_TAGS, ROLE_KEY: "gpu"}}, CLUSTER, [], True, False, "not llm-on-eks's system node group"),
    ({"tags": SYSTEM_TAGS}, CLUSTER, ["scout-nodes"], True, False, "still carries node groups ['scout-nodes']"),
    ({"tags": SYSTEM_TAGS}, CLUSTER, [], True, True, "goes with the cluster"),
])
def test_system_nodegroup_decision(group, cluster, others, opted_in, delete, reason):
    decision = system_nodegroup_decision(group, cluster, others, opted_in)
    assert decision.delete is delete and reason in decision.reason


@pytest.mark.parametrize(("cluster", "remaining", "opted_in", "delete", "reason"), [
    (None, [], True, False, "already gone"),
    (CLUSTER, [], False, False, "delete_cluster is off"),
    ({"name": "c1", "tags": {}}, [], True, False, "not created by llm-on-eks"),
    (CLUSTER, ["other-nodes"], True, False, "still carries node groups ['other-nodes']"),
    (CLUSTER, [], True, True, "no node groups left"),
])
def test_cluster_decision(cluster, remaining, opted_in, delete, reason):
    decision = cluster_decision(cluster, remaining, opted_in)
    assert decision.delete is delete and reason in decision.reason


def _fs(*users):
    return {"Tags": [{"Key": f"llm-on-eks.io/used-by/{u}", "Value": "true"} for u in users]}


@pytest.mark.parametrize(("fs", "opted_in", "delete", "reason"), [
    (None, True, False, "already gone"),
    (_fs("ns/scout"), False, False, "delete_fsx is off"),
    (_fs("ns/scout", "ns/maverick"), True, False, "still used by ['ns/maverick']"),
    # The same deployment name in another namespace is another user.
    (_fs("ns/scout", "team-b/scout"), True, False, "still used by ['team-b/scout']"),
    (_fs("ns/scout"), True, True, "no other deployment uses it"),
    (_fs(), True, True, "no other deployment uses it"),
])
def test_fsx_decision(fs, opted_in, delete, reason):
    decision = fsx_decision(fs, fsx_user("ns", "scout"), opted_in)
    assert decision.delete is delete and reason in decision.reason


@pytest.mark.parametrize(("tags", "opted_in", "delete", "reason"), [
    (None, True, False, "already gone"),
    (OURS, False, False, "delete_artifacts is off"),
    ({}, True, False, "not made by llm-on-eks for this cluster"),
    ({**OURS, CLUSTER_KEY: "c2"}, True, False, "not made by llm-on-eks for this cluster"),
    (OURS, True, True, "made by llm-on-eks for this cluster"),
])
def test_bucket_decision(tags, opted_in, delete, reason):
    decision = bucket_decision(tags, "c1", opted_in)
    assert decision.delete is delete and reason in decision.reason


NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
OPTED_IN = {MANAGED_BY_KEY: "llm-on-eks", QUIET_MINUTES_KEY: "60"}


def _quiet_since(minutes_ago: int) -> dict[str, str]:
    return {**OPTED_IN, QUIET_SINCE_KEY: (NOW - timedelta(minutes=minutes_ago)).isoformat()}


@pytest.mark.parametrize(("tags", "users", "remove", "reason", "since"), [
    ({QUIET_MINUTES_KEY: "1", QUIET_SINCE_KEY: "2026-01-01T00:00:00+00:00"}, [], False,
     "kept: not created by llm-on-eks, never removed", None),
    ({MANAGED_BY_KEY: "llm-on-eks"}, [], False, "removal once unused is off", None),
    ({**OPTED_IN, QUIET_MINUTES_KEY: "0"}, [], False, "removal once unused is off", None),
    ({**OPTED_IN, QUIET_MINUTES_KEY: "an hour"}, [], False, "is not a number of minutes", None),
    (_quiet_since(90), ["team-a/scout"], False, "kept: used by team-a/scout", None),
    (OPTED_IN, [], False, "kept: unused from now; removed after 60 min", NOW.isoformat()),
    ({**OPTED_IN, QUIET_SINCE_KEY: "yesterday"}, [], False, "kept: unused from now", NOW.isoformat()),
    (_quiet_since(59), [], False, "kept: unused 59 of 60 min", _quiet_since(59)[QUIET_SINCE_KEY]),
    (_quiet_since(60), [], True, "unused 60 min, removed after 60 min", _quiet_since(60)[QUIET_SINCE_KEY]),
])
def test_quiet_cluster_decision(tags, users, remove, reason, since):
    verdict = quiet_cluster_decision({"name": "c1", "tags": tags}, users, NOW)
    assert verdict.remove is remove and reason in verdict.reason and verdict.quiet_since == since


@pytest.mark.parametrize("status", ["CREATING", "UPDATING"])
def test_a_cluster_at_work_is_not_unused(status):
    """A deploy is making it (and its node group comes once it is ACTIVE), or someone changes it."""
    verdict = quiet_cluster_decision({"name": "c1", "tags": _quiet_since(90), "status": status}, [], NOW)
    assert verdict == QuietVerdict(False, f"kept: {status}", None)


def test_a_gone_cluster_is_neither_kept_nor_removed():
    assert quiet_cluster_decision(None, [], NOW) == QuietVerdict(False, "gone", None)


@pytest.mark.parametrize(("instance_type", "code"), [
    ("p5.48xlarge", "L-417A185B"), ("p4d.24xlarge", "L-417A185B"), ("g5.2xlarge", "L-DB2E81BA"),
    ("g6e.12xlarge", "L-DB2E81BA"), ("trn2.48xlarge", "L-2C3B7624"), ("trn1n.32xlarge", "L-2C3B7624"),
    ("inf2.48xlarge", "L-1945791B"), ("m6i.xlarge", None),
])
def test_the_vcpu_quota_is_the_instance_familys(instance_type, code):
    from llm_on_eks.aws.api_calls import vcpu_quota_request

    request = vcpu_quota_request(instance_type)
    assert (request and request["QuotaCode"]) == code
    assert request is None or request["ServiceCode"] == "ec2"

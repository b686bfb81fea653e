"""Reserved capacity and its absence (llm_on_eks.aws.capacity): a reservation preflight refuses
(another zone, outside its window), a node group launched into an On-Demand Capacity Reservation
or a Capacity Block through its launch template, in the reservation's zone only, and a node group
without capacity that fails at the first health issue, saying what to try, and is deleted. The
rules first, without a server; then through the test DAGs against the moto server, whose
capacity reservations the gap filler answers (``gaps.capacity_reservations``)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import pytest

from llm_on_eks.aws import api_calls, capacity
from llm_on_eks.aws import eks as rules
from llm_on_eks.aws.teardown import launch_template_decision
from llm_on_eks.naming import CREATED_BY_RUN_KEY
from llm_on_eks.operators.provision import EnsureNodegroupOperator, PreflightOperator
from llm_on_eks.plan import build_plan
from local_stack.aws_gaps import ACCOUNT
from tests.aws.conftest import CREATE, client, foreign_network
from tests.aws.test_preflight import CREATES
from tests.aws.test_provision import PLANS, SYSTEM, inventory, load
from tests.dag_runs import run_dag

ODCR, BLOCK = "cr-0a1b2c3d4e5f60718", "cr-0f1e2d3c4b5a69788"
NODEGROUP = "llm-serving_llama4-scout-gpu-nodes"
TEMPLATE = "llm-inference_llm-serving_llama4-scout-gpu-nodes"
NO_CAPACITY = ("Could not launch On-Demand Instances. InsufficientInstanceCapacity - We currently do not have "
               "sufficient p5.48xlarge capacity in the Availability Zone you requested (us-west-2a). Our system will "
               "be working on provisioning additional capacity.")


def reservation(reservation_id: str = ODCR, zone: str = "us-west-2d", *, block: bool = False, state: str = "active",
                starts: timedelta = -timedelta(hours=1), ends: timedelta | None = timedelta(days=2),
                instance_type: str = "p5.48xlarge", available: int = 1) -> dict:
    """A capacity reservation as DescribeCapacityReservations describes one; ``starts``/``ends``
    from now (``ends`` None: an ODCR without an end date)."""
    now = datetime.now(UTC).replace(microsecond=0)
    return {
        "CapacityReservationId": reservation_id, "OwnerId": ACCOUNT,
        "CapacityReservationArn": f"arn:aws:ec2:{zone[:-1]}:{ACCOUNT}:capacity-reservation/{reservation_id}",
        "AvailabilityZone": zone, "InstanceType": instance_type, "InstancePlatform": "Linux/UNIX",
        "Tenancy": "default", "TotalInstanceCount": max(available, 1), "AvailableInstanceCount": available,
        "EbsOptimized": True, "State": state, "StartDate": now + starts, "CreateDate": now - timedelta(days=1),
        **({"EndDate": now + ends, "EndDateType": "limited"} if ends else {"EndDateType": "unlimited"}),
        "InstanceMatchCriteria": "targeted", "ReservationType": "capacity-block" if block else "default",
    }


@pytest.fixture(scope="module")
def spec():
    return build_plan({**PLANS["gpu"], "capacity_reservation_id": ODCR})["nodegroup"]


# -- the rules, without a server ---------------------------------------------------------------

@pytest.mark.parametrize(("changes", "problems"), [
    ({}, []),
    ({"ends": None}, []),
    ({"block": True, "state": "scheduled", "starts": timedelta(minutes=20)}, ["State is scheduled, it starts at"]),
    ({"state": "expired"}, ["State is expired; only an active reservation launches instances"]),
    ({"ends": timedelta(minutes=50)}, ["less than 60 minutes from now"]),
    ({"block": True, "ends": timedelta(minutes=90)}, ["(Capacity Block): EndDate is", "less than 100 minutes"]),
    ({"instance_type": "p4d.24xlarge"}, ["InstanceType is p4d.24xlarge, the node group needs p5.48xlarge"]),
    ({"available": 0}, ["AvailableInstanceCount is 0 (of 1), the node group needs 1"]),
    ({"zone": "us-west-2c"}, ["AvailabilityZone is us-west-2c, and the subnet_ids are in us-west-2a, us-west-2d"]),
], ids=["fits", "no-end", "scheduled-block", "expired", "ends-soon", "block-ends-before-scale-down", "other-type",
        "full", "other-zone"])
def test_reservation_rules(spec, changes, problems):
    found = capacity.reservation_problems(reservation(**changes), spec, ["us-west-2a", "us-west-2d"],
                                          datetime.now(UTC))
    assert len(found) == (1 if problems else 0), found
    assert all(p in found[0] for p in problems) and all(p.startswith(f"capacity_reservation_id {ODCR}") for p in found)
    other = {**reservation(), "InstancePlatform": "Windows"}
    assert "InstancePlatform is Windows" in capacity.reservation_problems(other, spec, None, datetime.now(UTC))[0]


def test_requests_on_a_reservation_and_adoption(spec):
    """The instance type and disk are the launch template's; a Capacity Block's node group is
    CAPACITY_BLOCK and its template names the capacity-block market; an existing node group must
    launch from our template."""
    odcr, block = reservation(), reservation(BLOCK, block=True)
    request = api_calls.create_nodegroup_request("llm-inference", spec, ["subnet-d"], reservation=odcr)
    assert "instanceTypes" not in request and "diskSize" not in request
    assert (request["launchTemplate"], request["capacityType"]) == ({"name": TEMPLATE}, "ON_DEMAND")
    assert api_calls.create_nodegroup_request("llm-inference", spec, reservation=block)["capacityType"] == "CAPACITY_BLOCK"
    data = api_calls.launch_template_data(spec, block)
    assert data["InstanceMarketOptions"] == {"MarketType": "capacity-block"} and data["InstanceType"] == "p5.48xlarge"
    assert data["BlockDeviceMappings"][0]["Ebs"]["VolumeSize"] == spec["disk_size_gib"]
    assert "InstanceMarketOptions" not in api_calls.launch_template_data(spec, odcr)

    group = {"status": "ACTIVE", "tags": dict(spec["tags"]), "amiType": spec["ami_type"], "capacityType": "ON_DEMAND",
             "labels": dict(spec["labels"]), "taints": [dict(t) for t in spec["taints"]],
             "launchTemplate": {"name": TEMPLATE, "version": "1"}}
    assert rules.nodegroup_problems(group, spec, odcr) == []
    assert rules.nodegroup_problems(group, spec, block) == ["capacity type ON_DEMAND, the plan needs CAPACITY_BLOCK"]
    assert rules.nodegroup_problems({**group, "launchTemplate": None}, spec, odcr) == [
        f"it launches from launch template None, the plan needs {TEMPLATE} (capacity reservation {ODCR})"]


def test_launch_failure_says_what_to_try():
    group = {"health": {"issues": [{"code": "AsgInstanceLaunchFailures", "message": NO_CAPACITY}]}}
    told = rules.launch_failure(group, "p5.48xlarge")
    assert told.startswith(f"AsgInstanceLaunchFailures: {NO_CAPACITY} (EC2 has no p5.48xlarge to spare")
    assert "another availability zone (subnet_ids) or region" in told and "capacity_reservation_id" in told
    quota = rules.launch_failure({"health": {"issues": [{"code": "InstanceLimitExceeded", "message": "limit"}]}},
                                 "trn2.48xlarge")
    assert quota == ("InstanceLimitExceeded: limit (request a quota increase (Service Quotas, ec2 L-2C3B7624: the "
                     "family's running on-demand vCPUs))")
    assert "larger subnets" in rules.launch_failure(
        {"health": {"issues": [{"code": "InsufficientFreeAddresses", "message": "no room"}]}}, "p5.48xlarge")
    assert rules.launch_failure({"health": {"issues": []}}, "p5.48xlarge") is None


def test_dry_run_shows_the_launch_template_and_what_the_reservation_decides():
    """Nothing is read from AWS in a dry run: what the reservation's type decides is named as a condition."""
    plan = build_plan({**PLANS["gpu"], "dry_run": True, "capacity_reservation_id": ODCR})
    sections = {k: plan[k] for k in ("target", "aws", "cluster", "nodegroup")}
    would = EnsureNodegroupOperator(task_id="ensure_nodegroup", **sections).describe()
    assert would["if_missing"]["kwargs"]["capacityType"] == "<CAPACITY_BLOCK for a Capacity Block, else ON_DEMAND>"
    template = would["launch_template"]["if_missing"]["kwargs"]
    assert template["LaunchTemplateData"]["CapacityReservationSpecification"] == {
        "CapacityReservationTarget": {"CapacityReservationId": ODCR}}
    checks = PreflightOperator(task_id="preflight", system_nodegroup=plan["system_nodegroup"], nodepool=plan["nodepool"], hf_token=plan["hf_token"],
                               preflight=plan["preflight"], **sections).describe()["checks"]
    assert {"service": "ec2", "operation": "describe_capacity_reservations",
            "kwargs": {"CapacityReservationIds": [ODCR]}} in checks


# -- against the moto server -------------------------------------------------------------------

def test_preflight_refuses_a_reservation_in_another_zone_and_outside_its_window(aws_env, gaps, capfd):
    """A Capacity Block that starts in 20 minutes, ends 90 minutes from now (EKS scales its node
    group to zero 40 minutes before the end), in a zone none of the given subnets is in."""
    conf = {**PLANS["gpu"], **CREATE, "subnet_ids": foreign_network(aws_env, "us-west-2"),
            "capacity_reservation_id": BLOCK}
    gaps.capacity_reservations[BLOCK] = reservation(BLOCK, "us-west-2c", block=True, state="scheduled",
                                                    starts=timedelta(minutes=20), ends=timedelta(minutes=90))
    result = run_dag(load("aws_provision"), conf)
    assert result.states["provision.preflight"] == "failed"
    out = capfd.readouterr().out
    name = f"capacity_reservation_id {BLOCK} (Capacity Block)"
    assert f"{name}: State is scheduled, it starts at" in out and "trigger again once it is active" in out
    assert f"{name}: EndDate is" in out and "less than 100 minutes from now" in out
    assert f"{name}: AvailabilityZone is us-west-2c, and the subnet_ids are in us-west-2a, us-west-2b" in out
    assert {op: gaps.calls[op] for op in [*CREATES, "ec2.CreateLaunchTemplate"]} == dict.fromkeys(
        [*CREATES, "ec2.CreateLaunchTemplate"], 0)


@pytest.mark.parametrize("block", [False, True], ids=["odcr", "capacity-block"])
def test_node_group_launches_into_the_reservation_in_its_zone_only(aws_env, gaps, block):
    """From an empty account: the network includes the reservation's zone (us-west-2d, which
    the first three zones offering p5 would leave out), the node group is only in its private
    subnet there, launching from our template; an ODCR's template goes with the teardown."""
    reservation_id, region = (BLOCK if block else ODCR), "us-west-2"
    gaps.capacity_reservations[reservation_id] = reservation(reservation_id, block=block)
    conf = {**PLANS["gpu"], **CREATE, "capacity_reservation_id": reservation_id}
    result = run_dag(load("aws_provision"), conf)
    assert result.failed() == [], result.states
    assert result.xcoms["provision.ensure_network"]["zones"] == ["us-west-2a", "us-west-2b", "us-west-2d"]

    eks, ec2 = client(aws_env, "eks", region), client(aws_env, "ec2", region)
    group = eks.describe_nodegroup(clusterName="llm-inference", nodegroupName=NODEGROUP)["nodegroup"]
    zones = {s["SubnetId"]: s["AvailabilityZone"] for s in ec2.describe_subnets(SubnetIds=group["subnets"])["Subnets"]}
    assert set(zones.values()) == {"us-west-2d"} and len(zones) == 1
    assert group["capacityType"] == ("CAPACITY_BLOCK" if block else "ON_DEMAND")
    assert group["launchTemplate"]["name"] == TEMPLATE
    (template,) = ec2.describe_launch_templates(**api_calls.launch_template_filter(TEMPLATE))["LaunchTemplates"]
    assert {t["Key"]: t["Value"] for t in template["Tags"]}[CREATED_BY_RUN_KEY] == result.run_id
    data = ec2.describe_launch_template_versions(LaunchTemplateId=template["LaunchTemplateId"])[
        "LaunchTemplateVersions"][0]["LaunchTemplateData"]
    assert data["CapacityReservationSpecification"] == {"CapacityReservationTarget": {
        "CapacityReservationId": reservation_id}}
    assert data.get("InstanceMarketOptions") == ({"MarketType": "capacity-block"} if block else None)
    if block:
        return
    down = run_dag(load("aws_teardown"), conf)
    assert down.failed() == [], down.states
    assert down.xcoms["teardown_aws.delete_nodegroup"]["launch_template"] == {"name": TEMPLATE, "action": "deleted"}
    assert ec2.describe_launch_templates(**api_calls.launch_template_filter(TEMPLATE))["LaunchTemplates"] == []


def test_launch_template_is_adopted_only_when_it_is_ours_and_fits(aws_env, gaps, spec):
    ec2, log = client(aws_env, "ec2", "us-west-2"), logging.getLogger(__name__)
    request = api_calls.create_launch_template_request(spec, reservation())
    made = capacity.ensure_launch_template(ec2, request, rules.owner_tags(spec), log)
    again = capacity.ensure_launch_template(ec2, request, rules.owner_tags(spec), log)
    assert again["LaunchTemplateId"] == made["LaunchTemplateId"]
    assert gaps.calls["ec2.CreateLaunchTemplate"] == 1
    other = api_calls.create_launch_template_request({**spec, "capacity_reservation_id": BLOCK},
                                                     reservation(BLOCK, block=True))
    with pytest.raises(capacity.CapacityError, match="exists but cannot be adopted: CapacityReservationSpecification"):
        capacity.ensure_launch_template(ec2, other, rules.owner_tags(spec), log)
    assert launch_template_decision(made, "someone-else").reason == (
        "not this deployment's (tagged llm-on-eks.io/deployment=llama4-scout-gpu): left alone")


@pytest.mark.parametrize("deferrable", [False, True], ids=["in_worker", "deferred"])
def test_node_group_without_capacity_fails_at_once_saying_what_to_try(aws_env, gaps, capfd, deferrable):
    """p5 on demand, no capacity in the zone: the wait (up to 120 polls) ends at the first look
    that shows the health issue; the node group this run made is gone, with its launch template
    (the deferred run's node group is on an ODCR whose instances were taken meanwhile)."""
    conf = {**PLANS["gpu"], **CREATE}
    if deferrable:
        gaps.capacity_reservations[ODCR] = reservation(ODCR)
        conf["capacity_reservation_id"] = ODCR
        issue = "Could not launch On-Demand Instances. ReservationCapacityExceeded - The requested reservation does " \
                "not have sufficient compatible and available capacity for this request."
    else:
        issue = NO_CAPACITY
    gaps.fail_creation(conf["region"], "llm-inference", NODEGROUP, "AsgInstanceLaunchFailures", issue)
    result = run_dag(load("aws_provision" + ("_deferrable" if deferrable else "")), conf)
    assert result.states["provision.ensure_nodegroup"] == "failed"
    assert result.states["provision.ensure_system_nodegroup"] == "success"
    out = capfd.readouterr().out
    assert f"node group {NODEGROUP} did not become ACTIVE: AsgInstanceLaunchFailures: {issue}" in out
    assert ("free its instances, reserve more" if deferrable else "or reserve it: an On-Demand Capacity Reservation "
            "or a Capacity Block for ML, passed as capacity_reservation_id") in out
    assert "(the node group this run created was deleted)" in out
    # One look after the create (CREATING), one that shows the issue, one by the cleanup: not 120.
    assert gaps.calls["eks.DescribeNodegroup"] < 20
    assert inventory(aws_env, conf["region"])["nodegroups"] == [SYSTEM]
    ec2 = client(aws_env, "ec2", conf["region"])
    assert ec2.describe_launch_templates(**api_calls.launch_template_filter(TEMPLATE))["LaunchTemplates"] == []

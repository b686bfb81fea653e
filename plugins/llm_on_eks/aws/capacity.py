"""Reserved capacity for the accelerator nodes: an On-Demand Capacity Reservation (ODCR) or a
Capacity Block for ML, named by ``capacity_reservation_id``; which of the two is read from
DescribeCapacityReservations' ReservationType, never asked of the user.

A node group launches into one through a launch template that targets it (EKS user guide,
"Create a managed node group with Capacity Blocks for ML"; for an ODCR the same template without
the capacity-block market type), named after the node group, tagged like it, found by name and
adopted on a retry, deleted with it.

What preflight refuses, each with the reservation's id, the field, and what would work:

- a state other than ``active``. A Capacity Block still ``scheduled`` is refused with its start
  time, even one that starts within the hour: a node group made before the start gets launch
  failures until then (same EKS page), and a launch failure is what ends the node group's wait
  as a capacity failure (``waiters/eks.json``). Trigger again once it is active.
- an end (EndDate) within ``MIN_REMAINING``, a simple bound on how long the node group and the
  server take to come up, plus, for a Capacity Block, the 40 minutes before its end at which EKS
  scales the node group to zero (same EKS page);
- another instance type, too few available instances, a platform other than Linux/UNIX (the EKS
  AL2023 AMIs), or a zone none of the given subnets is in (EC2 user guide, "Launch instances using
  Capacity Blocks": an instance cannot launch into a subnet in another zone).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from llm_on_eks.aws import api_calls
from llm_on_eks.aws.network import tags_of
from llm_on_eks.aws.teardown import launch_template_decision
from llm_on_eks.plan.types import NodegroupSpec

MIN_REMAINING = timedelta(hours=1)
CAPACITY_BLOCK_SCALE_DOWN = timedelta(minutes=40)
# The template fields an adopted launch template must carry as this run would create them.
TEMPLATE_FIELDS = ("InstanceType", "BlockDeviceMappings", "MetadataOptions", "CapacityReservationSpecification",
                   "InstanceMarketOptions")


class CapacityError(ValueError):
    """The reservation or the launch template cannot be used; the message says why and what would."""


def kind(reservation: dict[str, Any]) -> str:
    return "Capacity Block" if api_calls.is_capacity_block(reservation) else "On-Demand Capacity Reservation"


def describe_reservation(ec2, reservation_id: str) -> dict[str, Any]:
    """The reservation as EC2 describes it now; CapacityError when the account cannot see it."""
    from botocore.exceptions import ClientError

    try:
        found = ec2.describe_capacity_reservations(
            **api_calls.capacity_reservation_request(reservation_id))["CapacityReservations"]
    except ClientError as exc:
        # As hashicorp/terraform-provider-aws reads it: this code means the reservation is gone.
        if exc.response["Error"]["Code"] != "InvalidCapacityReservationId.NotFound":
            raise
        found = []
    if not found:
        raise CapacityError(f"capacity_reservation_id {reservation_id}: no such capacity reservation in this "
                            "region (or it is not shared with this account)")
    return found[0]


def reservation_problems(reservation: dict[str, Any], nodegroup: NodegroupSpec, subnet_zones: list[str] | None,
                         now: datetime) -> list[str]:
    """Why the node group cannot launch into the reservation; empty when it can. ``subnet_zones``:
    the zones of the given subnets, None when none are given (a network is made to fit)."""
    name = f"capacity_reservation_id {reservation['CapacityReservationId']} ({kind(reservation)})"
    problems = []
    state, start, end = reservation.get("State"), reservation.get("StartDate"), reservation.get("EndDate")
    if state == "scheduled" and start:
        problems.append(f"{name}: State is scheduled, it starts at {start:%Y-%m-%d %H:%M %Z}; trigger again "
                        "once it is active")
    elif state != "active":
        problems.append(f"{name}: State is {state}; only an active reservation launches instances")
    needed = MIN_REMAINING + (CAPACITY_BLOCK_SCALE_DOWN if api_calls.is_capacity_block(reservation) else timedelta())
    if end and end - now < needed:
        problems.append(f"{name}: EndDate is {end:%Y-%m-%d %H:%M %Z}, less than {needed.total_seconds() / 60:.0f} "
                        "minutes from now, too soon for the nodes and the server to come up and serve; extend "
                        "it, or reserve a later window")
    instance_type = nodegroup["instance_type"]
    if reservation.get("InstanceType") != instance_type:
        problems.append(f"{name}: InstanceType is {reservation.get('InstanceType')}, the node group needs "
                        f"{instance_type}; reserve {instance_type}, or deploy a profile or instance_type of "
                        f"{reservation.get('InstanceType')}")
    available, desired = reservation.get("AvailableInstanceCount", 0), nodegroup["scaling"]["desired_size"]
    if available < desired:
        problems.append(f"{name}: AvailableInstanceCount is {available} (of {reservation.get('TotalInstanceCount')}), "
                        f"the node group needs {desired}; free its instances or reserve more")
    zone = reservation.get("AvailabilityZone")
    if subnet_zones is not None and zone not in subnet_zones:
        problems.append(f"{name}: AvailabilityZone is {zone}, and the subnet_ids are in {', '.join(subnet_zones)}; "
                        f"add a subnet in {zone}")
    if reservation.get("InstancePlatform") != "Linux/UNIX":
        problems.append(f"{name}: InstancePlatform is {reservation.get('InstancePlatform')}; the EKS AL2023 AMIs "
                        "need Linux/UNIX")
    return problems


def summary(reservation: dict[str, Any]) -> str:
    end = reservation.get("EndDate")
    return (f"{reservation['CapacityReservationId']}: {kind(reservation)}, {reservation.get('State')} in "
            f"{reservation.get('AvailabilityZone')} until {f'{end:%Y-%m-%d %H:%M %Z}' if end else 'cancelled'}, "
            f"{reservation.get('AvailableInstanceCount')} of {reservation.get('TotalInstanceCount')} "
            f"{reservation.get('InstanceType')} available")


def find_launch_template(ec2, name: str) -> dict[str, Any] | None:
    found = ec2.describe_launch_templates(**api_calls.launch_template_filter(name))["LaunchTemplates"]
    return found[0] if found else None


def launch_template_problems(template: dict[str, Any], data: dict[str, Any], want: dict[str, Any],
                             owner: dict[str, str]) -> list[str]:
    """Why an existing launch template of our name cannot be adopted: it is not tagged as the
    deployment's, or its default version's ``data`` differs from the ``want``ed in a field the
    template is made for. Empty when it can."""
    tags = tags_of(template)
    if any(tags.get(k) != v for k, v in owner.items()):
        return [f"it is not tagged {', '.join(f'{k}={v}' for k, v in owner.items())} (someone else's launch "
                "template has this name)"]
    return [f"{field} is {data.get(field)}, the plan needs {want.get(field)}" for field in TEMPLATE_FIELDS
            if data.get(field) != want.get(field)]


def ensure_launch_template(ec2, request: dict[str, Any], owner: dict[str, str], log: logging.Logger) -> dict[str, Any]:
    """The launch template ``request`` creates: found by name and adopted when it is the
    deployment's and fits, created when missing; CapacityError when one of the name cannot be used."""
    from botocore.exceptions import ClientError

    name = request["LaunchTemplateName"]
    template = find_launch_template(ec2, name)
    if template is None:
        try:
            template = ec2.create_launch_template(**request)["LaunchTemplate"]
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "InvalidLaunchTemplateName.AlreadyExistsException":
                raise
            template = find_launch_template(ec2, name)  # another try made it meanwhile: judged as found
        else:
            log.info("created launch template %s (%s)", name, template["LaunchTemplateId"])
            return template
    data = ec2.describe_launch_template_versions(LaunchTemplateId=template["LaunchTemplateId"], Versions=["$Default"])[
        "LaunchTemplateVersions"][0]["LaunchTemplateData"]
    problems = launch_template_problems(template, data, request["LaunchTemplateData"], owner)
    if problems:
        raise CapacityError(f"launch template {name} exists but cannot be adopted: {'; '.join(problems)} "
                            "(teardown_deployment removes the deployment's node group and its launch template)")
    log.info("adopted launch template %s (%s)", name, template["LaunchTemplateId"])
    return template


def remove_launch_template(ec2, name: str, deployment: str, log: logging.Logger,
                           dry_run: bool = False) -> dict[str, str] | None:
    """The launch template of a node group that is gone or going: deleted when it is the
    deployment's (in a dry run, said so); None when there is none."""
    template = find_launch_template(ec2, name)
    decision = launch_template_decision(template, deployment)
    if template is None:
        return None
    if not decision.delete or dry_run:
        return {"name": name, "action": ("would delete: " if decision.delete else "") + decision.reason}
    ec2.delete_launch_template(LaunchTemplateId=template["LaunchTemplateId"])
    log.info("deleted launch template %s (%s)", name, decision.reason)
    return {"name": name, "action": "deleted"}

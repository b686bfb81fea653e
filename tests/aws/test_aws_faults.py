"""The AWS steps against the faults a real account answers with, on the wire: throttling, 500 and
503, slow answers, connections dropped before the request went on, and answers lost after a
create took effect (local_stack/aws_faults.py, a loopback proxy in front of the moto server).

The AWS connection is a user's: the provider's default retries, not the other tests' single
attempt. So botocore's retry handler meets each fault as it would AWS's and resends; a create
resent after its answer was lost meets what the first one made, which the step adopts (AWS keeps
one by name) or finds and deletes (an EC2 VPC, a name only in tags). Steps run as one run's try
would (``run_step``); what is left is read from moto's own listings. The EKS add-on and FSx
association calls are answered by the client-side gap filler (moto has none), before the wire:
they meet the step-level faults of tests/aws/test_retry_after_failure.py instead.
"""

from __future__ import annotations

import itertools
import json
import os

import pytest

from llm_on_eks.plan import build_plan
from local_stack.aws_faults import AwsFaultProxy, Fault
from tests.aws.test_concurrent_runs import CONF, OURS, REGION, STEPS, run_step
from tests.aws.test_empty_account import holdings

# Every create the steps send over the wire, and the reads each step's wait and look-again make.
CREATES = ("ec2.CreateVpc", "ec2.CreateSubnet", "ec2.CreateInternetGateway", "ec2.AllocateAddress",
           "ec2.CreateNatGateway", "ec2.CreateRouteTable", "iam.CreateRole", "eks.CreateCluster",
           "eks.CreateNodegroup", "s3.CreateBucket", "fsx.CreateFileSystem")
READS = ("ec2.DescribeVpcs", "ec2.DescribeSubnets", "iam.GetRole", "eks.DescribeCluster", "eks.DescribeNodegroup",
         "s3.HeadBucket", "fsx.DescribeFileSystems")


@pytest.fixture(scope="module")
def plan():
    return build_plan(CONF)


@pytest.fixture
def through_faults(aws_env, monkeypatch):
    """``through_faults(faults)``: the AWS connection goes through a fault proxy in front of moto,
    with the provider's default retries (a user's connection sets none)."""
    proxies = []

    def install(faults: list[Fault]) -> AwsFaultProxy:
        proxy = AwsFaultProxy(aws_env, faults, seed=7).__enter__()
        proxies.append(proxy)
        conn = json.loads(os.environ["AIRFLOW_CONN_AWS_DEFAULT"])
        conn["extra"] = {"endpoint_url": proxy.base_url}
        monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps(conn))
        return proxy

    yield install
    for proxy in proxies:
        proxy.__exit__(None, None, None)


def provision(plan) -> dict:
    return {task_id: run_step(plan, task_id, OURS) for task_id in STEPS}


def test_each_step_rides_out_faults_on_each_of_its_calls(aws_env, plan, through_faults):
    # Each create's answer is first lost after it took effect, then its resend meets a passing
    # fault; each read meets one passing fault. Every kind lands on several steps.
    passing = itertools.cycle(("throttle", "500", "503", "slow", "drop"))
    faults = [*(Fault(operation, "lost") for operation in CREATES),
              *(Fault(operation, next(passing), delay_s=0.5) for operation in (*CREATES, *READS))]
    proxy = through_faults(faults)

    done = provision(plan)

    assert sorted(proxy.injected) == sorted((f.operation, f.kind) for f in faults), proxy.seen
    held = holdings(aws_env, REGION)
    assert held["clusters"] == ["llm-inference"] and held["nodegroups"] == [plan["system_nodegroup"]["name"]]
    assert len(held["file_systems"]) == 1 and held["buckets"] == [plan["storage"]["artifact_bucket"]]
    network = done["provision.ensure_network"]
    assert held["vpcs"] == [network["vpc_id"]], (held, network)
    assert held["subnets"] == sorted(network["public_subnet_ids"] + network["private_subnet_ids"]), (held, network)
    assert (held["nat_gateways"], held["addresses"], held["internet_gateways"]) == (1, 1, 1), held
    assert held["route_tables"] == 2, held  # the public and the private one
    # A role's name is unique in the account: made once, or refused and adopted.
    assert {role["name"] for role in done["provision.ensure_roles"].values()} <= set(held["roles"])

"""The end-to-end run needs every real part at once: the moto server and its gap filler (tests/aws),
the local control plane and the vLLM CPU server (both registered in tests/conftest.py)."""

import json
import uuid
from pathlib import Path

import pytest

from tests.aws.conftest import aws_env, gaps, moto_url  # noqa: F401
from tests.integration.test_sandbox_cluster import wait_for


@pytest.fixture
def namespace(sandbox_cluster):
    """A fresh namespace; afterwards every release in it, it, and the volumes bound into it go."""
    from kubernetes import client as k8s

    name = f"e2e-{uuid.uuid4().hex[:6]}"
    yield name
    releases = sandbox_cluster.helm_run("list", "--namespace", name, "--short").stdout.split()
    for release in releases:
        sandbox_cluster.helm_run("uninstall", release, "--namespace", name, "--wait", check=False)
    core = k8s.CoreV1Api(sandbox_cluster.api_client())
    if any(ns.metadata.name == name for ns in core.list_namespace().items):
        core.delete_namespace(name)
        # Gone before the next test: its pods would still hold the sandbox's few GPU nodes.
        wait_for(lambda: name not in {ns.metadata.name for ns in core.list_namespace().items}, timeout_s=120,
                 what=f"namespace {name} deleted")
    for pv in core.list_persistent_volume().items:
        if pv.spec.claim_ref and pv.spec.claim_ref.namespace == name:
            core.delete_persistent_volume(pv.metadata.name)


# -- least privilege: what the tasks called, against the policy users give the Airflow identity --
POLICY = Path(__file__).parents[2] / "include" / "iam" / "airflow-policy.json"
# The runs whose calls, together, must use every action the policy grants (tests of this module).
COVERING = {"test_scout_from_nothing_to_a_tested_endpoint[gpu]", "test_scout_from_nothing_to_a_tested_endpoint[neuron]",
            "test_idle_and_manual_teardown"}
# Permissions a call needs beyond its own action (no call of their own in any log): the roles an
# EKS create passes (EKS user guide, "Amazon EKS cluster IAM role": iam:PassRole), the service-linked
# roles EKS and FSx make on first use (EKS user guide, "Using service-linked roles for Amazon EKS";
# FSx for Lustre user guide, "Using service-linked roles for Amazon FSx"), what linking a file
# system to S3 asks of the caller (FSx for Lustre user guide, "Linking your file system to an
# Amazon S3 bucket": iam:AttachRolePolicy and iam:PutRolePolicy on FSx's S3 role), and tagging on
# create, which every create of ours does (EC2 user guide, "Grant permission to tag Amazon EC2
# resources during creation": ec2:CreateTags; IAM user guide, "Permissions required to tag IAM
# roles": iam:TagRole; EKS user guide, "Tag your Amazon EKS resources": eks:TagResource).
TAGGED_ON_CREATE = {"ec2": ("AllocateAddress", "CreateInternetGateway", "CreateLaunchTemplate", "CreateNatGateway",
                            "CreateRouteTable", "CreateSubnet", "CreateVpc"), "eks": ("CreateAddon", "CreateCluster", "CreateNodegroup")}
IMPLIED = {
    "eks:CreateCluster": {"iam:PassRole", "iam:CreateServiceLinkedRole"},
    "eks:CreateNodegroup": {"iam:PassRole", "iam:CreateServiceLinkedRole"},
    "fsx:CreateFileSystem": {"iam:CreateServiceLinkedRole"},
    "fsx:CreateDataRepositoryAssociation": {"iam:CreateServiceLinkedRole", "iam:AttachRolePolicy",
                                            "iam:PutRolePolicy"},
    "iam:CreateRole": {"iam:TagRole"},
    **{f"ec2:{op}": {"ec2:CreateTags"} for op in TAGGED_ON_CREATE["ec2"]},
}
IMPLIED.update({f"eks:{op}": {*IMPLIED.get(f"eks:{op}", ()), "eks:TagResource"} for op in TAGGED_ON_CREATE["eks"]})


# Operations moto has no route for (its server answers 404 and logs nothing): counted by the gap
# filler's client-side hook, which sees every call, like the ones it answers itself.
MOTO_LACKS = {"eks": ("DescribeClusterVersions",)}
# The policy's statement of actions that only paths no covering run takes call (a resize, a failed
# run's tag, a quota never adjusted, what EKS or IAM made beside ours); each is checked to be called
# by the code instead (``test_the_policy_grants_only_what_the_runs_needed``).
SOME_PATHS = "OnlyOnSomePaths"


def policy_actions(sid: str | None = None) -> set[str]:
    """The actions the policy grants (those of statement ``sid`` only, when given)."""
    statements = [s for s in json.loads(POLICY.read_text())["Statement"] if sid in (None, s["Sid"])]
    return {action for s in statements for action in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])}


def needed_actions(url: str, filler) -> set[str]:
    """The actions the tasks called, read from the moto server's own request log (every key but the
    tests' own "testing" one), plus the operations the client-side gap filler answered in moto's
    place (they never reach moto's log), plus what those calls imply."""
    from local_stack import request_log
    from local_stack.aws_gaps import AwsGaps

    called = {c.action for c in request_log.calls(url) if c.access_key_id != "testing" and c.needs_permission}
    called |= {f"{service}:{operation}" for service, operations in (*AwsGaps.ANSWERED.items(), *MOTO_LACKS.items())
               for operation in operations if filler.calls[f"{service}.{operation}"]}
    return called | {implied for action in called for implied in IMPLIED.get(action, ())}


@pytest.fixture(scope="session")
def used_actions(request):
    """The actions the covering runs needed, gathered over the session (see ``within_policy``)."""
    from local_stack import request_log

    url = request.getfixturevalue("moto_url")
    request_log.start(url)
    gathered: dict[str, set[str]] = {}
    yield gathered
    request_log.stop(url)


@pytest.fixture(autouse=True)
def within_policy(request, used_actions):
    """After each end-to-end test: every AWS action its runs needed is in the policy."""
    from local_stack import request_log

    url, filler = request.getfixturevalue("moto_url"), request.getfixturevalue("gaps")
    request_log.reset(url)
    yield
    needed = needed_actions(url, filler)
    used_actions[request.node.name] = needed
    missing = sorted(needed - policy_actions())
    assert not missing, f"{POLICY.name} lacks actions the runs called: {missing}"

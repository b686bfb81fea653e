"""Two deploy runs that need the same things at once (two deployments on one cluster that does not
exist yet) make one of each: both find it missing, both create, and neither fails.

Each test runs the steps as two runs would, against the moto server, in one of two orders:

- the other run's whole step runs just before this run's create is sent (a botocore before-call
  hook): what AWS keeps one of by name (the cluster, a node group, an add-on, an IAM role, the
  bucket, the FSx data repository association) refuses this run's create, which then adopts; an
  FSx file system, a name only in tags, is made twice, and this run, looking again, finds the
  other's made first (FSx's CreationTime) and deletes its own;
- two runs in two threads, each create held until the other run reaches the same create, and
  each run's next call until both creates landed (``Rendezvous``): both make the network's VPC,
  gateways, subnets and route tables, and both look again after.

Operators run directly (``execute`` with a run's context), not through dag.test(): a step, not a
DAG, is what races, and a few seconds per test instead of a DAG run's half minute.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import botocore.handlers
import pytest
from botocore.awsrequest import AWSResponse

from llm_on_eks.aws import api_calls, network
from llm_on_eks.naming import CREATED_AT_KEY, CREATED_BY_RUN_KEY, cluster_tags
from llm_on_eks.operators.provision import (
    EnsureAddonsOperator,
    EnsureClusterOperator,
    EnsureNetworkOperator,
    EnsureNodegroupOperator,
    EnsureRolesOperator,
)
from llm_on_eks.operators.storage import EnsureArtifactBucketOperator, EnsureFsxOperator
from llm_on_eks.plan import build_plan
from tests.aws.conftest import CREATE, client

CONF = {"model": "llama4-scout", "accelerator": "gpu", "region": "us-west-2", **CREATE}
REGION, CLUSTER = CONF["region"], "llm-inference"
OURS, THEIRS = "manual__ours", "manual__theirs"


@pytest.fixture(scope="module")
def plan():
    return build_plan(CONF)


@pytest.fixture(scope="module")
def their_plan():
    """The other run's: another deployment on the same cluster."""
    return build_plan({**CONF, "deployment_name": "scout-theirs"})


def context(run_id: str, task_id: str) -> dict[str, Any]:
    """What the steps read of a task's context: the run (created-by-run tags) and the try (client tokens)."""
    return {"run_id": run_id, "ti": SimpleNamespace(dag_id="deploy_model", run_id=run_id, task_id=task_id,
                                                    try_number=1)}


STEPS = {
    "provision.ensure_network": (EnsureNetworkOperator, ("cluster", "nodegroup", "system_nodegroup")),
    "provision.ensure_roles": (EnsureRolesOperator, ("cluster", "nodegroup", "system_nodegroup", "storage")),
    "provision.ensure_cluster": (EnsureClusterOperator, ("cluster", "tags")),
    "provision.ensure_system_nodegroup": (EnsureNodegroupOperator, ("cluster",)),
    "provision.ensure_addons": (EnsureAddonsOperator, ("cluster", "tags")),
    "storage.ensure_artifact_bucket": (EnsureArtifactBucketOperator, ("storage", "tags")),
    "storage.ensure_fsx": (EnsureFsxOperator, ("storage", "tags", "cluster")),
}


def run_step(plan: dict[str, Any], task_id: str, run_id: str) -> Any:
    """One run's try of the step, with the plan's sections as the factory hands them; waits poll at once."""
    operator, sections = STEPS[task_id]
    kwargs = {name: plan[name] for name in sections}
    if task_id == "provision.ensure_system_nodegroup":
        kwargs["nodegroup"] = plan["system_nodegroup"]
    waits = {"waiter_delay": 0, "deferrable": False} if task_id not in (
        "provision.ensure_network", "provision.ensure_roles", "storage.ensure_artifact_bucket") else {}
    step = operator(task_id=task_id, target=plan["target"], aws=plan["aws"], **waits, **kwargs)
    return step.execute(context(run_id, task_id))


@pytest.fixture
def just_before(monkeypatch):
    """``just_before("eks.CreateCluster", action)``: ``action()`` runs once, right before the next
    such call is sent (its own calls pass through), ahead of the gap filler's answer to a call
    moto lacks."""

    def install(operation: str, action) -> None:
        service, name = operation.split(".")
        pending = [action]

        def hook(**_):
            if pending:
                pending.pop()()

        monkeypatch.setattr(botocore.handlers, "BUILTIN_HANDLERS",
                            [(f"before-call.{service}.{name}", hook), *botocore.handlers.BUILTIN_HANDLERS])

    return install


@pytest.fixture
def creation_times(monkeypatch):
    """FSx DescribeFileSystems with each file system's CreationTime, as AWS answers it (moto 5.2.5
    leaves it out): the time its create was answered, to the microsecond."""
    made: dict[str, datetime] = {}

    def created(parsed, **_):
        if "FileSystem" in parsed:
            made.setdefault(parsed["FileSystem"]["FileSystemId"], datetime.now(UTC))

    def described(parsed, **_):
        for fs in parsed.get("FileSystems", []):
            if fs["FileSystemId"] in made:
                fs["CreationTime"] = made[fs["FileSystemId"]]

    monkeypatch.setattr(botocore.handlers, "BUILTIN_HANDLERS", [
        *botocore.handlers.BUILTIN_HANDLERS, ("after-call.fsx.CreateFileSystem", created),
        ("after-call.fsx.DescribeFileSystems", described)])


def made_by(tags: dict[str, str] | list[dict[str, str]] | None) -> str | None:
    tags = {t["Key"]: t["Value"] for t in tags} if isinstance(tags, list) else tags or {}
    return tags.get(CREATED_BY_RUN_KEY)


@pytest.fixture
def cluster(aws_env, plan):
    """The network, roles and cluster, as an earlier run made them."""
    for task_id in ("provision.ensure_network", "provision.ensure_roles", "provision.ensure_cluster"):
        run_step(plan, task_id, "manual__earlier")
    return aws_env


def test_cluster_made_by_two_runs_at_once(aws_env, gaps, plan, their_plan, just_before):
    for task_id in ("provision.ensure_network", "provision.ensure_roles"):
        run_step(plan, task_id, "manual__earlier")
    theirs = {}
    just_before("eks.CreateCluster", lambda: theirs.update(run_step(their_plan, "provision.ensure_cluster", THEIRS)))
    ours = run_step(plan, "provision.ensure_cluster", OURS)
    assert (theirs["action"], ours["action"]) == ("created", "adopted")
    eks = client(aws_env, "eks", REGION)
    assert eks.list_clusters()["clusters"] == [CLUSTER]
    assert made_by(eks.describe_cluster(name=CLUSTER)["cluster"]["tags"]) == THEIRS
    assert gaps.calls["eks.CreateCluster"] == 2


def test_system_node_group_made_by_two_runs_at_once(cluster, gaps, plan, their_plan, just_before):
    name = plan["system_nodegroup"]["name"]
    theirs = {}
    just_before("eks.CreateNodegroup",
                lambda: theirs.update(run_step(their_plan, "provision.ensure_system_nodegroup", THEIRS)))
    ours = run_step(plan, "provision.ensure_system_nodegroup", OURS)
    assert (theirs["action"], ours["action"]) == ("created", "adopted")
    eks = client(cluster, "eks", REGION)
    assert eks.list_nodegroups(clusterName=CLUSTER)["nodegroups"] == [name]
    assert made_by(eks.describe_nodegroup(clusterName=CLUSTER, nodegroupName=name)["nodegroup"]["tags"]) == THEIRS
    assert gaps.calls["eks.CreateNodegroup"] == 2


def test_addons_made_by_two_runs_at_once(cluster, gaps, plan, their_plan, just_before):
    theirs = {}
    just_before("eks.CreateAddon", lambda: theirs.update(run_step(their_plan, "provision.ensure_addons", THEIRS)))
    ours = run_step(plan, "provision.ensure_addons", OURS)
    addons = plan["cluster"]["addons"]
    assert theirs["addons"] == dict.fromkeys(addons, "created") and ours["addons"] == dict.fromkeys(addons, "adopted")
    assert client(cluster, "eks", REGION).list_addons(clusterName=CLUSTER)["addons"] == sorted(addons)
    assert gaps.calls["eks.CreateAddon"] == len(addons) + 1  # theirs, and our first, refused


def test_roles_made_by_two_runs_at_once(aws_env, gaps, plan, their_plan, just_before):
    theirs = {}
    just_before("iam.CreateRole", lambda: theirs.update(run_step(their_plan, "provision.ensure_roles", THEIRS)))
    ours = run_step(plan, "provision.ensure_roles", OURS)
    assert {kind: r["action"] for kind, r in theirs.items()} == {"cluster": "created", "node": "created"}
    assert {kind: r["action"] for kind, r in ours.items()} == {"cluster": "adopted", "node": "adopted"}
    iam = client(aws_env, "iam", REGION)
    for kind in ("cluster", "node"):
        role = theirs[kind]["name"]
        assert [r["RoleName"] for r in iam.list_roles()["Roles"]].count(role) == 1
        assert made_by(iam.get_role(RoleName=role)["Role"]["Tags"]) == THEIRS
    assert gaps.calls["iam.CreateRole"] == 3  # theirs two, and our first, refused


def test_bucket_made_by_two_runs_at_once(aws_env, gaps, plan, their_plan, just_before):
    theirs = {}
    just_before("s3.CreateBucket", lambda: theirs.update(run_step(their_plan, "storage.ensure_artifact_bucket", THEIRS)))
    ours = run_step(plan, "storage.ensure_artifact_bucket", OURS)
    assert (theirs["action"], ours["action"]) == ("created", "adopted")
    s3 = client(aws_env, "s3", REGION)
    bucket = plan["storage"]["artifact_bucket"]
    assert [b["Name"] for b in s3.list_buckets()["Buckets"]] == [bucket]
    # Still tagged as its maker's: the run that adopted it wrote no tags over them.
    assert made_by(s3.get_bucket_tagging(Bucket=bucket)["TagSet"]) == THEIRS


def test_file_system_made_by_two_runs_at_once(cluster, gaps, plan, their_plan, just_before, creation_times):
    theirs = {}
    just_before("fsx.CreateFileSystem", lambda: theirs.update(run_step(their_plan, "storage.ensure_fsx", THEIRS)))
    ours = run_step(plan, "storage.ensure_fsx", OURS)
    assert (theirs["action"], ours["action"]) == ("created", "adopted")
    assert ours["file_system_id"] == theirs["file_system_id"]
    fsx = client(cluster, "fsx", REGION)
    # Ours was made (two creates), then deleted by id; theirs, made first, stays.
    assert gaps.calls["fsx.CreateFileSystem"] == 2 and gaps.calls["fsx.DeleteFileSystem"] == 1
    assert [fs["FileSystemId"] for fs in fsx.describe_file_systems()["FileSystems"]] == [theirs["file_system_id"]]
    assert made_by(fsx.describe_file_systems()["FileSystems"][0]["Tags"]) == THEIRS
    associations = fsx.describe_data_repository_associations()["Associations"]
    assert [(a["FileSystemId"], a["AssociationId"]) for a in associations] == [
        (theirs["file_system_id"], theirs["association_id"])]
    assert ours["association_id"] == theirs["association_id"]
    # Both say they use it: the teardown keeps it while either does.
    assert len(theirs["users"]) == 1 and len(ours["users"]) == 2 and theirs["users"][0] in ours["users"]


def test_file_system_link_made_by_two_runs_at_once(cluster, gaps, plan, their_plan, just_before):
    fsx_spec = plan["storage"]["fsx"]
    subnet = client(cluster, "eks", REGION).describe_cluster(name=CLUSTER)["cluster"]["resourcesVpcConfig"][
        "subnetIds"][0]
    fsx = client(cluster, "fsx", REGION)
    # The file system both adopt, made by an earlier run whose link was never made.
    made = fsx.create_file_system(**api_calls.create_file_system_request(
        fsx_spec, plan["tags"], subnet_id=subnet, created={CREATED_BY_RUN_KEY: "manual__earlier"}))["FileSystem"]
    theirs = {}
    just_before("fsx.CreateDataRepositoryAssociation",
                lambda: theirs.update(run_step(their_plan, "storage.ensure_fsx", THEIRS)))
    ours = run_step(plan, "storage.ensure_fsx", OURS)
    assert theirs["file_system_id"] == ours["file_system_id"] == made["FileSystemId"]
    associations = fsx.describe_data_repository_associations()["Associations"]
    assert [a["AssociationId"] for a in associations] == [theirs["association_id"]] == [ours["association_id"]]
    assert gaps.calls["fsx.CreateDataRepositoryAssociation"] == 2  # theirs, and ours, refused


# -- the network: two runs in two threads ---------------------------------------------------------

# The creates the rendezvous holds: what both runs may make.
NETWORK_CREATES = ("CreateVpc", "CreateInternetGateway", "CreateSubnet", "AllocateAddress", "CreateNatGateway",
                   "CreateRouteTable")


class Rendezvous:
    """Holds each run's n-th call of an operation until the other run reaches its n-th too, sends
    them one at a time (moto checks and stores without a lock), then holds both until both were
    answered: both runs found nothing before either created, and look again only after both did.
    A run that never reaches the call lets the other go after ``timeout`` seconds."""

    def __init__(self, timeout: float = 5.0) -> None:
        self.timeout = timeout
        self.lock = threading.Lock()
        self.sending = threading.Lock()
        self.barriers: dict[tuple[str, int, str], threading.Barrier] = {}

    def _meet(self, key: tuple[str, int, str]) -> None:
        with self.lock:
            barrier = self.barriers.setdefault(key, threading.Barrier(2, timeout=self.timeout))
        try:
            barrier.wait()
        except threading.BrokenBarrierError:
            pass

    def install(self, ec2, operations: tuple[str, ...]) -> None:
        count: Counter[str] = Counter()

        held: dict[str, bool] = {}

        def before(model, **_):
            count[model.name] += 1
            self._meet((model.name, count[model.name], "sent"))
            held[model.name] = self.sending.acquire(timeout=self.timeout)

        def after(model, **_):
            if held.pop(model.name, False):
                self.sending.release()
            self._meet((model.name, count[model.name], "answered"))

        for operation in operations:
            ec2.meta.events.register(f"before-call.ec2.{operation}", before)
            ec2.meta.events.register(f"after-call.ec2.{operation}", after)


class OneOfAKind:
    """Two EC2 rules AWS keeps and moto 5.2.5 does not, answered here (one at a time) before the
    call reaches moto: a VPC takes one internet gateway ("Network vpc-... already has an internet
    gateway attached", VPC user guide, "Internet gateways"), and a subnet one route table
    (Resource.AlreadyAssociated, VPC user guide, "Route tables": a subnet can be associated with
    only one route table at a time)."""

    def __init__(self, moto_url: str) -> None:
        self.ec2 = client(moto_url, "ec2", REGION)
        self.lock = threading.Lock()

    @staticmethod
    def _answer(code: str | None = None, message: str = "") -> tuple[AWSResponse, dict[str, Any]]:
        status = 400 if code else 200
        parsed: dict[str, Any] = {"ResponseMetadata": {"HTTPStatusCode": status}}
        if code:
            parsed["Error"] = {"Code": code, "Message": message}
        return AWSResponse("https://aws-rules.local", status, {}, None), parsed

    def attach_internet_gateway(self, context, **_):
        params = context["gaps_params"]
        with self.lock:
            attached = self.ec2.describe_internet_gateways(Filters=[
                {"Name": "attachment.vpc-id", "Values": [params["VpcId"]]}])["InternetGateways"]
            if attached:
                return self._answer("InvalidParameterValue",
                                    f"Network {params['VpcId']} already has an internet gateway attached")
            self.ec2.attach_internet_gateway(**params)
            return self._answer()

    def associate_route_table(self, context, model, **_):
        params = context["gaps_params"]
        with self.lock:
            tables = self.ec2.describe_route_tables(Filters=[
                {"Name": "association.subnet-id", "Values": [params["SubnetId"]]}])["RouteTables"]
            if tables:
                return self._answer("Resource.AlreadyAssociated", f"the specified association for route table "
                                    f"{tables[0]['RouteTableId']} conflicts with an existing association")
            answer = self.ec2.associate_route_table(**params)
            response, parsed = self._answer()
            return response, {**parsed, "AssociationId": answer["AssociationId"],
                              "AssociationState": answer["AssociationState"]}

    def install(self, ec2) -> None:
        ec2.meta.events.register("before-call.ec2.AttachInternetGateway", self.attach_internet_gateway)
        ec2.meta.events.register("before-call.ec2.AssociateRouteTable", self.associate_route_table)


def test_network_made_by_two_runs_at_once(aws_env, gaps):
    # Different zones, as two instance types offered in different zones would choose.
    zones = {OURS: ["us-west-2a", "us-west-2b"], THEIRS: ["us-west-2b", "us-west-2c"]}
    rendezvous, rules, made, failed = Rendezvous(), OneOfAKind(aws_env), {}, {}

    def run(run_id: str) -> None:
        ec2 = client(aws_env, "ec2", REGION)
        rendezvous.install(ec2, NETWORK_CREATES)
        rules.install(ec2)
        tags = {**cluster_tags(CLUSTER, REGION), CREATED_BY_RUN_KEY: run_id, CREATED_AT_KEY: "2026-01-01T00:00:00+00:00"}
        try:
            made[run_id] = network.Network(ec2, CLUSTER, tags, logging.getLogger(run_id)).ensure(zones[run_id])
        except Exception as exc:  # noqa: BLE001 - reported below, with the run
            failed[run_id] = exc

    threads = [threading.Thread(target=run, args=(run_id,)) for run_id in (OURS, THEIRS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert failed == {} and set(made) == {OURS, THEIRS}, failed
    # Both runs hand on the same network; what each made is its own.
    ours, theirs = ({k: v for k, v in made[run].items() if k != "made"} for run in (OURS, THEIRS))
    assert ours == theirs

    ec2, tagged = client(aws_env, "ec2", REGION), network.tag_filters(CLUSTER)
    vpcs = ec2.describe_vpcs(Filters=tagged)["Vpcs"]
    assert [v["VpcId"] for v in vpcs] == [ours["vpc_id"]]
    # Laid out in the zones of the run whose VPC was kept, whichever that was.
    kept_zones = network.zones_of(vpcs[0])
    assert kept_zones in (zones[OURS], zones[THEIRS]) and ours["zones"] == kept_zones
    subnets = ec2.describe_subnets(Filters=tagged)["Subnets"]
    assert len(subnets) == 4 and {s["AvailabilityZone"] for s in subnets} == set(kept_zones)
    gateways = ec2.describe_internet_gateways(Filters=tagged)["InternetGateways"]
    assert [[a["VpcId"] for a in g["Attachments"]] for g in gateways] == [[ours["vpc_id"]]]
    nats = ec2.describe_nat_gateways(Filters=[*tagged, {"Name": "state", "Values": ["pending", "available"]}])[
        "NatGateways"]
    assert [n["NatGatewayId"] for n in nats] == [ours["nat_gateway_id"]]
    assert len(ec2.describe_addresses(Filters=tagged)["Addresses"]) == 1
    tables = ec2.describe_route_tables(Filters=tagged)["RouteTables"]
    assert len(tables) == 2
    associated = Counter(a["SubnetId"] for t in tables for a in t["Associations"] if not a.get("Main"))
    assert associated == Counter(s["SubnetId"] for s in subnets)
    # Both runs really raced: each made a VPC, a gateway and route tables; one of each was deleted.
    assert gaps.calls["ec2.CreateVpc"] == 2 and gaps.calls["ec2.DeleteVpc"] == 1
    assert gaps.calls["ec2.CreateSubnet"] == 8  # each subnet twice, the second refused (its CIDR block taken)
    assert gaps.calls["ec2.CreateInternetGateway"] == 2 and gaps.calls["ec2.DeleteInternetGateway"] == 1
    assert gaps.calls["ec2.CreateNatGateway"] == 2 and gaps.calls["ec2.DeleteNatGateway"] == 1
    assert gaps.calls["ec2.CreateRouteTable"] == 4 and gaps.calls["ec2.DeleteRouteTable"] == 2
    assert gaps.calls["ec2.ReleaseAddress"] == 1

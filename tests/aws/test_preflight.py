"""Preflight against the moto server, through deploy_llama4 itself: a plan whose instance type is
not offered in its region fails before anything is created, GPU and Trainium2 alike.

moto does not implement EKS DescribeClusterVersions: that check must come back "unknown", never
"pass". Service Quotas (EC2 vCPU quotas, which moto lacks) come from the local account's table in
local_stack/aws_gaps.py. A quota or HF token check AWS does not answer stops the run unless
preflight_proceed_on_unknown is set. moto's offering data is AWS's: p5.48xlarge is not offered in
af-south-1; trn2.48xlarge is offered in us-east-2 (and ap-south-2) but not in us-west-2."""

from __future__ import annotations

import pytest

from tests.aws.conftest import CREATE, NODE_ROLE, ROLE, client, foreign_network
from tests.dag_runs import load_dag, run_dag

CREATES = ["eks.CreateCluster", "eks.CreateNodegroup", "eks.CreateAddon", "s3.CreateBucket",
           "fsx.CreateFileSystem", "fsx.CreateDataRepositoryAssociation"]


@pytest.fixture
def deploy_llama4(aws_env):
    return load_dag("dags/deploy_llama4.py", "deploy_llama4")


@pytest.mark.parametrize(("accelerator", "instance", "region"), [
    ("gpu", "p5.48xlarge", "af-south-1"),
    ("neuron", "trn2.48xlarge", "us-west-2"),
])
def test_instance_type_not_offered_fails_preflight_with_nothing_created(deploy_llama4, aws_env, gaps, capfd,
                                                                        accelerator, instance, region):
    result = run_dag(deploy_llama4, {"accelerator": accelerator, "region": region, **CREATE})
    assert result.states["provision.preflight"] == "failed"
    assert result.states["provision.ensure_cluster"] == "upstream_failed"
    assert result.states["storage.ensure_artifact_bucket"] == "upstream_failed"
    assert f"{instance} is not offered in {region}" in capfd.readouterr().out
    assert {op: gaps.calls[op] for op in CREATES} == dict.fromkeys(CREATES, 0)
    assert client(aws_env, "eks", region).list_clusters()["clusters"] == []
    assert client(aws_env, "s3", region).list_buckets()["Buckets"] == []
    assert client(aws_env, "fsx", region).describe_file_systems()["FileSystems"] == []


def test_unanswered_checks_are_unknown_never_passed(deploy_llama4):
    result = run_dag(deploy_llama4, {"region": "us-west-2", "dry_run": False})
    assert result.states["provision.preflight"] == "success"
    statuses = {c["check"]: c["status"] for c in result.xcoms["provision.preflight"]["checks"]}
    assert statuses == {"instance type offered": "pass", "cluster version supported": "unknown",
                        "on-demand vCPU quota": "pass", "HF token source": "pass", "cluster subnets": "pass",
                        "accelerator nodes": "pass"}


def test_quota_below_the_nodes_fails_preflight_with_nothing_created(deploy_llama4, gaps, capfd):
    gaps.quotas["L-417A185B"] = ("Running On-Demand P instances", 96.0)
    result = run_dag(deploy_llama4, {"region": "us-west-2", **CREATE})
    assert result.states["provision.preflight"] == "failed"
    assert "on-demand vCPU quota: Running On-Demand P instances: 96 vCPUs, 192 needed" in capfd.readouterr().out
    assert {op: gaps.calls[op] for op in CREATES} == dict.fromkeys(CREATES, 0)


def test_unknown_quota_stops_the_run_unless_told_to_proceed(deploy_llama4, gaps, capfd):
    gaps.fail("servicequotas.GetServiceQuota", "AccessDeniedException")
    result = run_dag(deploy_llama4, {"region": "us-west-2", **CREATE})
    assert result.states["provision.preflight"] == "failed"
    out = capfd.readouterr().out
    assert "preflight could not tell, nothing was created: on-demand vCPU quota: AWS did not answer" in out
    assert "preflight_proceed_on_unknown=true" in out
    assert {op: gaps.calls[op] for op in CREATES} == dict.fromkeys(CREATES, 0)

    # The operator's explicit go-ahead: preflight passes with the check recorded as unknown
    # (the cluster step after it fails, as create_cluster is off and there is no cluster).
    gaps.fail("servicequotas.GetServiceQuota", "AccessDeniedException")
    result = run_dag(deploy_llama4, {"region": "us-west-2", "dry_run": False, "preflight_proceed_on_unknown": True})
    assert result.states["provision.preflight"] == "success"
    statuses = {c["check"]: c["status"] for c in result.xcoms["provision.preflight"]["checks"]}
    assert statuses["on-demand vCPU quota"] == "unknown"
    assert "preflight on-demand vCPU quota unknown: proceeding" in capfd.readouterr().out


def test_missing_hf_token_fails_preflight(deploy_llama4, aws_env, gaps, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_HF_DEFAULT", '{"conn_type": "generic"}')
    result = run_dag(deploy_llama4, {"region": "us-west-2", **CREATE})
    assert result.states["provision.preflight"] == "failed"
    assert gaps.calls["eks.CreateCluster"] == 0 and gaps.calls["s3.CreateBucket"] == 0


def auto_mode_cluster(aws_env, region: str, name: str = "llm-inference") -> None:
    """Another team's cluster with EKS Auto Mode on, as the EKS API creates one (computeConfig,
    with storage and load balancing on too: EKS requires the three together)."""
    client(aws_env, "eks", region).create_cluster(
        name=name, version="1.33", roleArn=ROLE, resourcesVpcConfig={"subnetIds": foreign_network(aws_env, region)},
        computeConfig={"enabled": True, "nodePools": ["general-purpose", "system"], "nodeRoleArn": NODE_ROLE},
        storageConfig={"blockStorage": {"enabled": True}},
        kubernetesNetworkConfig={"elasticLoadBalancing": {"enabled": True}},
        accessConfig={"authenticationMode": "API"})


@pytest.mark.parametrize(("conf", "refusal"), [
    # A NodePool is Auto Mode's: named for a cluster this run would create (not in Auto Mode).
    ({"nodepool": "gpu", **CREATE, "cluster_name": "new-one"},
     "accelerator nodes: nodepool: NodePool gpu is named, and EKS cluster new-one does not exist yet"),
    # On Auto Mode a NodeClass selects reservations; a managed node group's launch template cannot.
    ({"capacity_reservation_id": "cr-0a1b2c3d4e5f60718"},
     "accelerator nodes: capacity_reservation_id: on EKS Auto Mode a NodeClass selects capacity reservations"),
], ids=["nodepool-off-auto-mode", "reservation-on-auto-mode"])
def test_auto_mode_refusals_come_before_anything_is_created(deploy_llama4, aws_env, gaps, capfd, conf, refusal):
    auto_mode_cluster(aws_env, "us-west-2")
    gaps.calls.clear()
    result = run_dag(deploy_llama4, {"region": "us-west-2", "cluster_name": "llm-inference", **conf})
    assert result.states["provision.preflight"] == "failed"
    assert refusal in capfd.readouterr().out
    assert {op: gaps.calls[op] for op in CREATES} == dict.fromkeys(CREATES, 0)

"""Preflight against a moto server, through deploy_llama4 itself: a plan whose instance type is
not offered in its region fails before anything is created.

moto does not implement EKS DescribeClusterVersions or Service Quotas: those checks must come
back "unknown", never "pass". (moto's offerings data also lacks trn2.48xlarge in every region.)"""

from __future__ import annotations

import json

import boto3
import pytest

from tests.dag_runs import run_dag

REGION_WITHOUT_P5 = "af-south-1"  # per moto's instance offering data, as per AWS's


@pytest.fixture(scope="module")
def moto_url():
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def deploy_llama4(airflow_db, moto_url, monkeypatch):
    from airflow.dag_processing.dagbag import DagBag

    from tests.conftest import ROOT

    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps({
        "conn_type": "aws", "login": "testing", "password": "testing", "extra": {"endpoint_url": moto_url}}))
    return DagBag(dag_folder=str(ROOT / "dags" / "deploy_llama4.py")).dags["deploy_llama4"]


def aws(moto_url: str, service: str, region: str):
    return boto3.client(service, endpoint_url=moto_url, region_name=region,
                        aws_access_key_id="testing", aws_secret_access_key="testing")


def test_instance_type_not_offered_fails_preflight_with_nothing_created(deploy_llama4, moto_url, capfd):
    result = run_dag(deploy_llama4, {"region": REGION_WITHOUT_P5, "create_cluster": True,
                                     "cluster_role_arn": "arn:aws:iam::123456789012:role/eks",
                                     "subnet_ids": ["subnet-0a", "subnet-0b"]})
    assert result.states["provision.preflight"] == "failed"
    assert result.states["provision.ensure_cluster"] == "upstream_failed"
    assert result.states["storage.ensure_artifact_bucket"] == "upstream_failed"
    assert "p5.48xlarge is not offered in af-south-1" in capfd.readouterr().out
    assert aws(moto_url, "eks", REGION_WITHOUT_P5).list_clusters()["clusters"] == []
    assert aws(moto_url, "s3", REGION_WITHOUT_P5).list_buckets()["Buckets"] == []
    assert aws(moto_url, "fsx", REGION_WITHOUT_P5).describe_file_systems()["FileSystems"] == []


def test_unanswered_checks_are_unknown_never_passed(deploy_llama4):
    result = run_dag(deploy_llama4, {"region": "us-west-2"})
    assert result.states["provision.preflight"] == "success"
    statuses = {c["check"]: c["status"] for c in result.xcoms["provision.preflight"]["checks"]}
    assert statuses == {"instance type offered": "pass", "cluster version supported": "unknown",
                        "on-demand vCPU quota": "unknown"}

"""Neuron compile and FSx staging Jobs on the local control plane, with their S3 markers in a
moto server: the Job lands on the right simulated node, completes, and a present marker makes
the next run a no-op.

kwok runs no containers, so nothing uploads the marker a real Job's last command writes: a
helper thread writes it once the Job has succeeded, exactly where the Job would have."""

from __future__ import annotations

import json
import uuid

import boto3
import pytest

from local_stack import job_markers
from tests.dag_runs import load_dag, run_dag

BUCKET = "llm-on-eks-weights-test"


@pytest.fixture(scope="module")
def moto_s3():
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    s3 = boto3.client("s3", endpoint_url=url, region_name="us-west-2", aws_access_key_id="testing",
                      aws_secret_access_key="testing")
    s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "us-west-2"})
    yield url, s3
    server.stop()


@pytest.fixture
def conf(sandbox_cluster, sandbox_k8s_conn, airflow_db, moto_s3, monkeypatch):
    url, _ = moto_s3
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps({
        "conn_type": "aws", "login": "testing", "password": "testing",
        "extra": {"endpoint_url": url, "region_name": "us-west-2"}}))
    return {"kubernetes_conn_id": "sandbox_k8s", "namespace": f"weights-{uuid.uuid4().hex[:6]}",
            "artifact_bucket": BUCKET, "subnet_ids": ["subnet-0abc"]}


@pytest.fixture(params=["", "_deferrable"], ids=["in-worker", "deferred"])
def dag(request):
    return load_dag("tests/dags/weight_steps/weight_steps.py", "test_weight_steps" + request.param)


@pytest.mark.parametrize(("profile", "task", "node"), [
    ("neuron", "neuron_compile", "trn2-48xlarge-0"),  # optimum-neuron
    ("neuron-nxdi", "neuron_compile", "trn2-48xlarge-0"),  # NxD Inference
    ("gpu", "stage_to_fsx", "m6i-2xlarge-0"),
])
def test_job_runs_once_on_the_right_node(sandbox_cluster, moto_s3, conf, dag, profile, task, node):
    from kubernetes import client

    _, s3 = moto_s3
    accelerator = profile.split("-")[0]
    conf = {**conf, "model": "llama4-scout", "accelerator": accelerator, "profile": profile}
    from llm_on_eks.plan import build_plan

    plan = build_plan({**conf, "cluster_name": "llm-inference", "region": "us-west-2"})
    key = plan["neuron"]["marker_key"] if accelerator == "neuron" else plan["storage"]["fsx"]["marker_key"]
    s3.delete_object(Bucket=BUCKET, Key=key)
    with job_markers.while_running(sandbox_cluster.api_client(), s3, conf["namespace"], deadline_s=120):
        first = run_dag(dag, conf)
    task = f"prepare_weights.{task}"  # the factory's group, as in the deploy DAG
    assert first.states[task] == "success", first.states
    result = first.xcoms[task]
    assert result["skipped"] is False and result["nodes"] == [node]
    (job,) = client.BatchV1Api(sandbox_cluster.api_client()).list_namespaced_job(conf["namespace"]).items
    container = job.spec.template.spec.containers[0]
    env = {e.name: e.value for e in container.env}
    if profile == "neuron-nxdi":
        # All 16 devices of the node, and the host memory the NxD Inference Llama 4 values reserve for tracing.
        assert container.resources.limits == {"aws.amazon.com/neuron": "16", "memory": "768Gi"}
        assert env["NEURON_COMPILED_ARTIFACTS"] == "/compiled"
    elif profile == "neuron":
        # optimum-neuron (ai-on-eks-charts PR #12): 384Gi for Scout, compiled into the S3 compile cache.
        assert container.resources.limits == {"aws.amazon.com/neuron": "16", "memory": "384Gi"}
        assert env["NEURON_COMPILE_CACHE_URL"] == plan["neuron"]["artifacts_uri"]
        assert "NEURON_COMPILED_ARTIFACTS" not in env
    else:
        assert job.spec.template.spec.volumes[0].persistent_volume_claim.claim_name == plan["storage"]["fsx"]["pvc_name"]

    second = run_dag(dag, conf)
    assert second.xcoms[task] == {"skipped": True, "marker": f"s3://{BUCKET}/{key}"}
    assert len(client.BatchV1Api(sandbox_cluster.api_client()).list_namespaced_job(conf["namespace"]).items) == 1

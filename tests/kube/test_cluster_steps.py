"""The cluster-side steps on the local control plane through dag.test(): HF token secret, Helm
deploy of our chart, wait ready, idempotent re-runs, and rollback of an unschedulable upgrade."""

from __future__ import annotations

import base64
import json
import time
import uuid

import pytest
import yaml

from tests.dag_runs import load_dag, run_dag

TOKEN = "hf_sandbox" + uuid.uuid4().hex  # a fake token, unique so any leak is found by search


@pytest.fixture
def cluster_conf(sandbox_cluster, sandbox_k8s_conn, airflow_db, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_HF_DEFAULT", json.dumps({"conn_type": "generic", "password": TOKEN}))
    namespace = f"serving-{uuid.uuid4().hex[:6]}"
    yield {"model": "llama-3-8b", "accelerator": "gpu", "kubernetes_conn_id": "sandbox_k8s",
           "namespace": namespace, "deployment_name": "llama3"}
    # The sandbox has one g5.2xlarge GPU: free it for the next test.
    from kubernetes import client

    sandbox_cluster.helm_run("uninstall", "llama3", "--namespace", namespace, check=False)
    core = client.CoreV1Api(sandbox_cluster.api_client())
    deadline = time.monotonic() + 60
    while core.list_namespaced_pod(namespace).items and time.monotonic() < deadline:
        time.sleep(0.5)
    core.delete_namespace(namespace)


@pytest.fixture(params=["", "_deferrable"], ids=["in-worker", "deferred"])
def dag(request):
    return load_dag("tests/dags/cluster_steps/cluster_steps.py", "test_cluster_steps" + request.param)


def release(sandbox_cluster, namespace: str, *what: str) -> str:
    return sandbox_cluster.helm_run(*what, "llama3", "--namespace", namespace).stdout


def test_deploy_is_ready_idempotent_and_keeps_the_token_out(sandbox_cluster, cluster_conf, dag, capfd):
    from kubernetes import client

    namespace = cluster_conf["namespace"]
    first = run_dag(dag, cluster_conf)
    assert first.state == "success", first.states
    api = sandbox_cluster.api_client()
    secret = client.CoreV1Api(api).read_namespaced_secret("hf-token", namespace)
    assert set(secret.data) == {"token"}
    assert base64.b64decode(secret.data["token"]).decode() == TOKEN  # stored once, not double-encoded
    (pod,) = client.CoreV1Api(api).list_namespaced_pod(namespace, label_selector="app.kubernetes.io/instance=llama3").items
    assert pod.spec.node_name == "g5-2xlarge-0" and pod.status.phase == "Running"
    assert first.xcoms["helm_deploy"]["revision"] == 1 and first.xcoms["hf_token_secret"]["action"] == "created"

    second = run_dag(dag, cluster_conf)
    assert second.state == "success", second.states
    assert second.xcoms["helm_deploy"] == {**first.xcoms["helm_deploy"], "previous": 1, "changed": False}
    assert second.xcoms["hf_token_secret"]["action"] == "unchanged"
    assert len(yaml.safe_load(release(sandbox_cluster, namespace, "history", "-o", "yaml"))) == 1

    values = release(sandbox_cluster, namespace, "get", "values", "--all")
    manifest = release(sandbox_cluster, namespace, "get", "manifest")
    logs = capfd.readouterr()
    for text in (json.dumps(first.xcoms), json.dumps(second.xcoms), values, manifest, logs.out, logs.err):
        assert TOKEN not in text


def test_unschedulable_upgrade_is_rolled_back(sandbox_cluster, cluster_conf, dag, capfd):
    from kubernetes import client

    namespace = cluster_conf["namespace"]
    assert run_dag(dag, cluster_conf).state == "success"
    # Plans fine (8x A10G hold Llama 3 8B) but no g5.48xlarge node exists: its pod cannot be placed.
    failed = run_dag(dag, {**cluster_conf, "instance_type": "g5.48xlarge", "tensor_parallel_size": 8})
    assert failed.states["wait_ready"] == "failed"
    output = capfd.readouterr().out
    assert "release llama3 pods cannot be scheduled: llama3-" in output
    assert "rolled back to revision 1" in output and "FailedScheduling" in output
    history = yaml.safe_load(release(sandbox_cluster, namespace, "history", "-o", "yaml"))
    assert [h["revision"] for h in history] == [1, 2, 3] and history[-1]["description"] == "Rollback to 1"
    deployment = client.AppsV1Api(sandbox_cluster.api_client()).read_namespaced_deployment("llama3", namespace)
    assert deployment.spec.template.spec.node_selector == {"node.kubernetes.io/instance-type": "g5.2xlarge"}

"""The cluster-side steps on the local control plane through dag.test(): HF token secret, Helm
deploy of our chart, wait ready, idempotent re-runs, and rollback of an unschedulable upgrade."""

from __future__ import annotations

import base64
import json
import time

import pytest
import yaml

from tests.dag_runs import load_dag, run_dag
from tests.kube.conftest import TOKEN


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
    # The namespace it created is labelled as ours, not as the first deployment's: others share it.
    labels = client.CoreV1Api(api).read_namespace(namespace).metadata.labels
    assert labels["llm-on-eks.io/managed-by"] == "llm-on-eks" and "llm-on-eks.io/deployment" not in labels

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


def test_unschedulable_upgrade_is_rolled_back(sandbox_cluster, cluster_conf, capfd):
    """Deferred; in the worker the same readiness check and the same failure handler run
    (``WaitReadyOperator._poll``)."""
    from kubernetes import client

    dag = load_dag("tests/dags/cluster_steps/cluster_steps.py", "test_cluster_steps_deferrable")
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


@pytest.fixture
def in_worker():
    return load_dag("tests/dags/cluster_steps/cluster_steps.py", "test_cluster_steps")


def test_a_release_another_chart_made_is_refused_and_left_alone(sandbox_cluster, cluster_conf, in_worker, tmp_path,
                                                                capfd):
    namespace = cluster_conf["namespace"]
    sandbox_cluster.helm_run("create", str(tmp_path / "other"))  # helm's own starter chart, offline
    sandbox_cluster.helm_run("install", "llama3", str(tmp_path / "other"), "--namespace", namespace,
                             "--create-namespace")
    result = run_dag(in_worker, cluster_conf)
    assert result.states["helm_deploy"] == "failed" and result.states["wait_ready"] == "upstream_failed"
    assert (f"Helm release {namespace}/llama3 exists and is not llm-on-eks's (made from chart other-0.1.0, "
            "not llm-on-eks's vllm-serving)") in capfd.readouterr().out
    history = yaml.safe_load(release(sandbox_cluster, namespace, "history", "-o", "yaml"))
    assert [(h["revision"], h["chart"], h["status"]) for h in history] == [(1, "other-0.1.0", "deployed")]


def test_a_release_left_pending_upgrade_by_a_killed_helm_is_waited_for_and_recovered(sandbox_cluster, cluster_conf,
                                                                                     in_worker, monkeypatch, tmp_path,
                                                                                     capfd):
    """A helm killed mid-upgrade leaves its revision pending-upgrade, and every later helm upgrade
    is refused ("another operation is in progress") until someone rolls it back. While the
    revision is young some helm may still be at work, so the step defers until it is old enough
    (``STUCK_AFTER_S``, lowered here from 480 s), then rolls it back."""
    import subprocess

    from llm_on_eks.kube import helm
    from llm_on_eks.kube.helm_values import CHART_DIR

    namespace = cluster_conf["namespace"]
    assert run_dag(in_worker, cluster_conf).state == "success"
    # An upgrade whose pod cannot be placed (no g5.48xlarge node), so helm --wait is still
    # waiting when it is killed, as a worker's death would kill it.
    values = tmp_path / "values.yaml"
    values.write_text(release(sandbox_cluster, namespace, "get", "values", "-o", "yaml"))
    upgrade = subprocess.Popen(
        [sandbox_cluster.helm, "--kubeconfig", sandbox_cluster.kubeconfig, "upgrade", "llama3", str(CHART_DIR),
         "--namespace", namespace, "--values", str(values), "--set",
         "nodeSelector.node\\.kubernetes\\.io/instance-type=g5.48xlarge", "--wait", "--timeout", "5m"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while yaml.safe_load(release(sandbox_cluster, namespace, "history", "-o", "yaml"))[-1]["status"] \
                != "pending-upgrade":
            assert time.monotonic() < deadline and upgrade.poll() is None, "helm never recorded pending-upgrade"
            time.sleep(0.5)
    finally:
        upgrade.kill()
        upgrade.wait(timeout=10)
    refused = sandbox_cluster.helm_run("upgrade", "llama3", str(CHART_DIR), "--namespace", namespace,
                                       "--values", str(values), check=False)
    assert refused.returncode != 0 and "another operation" in refused.stderr

    monkeypatch.setattr(helm, "STUCK_AFTER_S", 20)
    deferred = load_dag("tests/dags/cluster_steps/cluster_steps.py", "test_cluster_steps_deferrable")
    recovered = run_dag(deferred, cluster_conf)
    assert recovered.state == "success", recovered.states
    output = capfd.readouterr().out
    assert "release llama3: revision 2 is pending-upgrade since" in output and "waiting for it" in output
    assert "release llama3 is stuck pending-upgrade: rollback to revision 1" in output
    history = yaml.safe_load(release(sandbox_cluster, namespace, "history", "-o", "yaml"))
    assert history[-1]["status"] == "deployed" and history[-1]["description"] == "Rollback to 1"
    assert recovered.xcoms["helm_deploy"]["changed"] is False  # revision 1's values are the plan's

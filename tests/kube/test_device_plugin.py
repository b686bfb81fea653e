"""The accelerator device plugin on the local control plane through dag.test(): our DaemonSet is
applied once and its pods land on our labelled accelerator nodes only; a plugin someone else
runs is used instead of ours; nodes that never advertise their devices fail the step, named.

kwok nodes advertise their devices from the start (scripts/sandbox/nodes.yaml) and run no
containers: what is real here is the API server's validation of the objects, the DaemonSet
controller and scheduler placing the pods, and the step's reading of node allocatable."""

from __future__ import annotations

import json
import time
import uuid

import pytest

from tests.dag_runs import load_dag, run_dag

GPU_NODES = ["g5-2xlarge-0", "p4d-24xlarge-0", "p5-48xlarge-0", "p5-48xlarge-1"]


@pytest.fixture
def conf(sandbox_cluster, sandbox_k8s_conn, airflow_db, monkeypatch):
    return {"kubernetes_conn_id": "sandbox_k8s", "model": "llama4-scout"}


@pytest.fixture
def dag():
    return load_dag("tests/dags/device_plugin_steps/device_plugin_steps.py", "test_device_plugin")


def our_daemonset(api, accelerator: str):
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    from llm_on_eks.kube.device_plugins import NAMESPACE, plugin_name

    try:
        return client.AppsV1Api(api).read_namespaced_daemon_set(plugin_name(accelerator), NAMESPACE)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


@pytest.fixture
def without_our_plugins(sandbox_cluster):
    """Start from a cluster without our plugins (the end-to-end tests install them too)."""
    from kubernetes import client

    from llm_on_eks.kube.device_plugins import NAMESPACE, plugin_name

    api = sandbox_cluster.api_client()
    for accelerator in ("gpu", "neuron"):
        if our_daemonset(api, accelerator):
            client.AppsV1Api(api).delete_namespaced_daemon_set(plugin_name(accelerator), NAMESPACE,
                                                               propagation_policy="Foreground")
    deadline = time.monotonic() + 60
    while any(our_daemonset(api, a) for a in ("gpu", "neuron")):
        assert time.monotonic() < deadline, "our device plugin DaemonSets were not deleted"
        time.sleep(0.5)
    return api


def placed_pods(api, accelerator: str) -> list[str]:
    """Nodes of the DaemonSet's pods once the controller has placed and kwok has run them all."""
    from kubernetes import client

    from llm_on_eks.kube.device_plugins import NAMESPACE, PLUGINS

    deadline = time.monotonic() + 60
    while True:
        ds = our_daemonset(api, accelerator)
        status = ds.status
        if status.desired_number_scheduled and status.number_ready == status.desired_number_scheduled:
            break
        assert time.monotonic() < deadline, status
        time.sleep(0.5)
    pods = client.CoreV1Api(api).list_namespaced_pod(
        NAMESPACE, label_selector=f"app.kubernetes.io/name={PLUGINS[accelerator]['name']}").items
    return sorted(pod.spec.node_name for pod in pods)


@pytest.mark.parametrize(("accelerator", "nodes", "advertising"), [
    ("gpu", GPU_NODES, ["p5-48xlarge-0", "p5-48xlarge-1"]),
    ("neuron", ["trn2-48xlarge-0"], ["trn2-48xlarge-0"]),
])
def test_plugin_applied_once_onto_our_accelerator_nodes(sandbox_cluster, conf, dag, without_our_plugins,
                                                        accelerator, nodes, advertising):
    from kubernetes import client

    api = without_our_plugins
    first = run_dag(dag, {**conf, "accelerator": accelerator})
    assert first.state == "success", first.states
    assert first.xcoms["device_plugin"]["action"] == "created"
    assert first.xcoms["device_plugin"]["nodes"] == advertising
    assert placed_pods(api, accelerator) == nodes  # never the system or the other accelerator's nodes
    ds = our_daemonset(api, accelerator)
    assert ds.spec.template.spec.priority_class_name == "system-node-critical"
    if accelerator == "neuron":  # the plugin annotates pods and patches node status: its RBAC
        account = ds.spec.template.spec.service_account_name
        binding = client.RbacAuthorizationV1Api(api).read_cluster_role_binding(account)
        assert [(s.name, s.namespace) for s in binding.subjects] == [(account, "kube-system")]

    second = run_dag(dag, {**conf, "accelerator": accelerator})
    assert second.state == "success", second.states
    assert second.xcoms["device_plugin"]["action"] == "unchanged"
    assert our_daemonset(api, accelerator).metadata.generation == ds.metadata.generation

    # An older plugin (ours from an earlier release, or edited by hand) is brought to the pinned one.
    pinned = ds.spec.template.spec.containers[0].image
    ds.spec.template.spec.containers[0].image = pinned.rsplit(":", 1)[0] + ":0.0.1"
    client.AppsV1Api(api).replace_namespaced_daemon_set(ds.metadata.name, ds.metadata.namespace, ds)
    third = run_dag(dag, {**conf, "accelerator": accelerator})
    assert third.xcoms["device_plugin"]["action"] == "updated"
    assert our_daemonset(api, accelerator).spec.template.spec.containers[0].image == pinned


def test_a_plugin_someone_else_runs_is_used(sandbox_cluster, conf, dag, without_our_plugins):
    from kubernetes import client

    api, namespace = without_our_plugins, f"gpu-operator-{uuid.uuid4().hex[:6]}"
    client.CoreV1Api(api).create_namespace({"metadata": {"name": namespace}})
    labels = {"name": "nvidia-device-plugin-ds"}
    client.AppsV1Api(api).create_namespaced_daemon_set(namespace, {
        "metadata": {"name": "nvidia-device-plugin-daemonset"},
        "spec": {"selector": {"matchLabels": labels}, "template": {"metadata": {"labels": labels}, "spec": {
            "nodeSelector": {"example.com/nowhere": "true"},
            "containers": [{"name": "plugin", "image": "nvcr.io/nvidia/k8s-device-plugin:v0.17.1"}]}}}})
    try:
        result = run_dag(dag, {**conf, "accelerator": "gpu"})
        assert result.state == "success", result.states
        assert result.xcoms["device_plugin"]["daemonset"] == f"{namespace}/nvidia-device-plugin-daemonset"
        assert our_daemonset(api, "gpu") is None
    finally:  # gone before the next test looks for plugins (namespace deletion is asynchronous)
        apps = client.AppsV1Api(api)
        apps.delete_namespaced_daemon_set("nvidia-device-plugin-daemonset", namespace)
        deadline = time.monotonic() + 60
        while apps.list_namespaced_daemon_set(namespace).items and time.monotonic() < deadline:
            time.sleep(0.5)
        client.CoreV1Api(api).delete_namespace(namespace)


def test_nodes_without_devices_fail_the_step_by_name(sandbox_cluster, conf, dag, capfd):
    # Plans fine, but the sandbox has no p5en.48xlarge node: nothing can advertise the GPUs.
    result = run_dag(dag, {**conf, "accelerator": "gpu", "instance_type": "p5en.48xlarge"})
    assert result.states["device_plugin"] == "failed"
    output = capfd.readouterr().out
    assert "0 of 1 node(s) advertise nvidia.com/gpu after 5 s" in output
    assert "no node is labelled llm-on-eks.io/accelerator=gpu,node.kubernetes.io/instance-type=p5en.48xlarge" in output
    assert "pod kube-system/llm-on-eks-nvidia-device-plugin-" in output  # what the plugin's pods are doing


@pytest.fixture
def namespace_only_credentials(sandbox_cluster, conf, monkeypatch, tmp_path):
    """A kubeconfig for a ServiceAccount that may edit one namespace and nothing cluster-wide,
    as a shared cluster's tenants get; the connection sandbox_k8s uses it."""
    import yaml
    from kubernetes import client

    api, namespace = sandbox_cluster.api_client(), f"tenant-{uuid.uuid4().hex[:6]}"
    core = client.CoreV1Api(api)
    core.create_namespace({"metadata": {"name": namespace}})
    core.create_namespaced_service_account(namespace, {"metadata": {"name": "deployer"}})
    client.RbacAuthorizationV1Api(api).create_namespaced_role_binding(namespace, {
        "metadata": {"name": "deployer"}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "edit"},
        "subjects": [{"kind": "ServiceAccount", "name": "deployer", "namespace": namespace}]})
    token = core.create_namespaced_service_account_token(
        "deployer", namespace, {"spec": {"expirationSeconds": 3600}}).status.token
    kubeconfig = yaml.safe_load(open(sandbox_cluster.kubeconfig))
    kubeconfig["users"] = [{"name": "deployer", "user": {"token": token}}]
    for context in kubeconfig["contexts"]:
        context["context"]["user"] = "deployer"
    path = tmp_path / "deployer.kubeconfig"
    path.write_text(yaml.safe_dump(kubeconfig))
    monkeypatch.setenv("AIRFLOW_CONN_SANDBOX_K8S", json.dumps(
        {"conn_type": "kubernetes", "extra": {"kube_config_path": str(path)}}))
    yield {**conf, "namespace": namespace}
    core.delete_namespace(namespace)


def test_namespace_only_credentials_report_unknown_instead_of_failing(sandbox_cluster, namespace_only_credentials,
                                                                     dag, capfd):
    result = run_dag(dag, {**namespace_only_credentials, "accelerator": "neuron"})
    assert result.state == "success", result.states
    step = result.xcoms["device_plugin"]
    assert step["daemonset"] is None and step["nodes"] == "unknown"
    account = f"system:serviceaccount:{namespace_only_credentials['namespace']}:deployer"
    assert step["action"].startswith("not allowed to look for or install a device plugin") and account in step["action"]
    output = capfd.readouterr().out
    assert "whether the nodes advertise aws.amazon.com/neuron is unknown" in output and 'cannot list resource "nodes"' in output

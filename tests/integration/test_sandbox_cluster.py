"""The local control plane behaves like an EKS cluster with accelerator node groups."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from tests.integration.sandbox_cluster import SCRIPT

POLL_S = 0.5


def wait_for(predicate, timeout_s: float = 60, what: str = "condition"):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(POLL_S)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")


def deployment(name: str, resources: dict, *, node_type: str, tolerate: str | None, scheduler: str | None = None) -> dict:
    pod_spec = {
        "nodeSelector": {"node.kubernetes.io/instance-type": node_type},
        "containers": [{"name": "vllm", "image": "vllm/vllm-openai:v0.32.0",
                        "resources": {"requests": resources, "limits": resources}}],
    }
    if tolerate:
        pod_spec["tolerations"] = [{"key": tolerate, "operator": "Exists", "effect": "NoSchedule"}]
    if scheduler:
        pod_spec["schedulerName"] = scheduler
    return {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}}, "spec": pod_spec}},
    }


def pods_of(api, namespace: str, app: str):
    from kubernetes import client

    return client.CoreV1Api(api).list_namespaced_pod(namespace, label_selector=f"app={app}").items


def events_of(api, namespace: str, pod_name: str) -> list[tuple[str, str]]:
    from kubernetes import client

    events = client.CoreV1Api(api).list_namespaced_event(namespace, field_selector=f"involvedObject.name={pod_name}")
    return [(e.reason, e.message) for e in events.items]


def create(api, namespace: str, manifest: dict) -> None:
    from kubernetes import utils

    utils.create_from_dict(api, manifest, namespace=namespace)


def test_nodes_mirror_the_eks_node_groups(api):
    from kubernetes import client

    nodes = {n.metadata.labels["node.kubernetes.io/instance-type"]: n for n in client.CoreV1Api(api).list_node().items}
    p5, trn2 = nodes["p5.48xlarge"], nodes["trn2.48xlarge"]
    assert p5.status.allocatable["nvidia.com/gpu"] == "8"
    assert p5.status.allocatable["vpc.amazonaws.com/efa"] == "32"
    assert [(t.key, t.effect) for t in p5.spec.taints] == [("nvidia.com/gpu", "NoSchedule")]
    assert trn2.status.allocatable["aws.amazon.com/neuron"] == "16"
    assert trn2.status.allocatable["aws.amazon.com/neuroncore"] == "64"
    assert [(t.key, t.effect) for t in trn2.spec.taints] == [("aws.amazon.com/neuron", "NoSchedule")]
    assert p5.metadata.labels["eks.amazonaws.com/capacityType"] == "ON_DEMAND"
    for node in nodes.values():
        assert {c.type: c.status for c in node.status.conditions}["Ready"] == "True"


def test_eight_gpus_land_on_p5_and_become_available(api, namespace):
    from kubernetes import client

    create(api, namespace, deployment("fits", {"nvidia.com/gpu": "8"}, node_type="p5.48xlarge", tolerate="nvidia.com/gpu"))
    wait_for(lambda: (client.AppsV1Api(api).read_namespaced_deployment("fits", namespace).status.available_replicas or 0) == 1,
             what="Deployment available")
    (pod,) = pods_of(api, namespace, "fits")
    assert pod.spec.node_name in {"p5-48xlarge-0", "p5-48xlarge-1"}
    assert pod.status.phase == "Running"
    assert {c.type: c.status for c in pod.status.conditions}["Ready"] == "True"


def test_nine_gpus_stay_pending_with_failed_scheduling(api, namespace):
    create(api, namespace, deployment("too-big", {"nvidia.com/gpu": "9"}, node_type="p5.48xlarge", tolerate="nvidia.com/gpu"))
    pod = wait_for(lambda: next(iter(pods_of(api, namespace, "too-big")), None), what="pod created")
    reasons = wait_for(lambda: [m for r, m in events_of(api, namespace, pod.metadata.name) if r == "FailedScheduling"],
                       what="FailedScheduling event")
    assert "Insufficient nvidia.com/gpu" in reasons[0]
    assert pods_of(api, namespace, "too-big")[0].status.phase == "Pending"


def test_pod_without_the_toleration_is_not_placed_on_a_tainted_node(api, namespace):
    create(api, namespace, deployment("intolerant", {"nvidia.com/gpu": "1"}, node_type="p5.48xlarge", tolerate=None))
    pod = wait_for(lambda: next(iter(pods_of(api, namespace, "intolerant")), None), what="pod created")
    reasons = wait_for(lambda: [m for r, m in events_of(api, namespace, pod.metadata.name) if r == "FailedScheduling"],
                       what="FailedScheduling event")
    assert "untolerated taint" in reasons[0]
    assert pods_of(api, namespace, "intolerant")[0].spec.node_name is None


def test_neuron_pod_naming_an_absent_scheduler_stays_pending(api, namespace):
    # The ai-on-eks-charts Neuron values hard-code schedulerName: my-scheduler.
    create(api, namespace, deployment("neuron", {"aws.amazon.com/neuron": "16"}, node_type="trn2.48xlarge",
                                      tolerate="aws.amazon.com/neuron", scheduler="my-scheduler"))
    pod = wait_for(lambda: next(iter(pods_of(api, namespace, "neuron")), None), what="pod created")
    time.sleep(5)
    pod = pods_of(api, namespace, "neuron")[0]
    assert pod.status.phase == "Pending" and pod.spec.node_name is None
    assert events_of(api, namespace, pod.metadata.name) == []


def test_job_pods_complete(api, namespace):
    from kubernetes import client

    job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "stage"},
           "spec": {"backoffLimit": 0, "template": {"spec": {
               "restartPolicy": "Never", "nodeSelector": {"node.kubernetes.io/instance-type": "m6i.2xlarge"},
               "containers": [{"name": "stage", "image": "python:3.11-slim", "command": ["true"]}]}}}}
    create(api, namespace, job)
    wait_for(lambda: client.BatchV1Api(api).read_namespaced_job("stage", namespace).status.succeeded == 1,
             what="Job succeeded")


def lws(name: str, **leader_worker_template) -> dict:
    template = {"size": 2, "workerTemplate": {"spec": {"containers": [{"name": "vllm", "image": "vllm/vllm-openai:v0.32.0"}]}},
                **leader_worker_template}
    return {"apiVersion": "leaderworkerset.x-k8s.io/v1", "kind": "LeaderWorkerSet", "metadata": {"name": name},
            "spec": {"replicas": 1, "leaderWorkerTemplate": template}}


def test_leaderworkerset_is_accepted_and_a_wrong_field_rejected(api, namespace):
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    custom = client.CustomObjectsApi(api)
    args = ("leaderworkerset.x-k8s.io", "v1", namespace, "leaderworkersets")
    created = custom.create_namespaced_custom_object(*args, lws("good"), field_validation="Strict")
    assert created["spec"]["leaderWorkerTemplate"]["size"] == 2
    with pytest.raises(ApiException) as unknown:
        custom.create_namespaced_custom_object(*args, lws("unknown", sizee=2), field_validation="Strict")
    assert unknown.value.status == 400 and "sizee" in unknown.value.body
    with pytest.raises(ApiException) as wrong_type:
        custom.create_namespaced_custom_object(*args, lws("wrong-type", size="two"))
    # The LWS mutating webhook decodes the object first, before the schema would (422), as on EKS.
    assert wrong_type.value.status == 400 and "size" in wrong_type.value.body
    assert 'admission webhook \\"mleaderworkerset.kb.io\\" denied' in wrong_type.value.body


def test_helm_install_upgrade_rollback_uninstall(sandbox_cluster, namespace, tmp_path):
    chart = tmp_path / "probe"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text(yaml.safe_dump({"apiVersion": "v2", "name": "probe", "version": "0.1.0"}))
    (chart / "values.yaml").write_text("colour: red\n")
    (chart / "templates" / "cm.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}\ndata:\n  colour: {{ .Values.colour }}\n")
    helm = sandbox_cluster.helm_run
    ns = ["--namespace", namespace]

    def colour() -> str:
        from kubernetes import client

        return client.CoreV1Api(sandbox_cluster.api_client()).read_namespaced_config_map("probe", namespace).data["colour"]

    helm("install", "probe", str(chart), *ns, "--wait")
    assert colour() == "red"
    helm("upgrade", "probe", str(chart), *ns, "--set", "colour=blue")
    assert colour() == "blue"
    helm("rollback", "probe", "1", *ns)
    assert colour() == "red"
    history = yaml.safe_load(helm("history", "probe", *ns, "-o", "yaml").stdout)
    assert [h["revision"] for h in history] == [1, 2, 3]
    helm("uninstall", "probe", *ns)
    assert "probe" not in helm("list", *ns, "-q").stdout


def _listening_ports(pids: set[int]) -> set[int]:
    out = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True, check=True).stdout
    lines = [line for line in out.splitlines() if any(f"pid={pid}," in line for pid in pids)]
    assert all(line.split()[3].startswith("127.0.0.1:") for line in lines), lines  # loopback only
    return {int(line.split()[3].rsplit(":", 1)[1]) for line in lines}


@pytest.mark.integration
def test_down_leaves_no_process_and_no_port(tmp_path):
    """A second, throwaway cluster: `down` must stop every component and free every port."""
    env = {**os.environ, "SANDBOX_CLUSTER_NAME": "down-probe"}
    try:
        subprocess.run([str(SCRIPT), "up"], env=env, check=True, capture_output=True, timeout=300)
        kubeconfig = subprocess.run([str(SCRIPT), "kubeconfig"], env=env, check=True, capture_output=True,
                                    text=True).stdout.strip()
        named = {p.stem: int(p.read_text()) for p in (Path(kubeconfig).parent / "pids").glob("*.pid")}
        assert set(named) == {"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler",
                              "kwok-controller", "lws-controller-manager", "eks-authenticator"}
        assert len(_listening_ports({named["lws-controller-manager"]})) == 3  # webhooks, probes, metrics
        assert len(_listening_ports({named["eks-authenticator"]})) == 1
        pids = set(named.values())
        ports = _listening_ports(pids)
    finally:
        subprocess.run([str(SCRIPT), "down"], env=env, check=True, capture_output=True, timeout=120)
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text(), pid
    for port in ports:
        with socket.socket() as sock:
            assert sock.connect_ex(("127.0.0.1", port)) != 0, port

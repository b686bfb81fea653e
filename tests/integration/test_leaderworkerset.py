"""The LeaderWorkerSet controller manager of the local control plane: its webhooks default,
validate and label, its controller makes leader and worker pods that the scheduler places on
the two p5.48xlarge nodes, and our chart's 2-node release becomes ready through readiness.check."""

from __future__ import annotations

import datetime
import json
import subprocess

import pytest
import yaml

from tests.integration.test_sandbox_cluster import wait_for

GROUP = ("leaderworkerset.x-k8s.io", "v1")
NAME_LABEL = "leaderworkerset.sigs.k8s.io/name"
WORKER_INDEX_LABEL = "leaderworkerset.sigs.k8s.io/worker-index"
GROUP_INDEX_LABEL = "leaderworkerset.sigs.k8s.io/group-index"
P5_NODES = {"p5-48xlarge-0", "p5-48xlarge-1"}
GPU_POD = {
    "nodeSelector": {"node.kubernetes.io/instance-type": "p5.48xlarge"},
    "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
    "containers": [{"name": "vllm", "image": "vllm/vllm-openai:v0.32.0",
                    "resources": {"requests": {"nvidia.com/gpu": "8"}, "limits": {"nvidia.com/gpu": "8"}}}],
}


def gpu_lws(name: str, **spec) -> dict:
    return {"apiVersion": "/".join(GROUP), "kind": "LeaderWorkerSet", "metadata": {"name": name},
            "spec": {"replicas": 1, "leaderWorkerTemplate": {"size": 2, "workerTemplate": {"spec": GPU_POD}}, **spec}}


def custom(api):
    from kubernetes import client

    return client.CustomObjectsApi(api)


def lws_status(api, namespace: str, name: str) -> dict:
    return custom(api).get_namespaced_custom_object(*GROUP, namespace, "leaderworkersets", name).get("status", {})


def lws_pods(api, namespace: str, name: str):
    from kubernetes import client

    return client.CoreV1Api(api).list_namespaced_pod(namespace, label_selector=f"{NAME_LABEL}={name}").items


def test_two_pod_group_gets_a_leader_and_a_worker_on_the_two_p5_nodes(api, namespace):
    created = custom(api).create_namespaced_custom_object(*GROUP, namespace, "leaderworkersets", gpu_lws("pair"))
    # Defaults that only the mutating webhook sets (the CRD schema has none for them).
    assert created["spec"]["networkConfig"] == {"subdomainPolicy": "Shared"}
    assert created["spec"]["rolloutStrategy"]["rollingUpdateConfiguration"]["maxUnavailable"] == 1
    assert created["spec"]["leaderWorkerTemplate"]["restartPolicy"] == "RecreateGroupOnPodRestart"

    status = wait_for(lambda: (s := lws_status(api, namespace, "pair")).get("readyReplicas") == 1 and s,
                      timeout_s=90, what="LeaderWorkerSet readyReplicas == replicas")
    assert status["replicas"] == 1 and status["updatedReplicas"] == 1
    assert {c["type"]: c["status"] for c in status["conditions"]}["Available"] == "True"

    pods = {p.metadata.labels[WORKER_INDEX_LABEL]: p for p in lws_pods(api, namespace, "pair")}
    assert set(pods) == {"0", "1"}  # the pod webhook labels leader (0) and worker (1)
    leader, worker = pods["0"], pods["1"]
    assert leader.metadata.name == "pair-0" and worker.metadata.name == "pair-0-1"
    assert leader.metadata.labels[GROUP_INDEX_LABEL] == worker.metadata.labels[GROUP_INDEX_LABEL] == "0"
    assert {leader.spec.node_name, worker.spec.node_name} == P5_NODES
    for pod in (leader, worker):
        assert pod.status.phase == "Running"
        env = {e.name: e.value for e in pod.spec.containers[0].env}
        assert env["LWS_LEADER_ADDRESS"] == f"pair-0.pair.{namespace}"  # injected by the pod webhook
        assert env["LWS_GROUP_SIZE"] == "2"


def test_group_with_an_unplaceable_worker(api, namespace):
    """Size 3 needs three p5 nodes: one pod stays Unschedulable. LWS v0.7.0 still counts the group
    ready once its leader is: a worker StatefulSet counts as ready when its pods exist
    (statefulsetutils.StatefulsetReady), so readyReplicas alone does not show a pending worker."""
    lws = gpu_lws("trio")
    lws["spec"]["leaderWorkerTemplate"]["size"] = 3
    custom(api).create_namespaced_custom_object(*GROUP, namespace, "leaderworkersets", lws)
    wait_for(lambda: len(lws_pods(api, namespace, "trio")) == 3, what="leader and two workers created")
    pending = wait_for(lambda: [p for p in lws_pods(api, namespace, "trio") if p.status.phase == "Pending"
                                and any(c.reason == "Unschedulable" for c in p.status.conditions or [])],
                       what="an unschedulable pod")
    assert len(pending) == 1
    leader = next(p for p in lws_pods(api, namespace, "trio") if p.metadata.labels[WORKER_INDEX_LABEL] == "0")
    leader_running = leader.status.phase == "Running"
    wait_for(lambda: lws_status(api, namespace, "trio").get("readyReplicas", 0) == int(leader_running),
             what="readyReplicas following the leader")


def test_validating_webhook_rejects_what_the_schema_allows(api, namespace):
    from kubernetes.client.exceptions import ApiException

    # maxUnavailable and maxSurge both 0 would never roll: only the LWS webhook knows.
    bad = gpu_lws("stuck", rolloutStrategy={"type": "RollingUpdate",
                                            "rollingUpdateConfiguration": {"maxUnavailable": 0, "maxSurge": 0}})
    with pytest.raises(ApiException) as denied:
        custom(api).create_namespaced_custom_object(*GROUP, namespace, "leaderworkersets", bad)
    assert denied.value.status == 403  # how controller-runtime webhooks deny
    message = json.loads(denied.value.body)["message"]
    assert message.startswith('admission webhook "vleaderworkerset.kb.io" denied the request')
    assert "must not be 0 when `maxSurge` is 0" in message


@pytest.fixture
def fsx_volume(api, namespace):
    """Scout on GPU reads FSx-staged weights: the static PV and claim the storage step creates."""
    from kubernetes import client

    from llm_on_eks.kube.manifests import fsx_volume
    from llm_on_eks.kube.volumes import ensure_static_volume

    def create(plan):
        pv, pvc = fsx_volume(plan["storage"]["fsx"], namespace, {"file_system_id": "fs-0123456789abcdef0", "mount_name": "abcdefgh",
                                    "dns_name": "fs-0123456789abcdef0.fsx.us-west-2.amazonaws.com"})
        ensure_static_volume(api, pv, pvc)
        created.append(pv["metadata"]["name"])

    created = []
    yield create
    for name in created:
        client.CoreV1Api(api).delete_persistent_volume(name)


def install_chart(sandbox_cluster, namespace, fsx_volume, tmp_path, nodes: int) -> dict:
    """Our chart's LeaderWorkerSet for a multi-node Scout profile, installed as helm_deploy does."""
    from llm_on_eks.kube.helm_values import CHART_DIR, helm_values
    from llm_on_eks.plan import build_plan

    plan = build_plan({"cluster_name": "c1", "region": "us-west-2", "model": "llama4-scout", "accelerator": "gpu",
                       "namespace": namespace, "deployment_name": "scout"})
    plan["release"]["nodes"] = nodes  # no catalog profile is multi-node yet: as tests/kube/test_chart.py renders them
    values = helm_values(plan["release"])
    assert values["nodes"] == nodes and values["model"]["source"].startswith("pvc://")
    fsx_volume(plan)
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump(values))
    sandbox_cluster.helm_run("install", plan["kubernetes"]["release"], str(CHART_DIR), "--namespace", namespace,
                             "--values", str(path))
    return plan


def readiness_now(api, plan):
    from llm_on_eks.kube import readiness

    kube = plan["kubernetes"]
    return readiness.check(api, kube["namespace"], kube["release"], plan["release"]["nodes"] > 1,
                           datetime.datetime.now(datetime.UTC))


def test_chart_release_on_two_nodes_becomes_ready(sandbox_cluster, api, namespace, fsx_volume, tmp_path):
    plan = install_chart(sandbox_cluster, namespace, fsx_volume, tmp_path, nodes=2)
    release = plan["kubernetes"]["release"]
    wait_for(lambda: readiness_now(api, plan).ready, timeout_s=90, what="readiness.check(...).ready")
    assert readiness_now(api, plan).unschedulable == []
    pods = lws_pods(api, namespace, release)
    assert sorted(p.metadata.labels["role"] for p in pods) == ["leader", "worker"]
    assert {p.spec.node_name for p in pods} == P5_NODES
    sandbox_cluster.helm_run("uninstall", release, "--namespace", namespace, "--wait")
    wait_for(lambda: not lws_pods(api, namespace, release), what="the release's pods gone")


def test_chart_release_with_an_unplaceable_worker_is_not_ready(sandbox_cluster, api, namespace, fsx_volume, tmp_path):
    """Three nodes on two p5: LWS itself counts the group ready once the leader is, but
    readiness.check must not, and must name the worker the scheduler refuses."""
    plan = install_chart(sandbox_cluster, namespace, fsx_volume, tmp_path, nodes=3)
    release = plan["kubernetes"]["release"]
    state = wait_for(lambda: (s := readiness_now(api, plan)).unschedulable and s, timeout_s=90,
                     what="an unschedulable worker reported")
    assert not state.ready
    # The leader or a worker, whichever the scheduler placed last (a pod first refused while its
    # claim binds goes back in the queue behind the others).
    (stuck,) = state.unschedulable
    assert stuck.startswith(f"{release}-0") and "FailedScheduling" in state.detail
    sandbox_cluster.helm_run("uninstall", release, "--namespace", namespace, "--wait")
    wait_for(lambda: not lws_pods(api, namespace, release), what="the release's pods gone")


def test_status_names_the_lws_controller(sandbox_cluster):
    from tests.integration.sandbox_cluster import SCRIPT

    out = subprocess.run([str(SCRIPT), "status"], check=True, capture_output=True, text=True, timeout=60).stdout
    assert "lws-controller-manager: running (pid " in out and "webhooks https://127.0.0.1:" in out

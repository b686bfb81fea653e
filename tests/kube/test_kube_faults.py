"""The cluster-side steps against the faults a busy or restarting control plane answers with: 429
from API Priority and Fairness, 500 and 503, connections dropped before or after a request took
effect, an answer cut mid-body (local_stack/kube_faults.py, a TLS proxy in front of the local API
server). The steps' client retries them (``kube.access.RETRIES``); the run succeeds without an
Airflow retry (the test DAG has none) and leaves one of each. The steps poll rather than watch, so
a cut watch stream has no step to meet."""

from __future__ import annotations

import json

from local_stack.kube_faults import KubeFault, KubeFaultProxy
from tests.dag_runs import load_dag, run_dag
from tests.kube.conftest import TOKEN

FAULTS = [
    KubeFault("POST", r"^/api/v1/namespaces$", "429"),  # hf_token_secret makes the namespace
    KubeFault("PATCH", r"^/api/v1/namespaces/[^/]+$", "drop"),  # and labels it
    KubeFault("GET", r"/namespaces/[^/]+/secrets/hf-token$", "503"),
    KubeFault("POST", r"/namespaces/[^/]+/secrets$", "lost"),  # made; the resend meets 409
    KubeFault("GET", r"/apis/apps/v1/namespaces/[^/]+/deployments/", "cut"),  # helm reads, then wait_ready
    KubeFault("GET", r"/api/v1/namespaces/[^/]+/pods\?", "500"),  # wait_ready
]


def test_cluster_steps_ride_out_a_fault_on_each_kind_of_call(sandbox_cluster, cluster_conf, monkeypatch):
    from kubernetes import client

    with KubeFaultProxy(sandbox_cluster.kubeconfig, FAULTS) as proxy:
        monkeypatch.setenv("AIRFLOW_CONN_LLM_ON_EKS_FAULTY_K8S", json.dumps(
            {"conn_type": "kubernetes", "extra": {"kube_config_path": proxy.kubeconfig}}))
        result = run_dag(load_dag("tests/dags/cluster_steps/cluster_steps.py", "test_cluster_steps"),
                         {**cluster_conf, "kubernetes_conn_id": "llm_on_eks_faulty_k8s"})
    assert result.state == "success", result.states
    assert sorted(kind for _, kind in proxy.injected) == sorted(f.kind for f in FAULTS), (proxy.injected, proxy.seen)
    assert result.xcoms["hf_token_secret"]["action"] in ("created", "unchanged")
    namespace = cluster_conf["namespace"]
    core = client.CoreV1Api(sandbox_cluster.api_client())
    assert [s.metadata.name for s in core.list_namespaced_secret(namespace).items
            if s.metadata.name == "hf-token"] == ["hf-token"]
    (pod,) = core.list_namespaced_pod(namespace, label_selector="app.kubernetes.io/instance=llama3").items
    assert pod.status.phase == "Running"
    assert result.xcoms["helm_deploy"]["revision"] == 1
    assert TOKEN not in json.dumps(result.xcoms)

"""The service-proxy path end to end on the local control plane: the checks reach vLLM through
``/api/v1/namespaces/<ns>/services/<svc>:8000/proxy`` with the kubeconfig's client certificate.

The API server proxies only to an endpoint address that a Pod's status carries, and never to
loopback. So a Pod of the release is scheduled by the real scheduler onto a kwok node, kwok
gives it an IP from the node's pod CIDR and marks it Ready, the real endpoints controller puts
that IP behind the release's Service, and the test adds the IP to the vLLM server's network
namespace (routed over its veth pair): the Service's endpoint is then the real server.
"""

from __future__ import annotations

import time

import pytest

from tests.dag_runs import run_dag
from tests.serving.conftest import release_service
from tests.serving.test_smoke import _dag, _failure

LABELS = {"app.kubernetes.io/instance": "scout", "app.kubernetes.io/name": "vllm"}
WAIT_S = 60


@pytest.fixture
def proxy_conf(vllm_server, sandbox_namespace):
    if vllm_server.netns is None:
        pytest.skip(f"the service-proxy path needs the server in a network namespace: {vllm_server.extra['no_netns']}")
    return {"model": "llama4-scout", "accelerator": "gpu", "images_per_prompt": 0, "kubernetes_conn_id": "sandbox_k8s",
            "namespace": sandbox_namespace, "deployment_name": "scout"}


def _serve_release_pod(sandbox_cluster, namespace: str) -> str:
    """A Ready pod of the release on a kwok node; its IP, once the Service's endpoints carry it."""
    from kubernetes import client

    core = client.CoreV1Api(sandbox_cluster.api_client())
    core.create_namespaced_pod(namespace, {
        "metadata": {"name": "scout-0", "labels": LABELS},
        "spec": {"nodeSelector": {"node.kubernetes.io/instance-type": "m6i.2xlarge"},
                 "containers": [{"name": "vllm", "image": "vllm/vllm-openai", "ports": [{"containerPort": 8000}],
                                 "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}}}]}})
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        endpoints = core.read_namespaced_endpoints("scout", namespace) if _exists(core, namespace) else None
        for subset in (endpoints.subsets or []) if endpoints else []:
            for address in subset.addresses or []:
                if address.target_ref and address.target_ref.name == "scout-0":
                    return address.ip
        time.sleep(0.5)
    pod = core.read_namespaced_pod("scout-0", namespace)
    raise AssertionError(f"no ready endpoint for scout-0 within {WAIT_S} s: {pod.status}")


def _proxy_knows_service(core, namespace: str) -> None:
    """Until the API server's service proxy answers for the new Service with something else than
    404 "services "scout" not found": in a loaded CI run it did 0.6 s after the create returned."""
    from kubernetes.client.exceptions import ApiException

    deadline = time.monotonic() + WAIT_S
    while True:
        try:
            core.connect_get_namespaced_service_proxy_with_path("scout:8000", namespace, "v1/models")
            return
        except ApiException as exc:
            if exc.status != 404 or time.monotonic() > deadline:
                return
        time.sleep(0.5)


def _task_errors(log: str) -> str:
    """The failed tasks' error lines from the captured task logs, for the assertion message."""
    return "\n".join(line for line in log.splitlines() if "error" in line.lower() or "failed" in line.lower())[-4000:]


def _exists(core, namespace: str) -> bool:
    from kubernetes.client.exceptions import ApiException

    try:
        core.read_namespaced_endpoints("scout", namespace)
        return True
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise


def test_smoke_benchmark_and_metrics_through_the_service_proxy(vllm_server, sandbox_cluster, sandbox_namespace,
                                                               proxy_conf, capfd):
    from kubernetes import client

    from llm_on_eks.serving.metrics import read_deployment_load

    core = client.CoreV1Api(sandbox_cluster.api_client())
    core.create_namespaced_service(sandbox_namespace, release_service("scout", selector=LABELS))
    _proxy_knows_service(core, sandbox_namespace)

    # Before the pod: the API server answers 503 "no endpoints available", the check retries
    # it as a server still coming up, and gives up at its deadline.
    early = run_dag(_dag("_short_deadline"), proxy_conf)
    assert early.states["smoke_test"] == "failed"
    message = _failure(capfd)
    assert "check 'models'" in message and "not ready within the 4 s deadline" in message
    assert "HTTP 503" in message and "no endpoints available" in message

    pod_ip = _serve_release_pod(sandbox_cluster, sandbox_namespace)
    vllm_server.netns.add_address(pod_ip)
    try:
        conf = {**proxy_conf, "benchmark": True, "benchmark_concurrency": 2, "benchmark_num_prompts": 4,
                "benchmark_input_len": 16, "benchmark_output_len": 8}
        result = run_dag(_dag(), conf)
        if result.state != "success":
            out = capfd.readouterr()
            pytest.fail(f"{result.states}: {_task_errors(out.out + out.err)}")
        proxy = f"/api/v1/namespaces/{sandbox_namespace}/services/scout:8000/proxy"
        assert result.xcoms["smoke_test"]["endpoint"].endswith(proxy)
        assert set(result.xcoms["smoke_test"]["checks"]) == {"models", "chat", "stream"}
        assert result.xcoms["benchmark"]["requests"] == 4
        assert result.xcoms["benchmark"]["recorded_on"] == f"service/{sandbox_namespace}/scout"

        plan = result.xcoms["plan_deployment"]
        serving = plan["serving"]
        load = read_deployment_load(plan["target"]["access"], base_url=serving["base_url"],
                                    namespace=serving["namespace"], release=serving["release"], port=serving["port"])
        assert load.error is None and load.source.endswith(proxy)
        assert load.requests_succeeded >= 4 + 2 and load.in_flight == 0
    finally:
        vllm_server.netns.remove_address(pod_ip)

"""Serving test setup: conf and a sandbox namespace around the session's real vLLM server
(tests/serving/vllm_fixture.py)."""

from __future__ import annotations

import pytest


@pytest.fixture
def scout_conf(vllm_server, airflow_db):
    """Conf for a run of the serving checks against the real server by its base URL."""
    return {"model": "llama4-scout", "accelerator": "gpu", "endpoint_url": vllm_server.base_url,
            "images_per_prompt": 0}


@pytest.fixture
def sandbox_namespace(sandbox_cluster, sandbox_k8s_conn, airflow_db):
    """A fresh namespace on the local control plane, reachable from tasks as connection sandbox_k8s."""
    import uuid

    from kubernetes import client

    api = sandbox_cluster.api_client()
    core = client.CoreV1Api(api)
    namespace = f"serving-{uuid.uuid4().hex[:6]}"
    core.create_namespace({"metadata": {"name": namespace}})
    try:
        yield namespace
    finally:
        core.delete_namespace(namespace, grace_period_seconds=0)
        api.close()


def release_service(name: str, *, selector: dict[str, str] | None = None) -> dict:
    """The Service our chart makes for a release (port 8000, named http), trimmed to what the
    service proxy and the annotations need."""
    spec: dict = {"ports": [{"name": "http", "port": 8000, "targetPort": 8000, "protocol": "TCP"}]}
    if selector:
        spec["selector"] = selector
    return {"metadata": {"name": name, "labels": {"app.kubernetes.io/instance": name}}, "spec": spec}

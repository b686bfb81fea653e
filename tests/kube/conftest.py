"""The control-plane tests here use the same fresh-namespace fixture as tests/integration, and
the cluster-side steps' conf (a fresh namespace, freed afterwards)."""

import json
import time
import uuid

import pytest

from tests.integration.conftest import api, namespace  # noqa: F401 - pytest finds fixtures by name

TOKEN = "hf_sandbox" + uuid.uuid4().hex  # a fake token, unique so any leak is found by search


@pytest.fixture
def cluster_conf(sandbox_cluster, sandbox_k8s_conn, airflow_db, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_HF_DEFAULT", json.dumps({"conn_type": "generic", "password": TOKEN}))
    name = f"serving-{uuid.uuid4().hex[:6]}"
    yield {"model": "llama-3-8b", "accelerator": "gpu", "kubernetes_conn_id": "sandbox_k8s",
           "namespace": name, "deployment_name": "llama3"}
    # The sandbox has one g5.2xlarge GPU: free it for the next test.
    from kubernetes import client

    sandbox_cluster.helm_run("uninstall", "llama3", "--namespace", name, check=False)
    core = client.CoreV1Api(sandbox_cluster.api_client())
    deadline = time.monotonic() + 60
    while core.list_namespaced_pod(name).items and time.monotonic() < deadline:
        time.sleep(0.5)
    if any(ns.metadata.name == name for ns in core.list_namespace().items):  # not when the run failed early
        core.delete_namespace(name)

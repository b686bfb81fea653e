"""Fixtures shared by the tests of the local control plane."""

from __future__ import annotations

import time
import uuid

import pytest


@pytest.fixture
def api(sandbox_cluster):
    return sandbox_cluster.api_client()


@pytest.fixture
def namespace(api):
    """A fresh namespace, deleted afterwards once its pods are gone: the sandbox has few
    accelerators (two p5.48xlarge, one g5.2xlarge), and the next test may need them."""
    from kubernetes import client

    core = client.CoreV1Api(api)
    name = f"t-{uuid.uuid4().hex[:8]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield name
    core.delete_namespace(name)
    deadline = time.monotonic() + 60
    while core.list_namespaced_pod(name).items and time.monotonic() < deadline:
        time.sleep(0.5)

"""The end-to-end run needs every real part at once: the moto server and its gap filler (tests/aws),
the local control plane and the vLLM CPU server (both registered in tests/conftest.py)."""

import uuid

import pytest

from tests.aws.conftest import aws_env, gaps, moto_url  # noqa: F401
from tests.integration.test_sandbox_cluster import wait_for


@pytest.fixture
def namespace(sandbox_cluster):
    """A fresh namespace; afterwards every release in it, it, and the volumes bound into it go."""
    from kubernetes import client as k8s

    name = f"e2e-{uuid.uuid4().hex[:6]}"
    yield name
    releases = sandbox_cluster.helm_run("list", "--namespace", name, "--short").stdout.split()
    for release in releases:
        sandbox_cluster.helm_run("uninstall", release, "--namespace", name, "--wait", check=False)
    core = k8s.CoreV1Api(sandbox_cluster.api_client())
    if any(ns.metadata.name == name for ns in core.list_namespace().items):
        core.delete_namespace(name)
        # Gone before the next test: its pods would still hold the sandbox's few GPU nodes.
        wait_for(lambda: name not in {ns.metadata.name for ns in core.list_namespace().items}, timeout_s=120,
                 what=f"namespace {name} deleted")
    for pv in core.list_persistent_volume().items:
        if pv.spec.claim_ref and pv.spec.claim_ref.namespace == name:
            core.delete_persistent_volume(pv.metadata.name)

"""Session fixture: the local control plane (scripts/sandbox-cluster), up once per test session.

A cluster that was already running is reused and left running; one this session started is
stopped at the end. Tests that need it run in CI: nothing here skips.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "sandbox-cluster"


@dataclass(frozen=True)
class SandboxCluster:
    kubeconfig: str
    helm: str

    def api_client(self):
        from kubernetes import client, config

        return config.new_client_from_config(config_file=self.kubeconfig, client_configuration=client.Configuration())

    def helm_run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run([self.helm, "--kubeconfig", self.kubeconfig, *args], check=check,
                              capture_output=True, text=True, timeout=180)


def _script(*args: str) -> str:
    return subprocess.run([str(SCRIPT), *args], check=True, capture_output=True, text=True, timeout=1800).stdout.strip()


@pytest.fixture(scope="session")
def sandbox_cluster():
    already_running = subprocess.run([str(SCRIPT), "status"], capture_output=True, timeout=120).returncode == 0
    if not already_running:
        _script("up")
    try:
        yield SandboxCluster(kubeconfig=_script("kubeconfig"), helm=_script("bin", "helm"))
    finally:
        if not already_running:
            _script("down")


SANDBOX_CONN_ID = "sandbox_k8s"


@pytest.fixture
def sandbox_k8s_conn(sandbox_cluster, monkeypatch) -> str:
    """The Airflow Kubernetes connection tasks reach the local control plane by (and the helm CLI
    they run): the one place tests set it up."""
    import json

    monkeypatch.setenv(f"AIRFLOW_CONN_{SANDBOX_CONN_ID.upper()}", json.dumps(
        {"conn_type": "kubernetes", "extra": {"kube_config_path": sandbox_cluster.kubeconfig}}))
    monkeypatch.setenv("HELM_BIN", sandbox_cluster.helm)
    return SANDBOX_CONN_ID


@pytest.fixture
def eks_access(sandbox_cluster, aws_env, gaps, monkeypatch):
    """The tasks reach the local control plane the way they reach EKS: every moto EKS cluster is
    served by it (its endpoint and CA), and the Airflow identity is mapped as the cluster's
    creator is on EKS (system:masters, the bootstrap admin of CONFIG_MAP mode)."""
    from local_stack.aws_gaps import cluster_endpoint
    from local_stack.eks_authenticator import map_identity
    from tests.aws.conftest import AIRFLOW_ARN, AIRFLOW_USER

    gaps.control_plane = sandbox_cluster.kubeconfig
    gaps.cluster_endpoint = cluster_endpoint(sandbox_cluster.kubeconfig)
    map_identity(sandbox_cluster.kubeconfig, AIRFLOW_ARN, AIRFLOW_USER, ["system:masters"])
    monkeypatch.setenv("HELM_BIN", sandbox_cluster.helm)
    return sandbox_cluster

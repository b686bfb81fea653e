"""Shared test setup: an isolated Airflow home with a migrated SQLite DB, created once.

The environment is set at import time, before any test module imports Airflow, because Airflow
reads its configuration on first import.

`dag.test()` only runs DAGs that a configured DAG bundle holds, so DAGs written for tests live
under tests/dags/, one folder and one bundle per file: every dag.test() parses and serializes its
DAG's whole bundle again (apache/airflow#64884), which for one bundle of all the test DAGs was
most of a test's time (the params' schema checks of some twenty DAGs each run).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="llm-on-eks-airflow-"))
os.environ.update(
    AIRFLOW_HOME=str(AIRFLOW_HOME),
    AIRFLOW__CORE__DAGS_FOLDER=str(ROOT / "dags"),
    AIRFLOW__CORE__PLUGINS_FOLDER=str(ROOT / "plugins"),
    AIRFLOW__CORE__LOAD_EXAMPLES="False",
    AIRFLOW__CORE__UNIT_TEST_MODE="False",
    AIRFLOW__CORE__EXECUTOR="LocalExecutor",
    # The local profile: the sandbox cluster's connection, and vLLM servers on 127.0.0.1.
    AIRFLOW__LLM_ON_EKS__ALLOWED_CONN_IDS="aws_default,kubernetes_default,hf_default,llm_on_eks_*,sandbox_k8s",
    AIRFLOW__LLM_ON_EKS__ALLOW_LOOPBACK_ENDPOINT="True",
    # dag.test() runs each trigger in its own process, where a resumed task cannot race its
    # deferring try's exit (llm_on_eks.triggers.settled): no settle time.
    AIRFLOW__LLM_ON_EKS__RESUME_AFTER_DEFERRAL_S="0",
    # kwok's Jobs and pods are done in seconds: the Kubernetes waits look every second.
    AIRFLOW__LLM_ON_EKS__KUBE_POLL_S="1",
    AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST=json.dumps(
        [
            {"name": name, "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle", "kwargs": {"path": str(path)}}
            for name, path in (("dags-folder", ROOT / "dags"),
                               *((f"test-dags-{d.name}", d) for d in sorted((ROOT / "tests" / "dags").iterdir())
                                 if d.is_dir() and not d.name.startswith("__")))
        ]
    ),
)


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """A migrated metadata DB: `dag.test()` needs one."""
    subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"],
        check=True,
        capture_output=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "plugins"), os.environ.get("PYTHONPATH", "")])},
    )
    return AIRFLOW_HOME


pytest_plugins = ["tests.integration.sandbox_cluster", "tests.serving.vllm_fixture"]

# Fixtures that start a real server: a test using any of them (directly or through another
# fixture) is an integration test, left out of the fast tier (`scripts/test -m "not integration"`).
SERVER_FIXTURES = {"moto_url", "moto_s3", "sandbox_cluster", "vllm_server", "local_airflow", "team_airflow", "local_aws"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if SERVER_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)

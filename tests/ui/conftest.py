"""A running Airflow 3 (local_stack/airflow.py): api-server, scheduler, dag-processor and triggerer
as separate processes on 127.0.0.1, in a home of the test session's own; stopped by PID at the end.
On SQLite with the LocalExecutor (``local_airflow``), or on the team stack (``team_airflow``:
PostgreSQL, Redis, the CeleryExecutor and two Celery workers, local_stack/team.py).

The runs here are dry runs, and real deploys held by the approval step (``local_airflow`` reaches a
local AWS through the local profile's connections); what a whole real deploy does is tested
through dag.test() in tests/e2e, and on this same kind of Airflow by scripts/demo."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest

from local_stack import team
from local_stack.airflow import LocalAirflow, connections
from local_stack.stack import stop_pid

DAG_ID = "deploy_llama4"


# The team's rule the local Airflow runs with: a deploy whose nodes cost more per hour waits for a
# person's approval (provision.approve_spend). Dry runs are never held.
APPROVAL_LIMIT_USD = 50.0


@pytest.fixture(scope="session")
def local_aws():
    """The local AWS as scripts/demo runs it (moto with the gap filler in front, in this process):
    the local Airflow's processes reach it through the local profile's connections. Its URL and
    the Airflow identity's access key."""
    from local_stack.aws import AIRFLOW_USER, iam_user, in_thread
    from local_stack.aws_gaps import AwsGaps

    with in_thread(AwsGaps()) as url:
        key = iam_user(url, AIRFLOW_USER)
        yield url, {"access_key_id": key["AccessKeyId"], "secret_access_key": key["SecretAccessKey"]}


@pytest.fixture(scope="session")
def local_airflow(tmp_path_factory, local_aws):
    airflow = LocalAirflow(home=tmp_path_factory.mktemp("airflow-home"), log_prefix="test-airflow",
                           extra_env={"AIRFLOW__LLM_ON_EKS__APPROVE_ABOVE_USD_PER_HOUR": str(APPROVAL_LIMIT_USD)})
    try:
        airflow.start(connections(*local_aws))
        airflow.api().wait_for_dags(DAG_ID)
        yield airflow
    finally:
        airflow.stop()


@pytest.fixture(scope="session")
def team_airflow():
    # Not under pytest's private tmp root: run as root, PostgreSQL runs as user postgres, which
    # must reach its data directory.
    home = Path(tempfile.mkdtemp(prefix="llm-on-eks-team-"))
    home.chmod(0o711)
    backends: dict = {}
    try:
        settings = team.ensure_backends(home, backends)
        airflow = LocalAirflow(home=home, log_prefix="test-airflow-team", extra_env=settings, workers=team.WORKERS)
        try:
            airflow.start()
            airflow.api().wait_for_dags(DAG_ID)
            yield airflow, backends
        finally:
            airflow.stop()
    finally:
        for backend in backends.values():
            stop_pid(backend["pid"])
        shutil.rmtree(home, ignore_errors=True)


def wait_for_run(api, run_id: str, timeout_s: float = 600, dag_id: str = DAG_ID) -> str:
    """The run's final state, polled through the REST API."""
    import time

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        state = api.run(dag_id, run_id)["state"]
        if state in ("success", "failed"):
            return state
        time.sleep(2)
    raise TimeoutError(f"run {run_id} not finished within {timeout_s:.0f} s")

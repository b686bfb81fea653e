"""A running Airflow 3 (local_stack/airflow.py): api-server, scheduler, dag-processor and triggerer
as separate processes on 127.0.0.1, in a home of the test session's own; stopped by PID at the end.

Only DAG runs that touch nothing outside Airflow run on it (dry runs): what a real deploy does is
tested through dag.test() in tests/e2e, and on this same kind of Airflow by scripts/demo."""

from __future__ import annotations

import pytest

from local_stack.airflow import LocalAirflow

DAG_ID = "deploy_llama4"


@pytest.fixture(scope="session")
def local_airflow(tmp_path_factory):
    airflow = LocalAirflow(home=tmp_path_factory.mktemp("airflow-home"), log_prefix="test-airflow")
    try:
        airflow.start()
        airflow.api().wait_for_dags(DAG_ID)
        yield airflow
    finally:
        airflow.stop()


def wait_for_run(api, run_id: str, timeout_s: float = 600) -> str:
    """The run's final state, polled through the REST API."""
    import time

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        state = api.run(DAG_ID, run_id)["state"]
        if state in ("success", "failed"):
            return state
        time.sleep(2)
    raise TimeoutError(f"run {run_id} not finished within {timeout_s:.0f} s")

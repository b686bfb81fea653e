"""`airflow dags trigger`, as users run it, against a running Airflow: the conf is checked by the
params form's schema before a run exists (triggered runs: tests/ui/test_parallel_deploys.py, on
SQLite and on the team stack)."""

from __future__ import annotations

import json

from tests.ui.conftest import DAG_ID


def _runs(api) -> set[str]:
    return {run["dag_run_id"] for run in api.get(f"/api/v2/dags/{DAG_ID}/dagRuns?limit=100")["dag_runs"]}


def test_a_bad_conf_is_refused_naming_the_field_and_no_run_exists(local_airflow):
    api = local_airflow.api()
    before = _runs(api)
    refused = local_airflow.cli("dags", "trigger", DAG_ID, "--run-id", "cli-bad-conf",
                                "--conf", json.dumps({"deployment_name": "Bad_Name"}), check=False)
    assert refused.returncode != 0
    assert "deployment_name" in refused.stderr + refused.stdout
    assert _runs(api) == before

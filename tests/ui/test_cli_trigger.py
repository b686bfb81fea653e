"""`airflow dags trigger`, as users run it, against a running Airflow: the conf is checked by the
params form's schema before a run exists, and a triggered run goes through the real scheduler,
executor and API server to its report: on the team stack, PostgreSQL and Celery workers."""

from __future__ import annotations

import json
import time

from tests.ui.conftest import DAG_ID, wait_for_run


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


def test_a_triggered_dry_run_goes_through_the_scheduler_to_its_report(team_airflow):
    import psycopg2

    airflow, backends = team_airflow
    api = airflow.api()
    conf = {"dry_run": True, "deployment_name": "cli-dry-run", "namespace": "llm-cli"}
    airflow.cli("dags", "trigger", DAG_ID, "--run-id", "cli-dry-run", "--conf", json.dumps(conf))
    assert wait_for_run(api, "cli-dry-run") == "success"
    states = {ti["task_id"]: ti["state"] for ti in api.task_instances(DAG_ID, "cli-dry-run")}
    assert states["helm_deploy"] == states["register"] == "success"
    assert states["mark_failed"] == "skipped"
    record = api.xcom(DAG_ID, "cli-dry-run", "register")
    assert record["deployment"] == "cli-dry-run" and record["namespace"] == "llm-cli"
    assert "DRY RUN" in record["report"].splitlines()[0]
    # The tasks ran on the Celery workers: their results are in the Celery result backend's table.
    # A worker stores a result after the task has reported its state to the API server, so the
    # last one may land a moment after the run is marked done: read until they are all there.
    succeeded = len([s for s in states.values() if s == "success"])
    pg = backends["postgres"]
    deadline = time.monotonic() + 30
    with psycopg2.connect(host="127.0.0.1", port=pg["port"], user="airflow", password=pg["password"],
                          dbname="airflow") as connection, connection.cursor() as cursor:
        while True:
            cursor.execute("SELECT count(*) FROM celery_taskmeta WHERE status = 'SUCCESS'")
            stored = cursor.fetchone()[0]
            connection.commit()
            if stored >= succeeded or time.monotonic() > deadline:
                break
            time.sleep(0.5)
    assert stored >= succeeded

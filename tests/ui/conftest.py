"""A running Airflow 3 (local_stack/airflow.py): api-server, scheduler, dag-processor and triggerer
as separate processes on 127.0.0.1, in a home of the test session's own; stopped by PID at the end.
On SQLite with the LocalExecutor (``local_airflow``), or on the team stack (``team_airflow``:
PostgreSQL, Redis, the CeleryExecutor and two Celery workers, local_stack/team.py).

Both reach the local AWS, and through it the local control plane as EKS is reached, by the
``local`` profile's connections alone (local_stack/airflow.py), as scripts/demo's Airflow does.
What each step of a deploy does is tested through dag.test() in tests/e2e; here, what the
scheduler, executors and REST API add: the trigger form and CLI, approvals, the warm-up, and many
deploys at once."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest

from local_stack import team
from local_stack.airflow import LocalAirflow, connections
from local_stack.demo import stack_settings
from local_stack.stack import stop_pid
from tests.e2e.conftest import namespace  # noqa: F401 - a namespace of the test's own, gone afterwards

DAG_ID = "deploy_llama4"
APPROVAL_STEP = "provision.approve_spend"
# As a person answers: not within the second the step paused. Airflow 3.3.2's scheduler can take
# the pausing process's exit, reported late, for a failure of the resumed try (the deferral race,
# apache/airflow#72716): the step then asks again on its retry.
ANSWER_AFTER_S = 10


# The team's rule the local Airflow runs with: a deploy whose nodes cost more per hour waits for a
# person's approval (provision.approve_spend). Dry runs are never held.
APPROVAL_LIMIT_USD = 50.0


@pytest.fixture(scope="session")
def local_aws(sandbox_cluster):
    """The local AWS as scripts/demo runs it (moto with the gap filler in front, in this process),
    its EKS clusters served by the local control plane, reached as EKS is (a token from the AWS
    identity, mapped to a cluster admin as a cluster's creator is): the local Airflow's processes
    reach both through the local profile's connections alone. Its URL and the Airflow identity's
    access key."""
    from local_stack.aws import AIRFLOW_ARN, AIRFLOW_USER, iam_user, in_thread
    from local_stack.aws_gaps import AwsGaps
    from local_stack.eks_authenticator import map_identity

    with in_thread(AwsGaps(control_plane=sandbox_cluster.kubeconfig)) as url:
        key = iam_user(url, AIRFLOW_USER)
        map_identity(sandbox_cluster.kubeconfig, AIRFLOW_ARN, AIRFLOW_USER, ["system:masters"])
        yield url, {"access_key_id": key["AccessKeyId"], "secret_access_key": key["SecretAccessKey"]}


@pytest.fixture(scope="session")
def local_airflow(tmp_path_factory, local_aws, sandbox_cluster):
    airflow = LocalAirflow(home=tmp_path_factory.mktemp("airflow-home"), log_prefix="test-airflow",
                           extra_env={"AIRFLOW__LLM_ON_EKS__APPROVE_ABOVE_USD_PER_HOUR": str(APPROVAL_LIMIT_USD),
                                      # A killed try's retry (test_parallel_deploys) 5 s on, not 2 min.
                                      "AIRFLOW__LLM_ON_EKS__RETRY_DELAY_S": "5",
                                      **stack_settings(sandbox_cluster.helm)})
    try:
        airflow.start(connections(*local_aws))
        airflow.api().wait_for_dags(DAG_ID)
        yield airflow
    finally:
        airflow.stop()


@pytest.fixture(scope="session")
def team_airflow(local_aws, sandbox_cluster):
    # Not under pytest's private tmp root: run as root, PostgreSQL runs as user postgres, which
    # must reach its data directory.
    home = Path(tempfile.mkdtemp(prefix="llm-on-eks-team-"))
    home.chmod(0o711)
    backends: dict = {}
    try:
        settings = team.ensure_backends(home, backends)
        airflow = LocalAirflow(home=home, log_prefix="test-airflow-team", extra_env={**settings, **stack_settings(sandbox_cluster.helm)},
                               workers=team.WORKERS)
        try:
            airflow.start(connections(*local_aws))
            airflow.api().wait_for_dags(DAG_ID)
            yield airflow, backends
        finally:
            airflow.stop()
    finally:
        for backend in backends.values():
            stop_pid(backend["pid"])
        shutil.rmtree(home, ignore_errors=True)


def hitl_path(dag_id: str, run_id: str) -> str:
    """The REST API's resource of the run's approval request (what the UI reads and answers)."""
    return f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{APPROVAL_STEP}/-1/hitlDetails"


def post_consumer_record(api, record: dict) -> None:
    """A consumer's record among the ``llm_deployments`` Asset events, as ``llm_endpoint``'s hold
    writes it."""
    (asset,) = [a for a in api.get("/api/v2/assets?name_pattern=llm_deployments")["assets"]
                if a["name"] == "llm_deployments"]
    api.post("/api/v2/assets/events", {"asset_id": asset["id"], "extra": record})


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

"""warm_up_deployments under the real scheduler: from a consumer's record among the
``llm_deployments`` Asset events (as ``llm_endpoint``'s hold writes it) and the consumer DAG's next
run as Airflow has it, it starts deploy_model for the deployment, which is gone, with the
consumer's conf, under a run id of that consumer run. What the rule decides in every case is
tests/test_consumers.py's; the hold writing the record, tests/kube/test_llm_endpoint.py's."""

from __future__ import annotations

from datetime import datetime, timedelta

from llm_on_eks.naming import identity_hash
from llm_on_eks.operators.llm_endpoint import plan_endpoint
from tests.ui.conftest import post_consumer_record, wait_for_run

WARM_UP = "warm_up_deployments"
DEPLOY = "deploy_model"
# Any scheduled DAG stands for the consumer: the idle teardown's runs every 10 minutes, within
# the warm-up window of the deployment below (its predicted cold start plus 10 minutes).
CONSUMER = "teardown_idle_deployments"
REQUEST = {"model": "llama-3-8b", "accelerator": "gpu", "region": "us-west-2", "namespace": "llm-warm",
           "cluster_name": "warm-up", "deployment_name": "warm"}


def _warm_up_runs(api, hash_: str) -> list[dict]:
    runs = api.get(f"/api/v2/dags/{DEPLOY}/dagRuns?limit=100")["dag_runs"]
    return [r for r in runs if r["dag_run_id"].startswith(f"warm_up__warm-{hash_}__")]


def test_a_gone_deployment_is_deployed_once_ahead_of_its_consumer_s_next_run(local_airflow):
    api = local_airflow.api()
    api.wait_for_dags(CONSUMER, DEPLOY)  # and switched on, as a user would
    record = {**plan_endpoint.function(REQUEST)["consumer"], "consumer": CONSUMER}
    # A dry run: the deploy the warm-up starts creates nothing on this stack.
    record["conf"] = {**record["conf"], "dry_run": True}
    post_consumer_record(api, record)

    # Switched on, its schedule's latest run starts at once; a manual run right after finds the
    # deploy run for that consumer run started already, and starts no second one.
    api.wait_for_dags(WARM_UP)
    local_airflow.cli("dags", "trigger", WARM_UP, "--run-id", "warm-up-1")
    assert wait_for_run(api, "warm-up-1", timeout_s=300, dag_id=WARM_UP) == "success"
    hash_ = identity_hash("us-west-2", "warm-up", "llm-warm", "warm")
    (started,) = _warm_up_runs(api, hash_)
    assert started["conf"] == record["conf"], started
    next_run = datetime.fromisoformat(api.get(f"/api/v2/dags/{CONSUMER}/details")["next_dagrun_logical_date"])
    # Named after the consumer's next run as the warm-up read it (the one before, if the consumer ran since).
    assert started["dag_run_id"].rsplit("__", 1)[1] in {f"{when:%Y%m%dT%H%M%S}"
                                                        for when in (next_run, next_run - timedelta(minutes=10))}
    states = {ti["state"] for ti in api.task_instances(WARM_UP, "warm-up-1") if ti["task_id"] == "warm_up"}
    assert states <= {"success", "skipped"}, states  # skipped: "Dag Run already exists"

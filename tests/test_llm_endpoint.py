"""``llm_endpoint`` as a DAG file builds it, and its plan's refusals: no servers (what it does on a
cluster is tests/kube/test_llm_endpoint.py; through a real scheduler, scripts/demo)."""

from __future__ import annotations

import json

import pytest
from airflow.sdk import DAG, TaskGroup, task
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from llm_on_eks.factory import START_DATE, llm_endpoint
from llm_on_eks.operators.llm_endpoint import plan_endpoint


@task
def step(value: object = None) -> None:
    """A task of the DAG's own."""


def _consumer(**kwargs) -> DAG:
    with DAG("consumer", schedule=None, start_date=START_DATE) as dag, llm_endpoint(model="llama-3-8b", **kwargs) as llm:
        first = step.override(task_id="first")(llm.endpoint)
        first >> step.override(task_id="second")()
        with TaskGroup("more"):
            step.override(task_id="third")()
    return dag


def test_the_dag_s_tasks_run_between_the_endpoint_and_the_release():
    dag = _consumer()
    tasks = {t.task_id.removeprefix("llm_endpoint."): t for t in dag.tasks}
    assert set(tasks) == {"plan_endpoint", "hold", "deploy", "endpoint", "first", "second", "more.third", "release"}
    assert tasks["hold"].is_setup and tasks["release"].is_teardown
    assert tasks["release"].trigger_rule == "all_done_setup_success"  # after a failed task too
    assert tasks["endpoint"].trigger_rule == "none_failed_min_one_success"  # after a skipped deploy too
    for own in ("first", "second", "more.third"):
        assert "llm_endpoint.endpoint" in tasks[own].upstream_task_ids, own
        assert "llm_endpoint.release" in tasks[own].downstream_task_ids, own
    assert tasks["deploy"].trigger_dag_id == "deploy_model" and tasks["release"].trigger_dag_id == "teardown_deployment"
    assert tasks["deploy"].trigger_run_id == "llm_endpoint__{{ dag.dag_id }}__{{ run_id }}"


def test_an_unknown_when_released_is_refused_when_the_dag_is_parsed():
    with pytest.raises(ValueError, match="when_released must be one of idle, teardown, not 'never'"):
        _consumer(when_released="never")


@pytest.mark.parametrize(("request_", "overrides", "names"), [
    ({"model": "llama-9"}, None, "Invalid input for param model: 'llama-9' is not one of"),
    ({"model": "llama-3-8b"}, {"idle_ttl_minute": 5}, "unknown conf key(s) idle_ttl_minute"),
    ({"model": "llama-3-8b"}, json.dumps({"idle_ttl_minutes": 1}), "param idle_ttl_minutes: 1 is less than the minimum"),
    ({"model": "llama-3-8b", "dry_run": True}, None, "dry_run: llm_endpoint serves for real"),
    ({"model": "llama-3-8b", "accelerator": "neuron"}, None, "model 'llama-3-8b' has no 'neuron' profile"),
    ({"model": "llama-3-8b"}, "{not json", "overrides: not JSON"),
    ({"model": "llama-3-8b"}, "[1]", "overrides: an object of deploy form fields, not list"),
])
def test_a_bad_request_is_refused_naming_the_field(request_, overrides, names):
    with pytest.raises(AirflowFailException, match="refused before holding or creating anything") as refused:
        plan_endpoint.function(request_, overrides)
    assert names in str(refused.value)


def test_the_plan_carries_the_deploy_conf_and_the_teardown_s():
    planned = plan_endpoint.function({"model": "llama-3-8b", "region": "us-east-2", "namespace": "batch"},
                                     json.dumps({"deployment_name": "nightly", "idle_ttl_minutes": 30}))
    assert planned["conf"] == {"model": "llama-3-8b", "region": "us-east-2", "namespace": "batch",
                               "deployment_name": "nightly", "idle_ttl_minutes": 30}
    assert planned["teardown_conf"]["deployment_name"] == "nightly" == planned["target"]["deployment"]
    assert planned["teardown_conf"]["namespace"] == "batch" == planned["kubernetes"]["namespace"]


class _RunsSeen:
    """The task instance's view of the deploy DAG's runs (``get_dr_count``), as the Task SDK gives it."""

    def __init__(self, *run_ids: str) -> None:
        self.run_ids = set(run_ids)

    def get_dr_count(self, dag_id: str, run_ids: list[str]) -> int:
        return len(self.run_ids & set(run_ids))


def test_the_deploy_step_waits_for_a_deploy_under_way_then_for_its_own_run():
    from airflow.sdk.exceptions import TaskDeferred

    from llm_on_eks.operators.llm_endpoint import DeployForEndpointOperator

    busy = {"dag_id": "deploy_model", "run_id": "llm_endpoint__other__manual_1"}
    step = DeployForEndpointOperator(task_id="deploy", trigger_dag_id="deploy_model", trigger_run_id="llm_endpoint__c__r",
                                     hold={"adopt": False, "why": "another run is working on it", "busy": busy})
    # Another consumer's deploy run holds the Lease: wait for it before starting this run's own.
    with pytest.raises(TaskDeferred) as first:
        step.execute({"ti": _RunsSeen()})
    assert (first.value.trigger.dag_id, first.value.trigger.run_ids, first.value.method_name) == (
        "deploy_model", ["llm_endpoint__other__manual_1"], "deploy")
    # A retry after this run's own deploy run started: wait for that one, start none.
    with pytest.raises(TaskDeferred) as retried:
        step.execute({"ti": _RunsSeen("llm_endpoint__c__r")})
    assert (retried.value.trigger.run_ids, retried.value.method_name) == (["llm_endpoint__c__r"], "execute_complete")
    step.hold = {"adopt": True, "why": "adopted: release llama3 revision 1 serves with these values", "busy": None}
    with pytest.raises(AirflowSkipException, match="adopted"):
        step.execute({"ti": _RunsSeen()})

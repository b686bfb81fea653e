"""Every DAG file imports cleanly and follows the house rules (DESIGN.md, conventions 1-3)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from airflow.dag_processing.dagbag import DagBag

from tests.conftest import ROOT


@pytest.fixture(scope="module")
def dagbag() -> DagBag:
    return DagBag(dag_folder=str(ROOT / "dags"))


def test_no_import_errors(dagbag):
    assert dagbag.import_errors == {}


def test_the_deploy_dags_exist(dagbag):
    assert {"deploy_llama4", "deploy_model"} <= set(dagbag.dag_ids)


def test_house_rules(dagbag):
    for dag_id, dag in dagbag.dags.items():
        assert dag.tags, dag_id
        assert dag.catchup is False, dag_id
        assert dag.doc_md and dag.doc_md.strip(), dag_id
        assert dag.start_date is not None, dag_id
        for task in dag.tasks:
            assert task.owner not in ("", "airflow"), (dag_id, task.task_id)
            assert task.retries >= 2, (dag_id, task.task_id)
            assert isinstance(task.retry_delay, timedelta) and task.retry_delay.total_seconds() > 0, (dag_id, task.task_id)


def test_one_dag_per_file_with_a_dag_id_constant(dagbag):
    for path in (ROOT / "dags").glob("*.py"):
        source = path.read_text()
        assert f'DAG_ID = "{path.stem}"' in source, path.name
        assert [d for d in dagbag.dags.values() if d.fileloc == str(path)] != [], path.name


def test_deploy_llama4_offers_llama4_only_and_deploy_model_everything(dagbag):
    from llm_on_eks.catalog import catalog_index

    assert dagbag.dags["deploy_llama4"].params.get_param("model").schema["enum"] == ["llama4-scout", "llama4-maverick"]
    assert dagbag.dags["deploy_model"].params.get_param("model").schema["enum"] == catalog_index()[0]


def _upstream(dag, task_id: str) -> set[str]:
    return {t.task_id for t in dag.get_task(task_id).get_flat_relatives(upstream=True)}


def test_the_task_chain_follows_the_design(dagbag):
    dag = dagbag.dags["deploy_llama4"]
    order = ["plan_deployment", "provision.ensure_nodegroup", "device_plugin", "helm_deploy", "wait_ready", "smoke_test", "benchmark", "register"]
    for upstream, downstream in zip(order, order[1:], strict=False):
        assert downstream in {t.task_id for t in dag.get_task(upstream).get_flat_relatives(upstream=False)}, (upstream, downstream)
    assert {"hf_token_secret", "prepare_weights.stage_to_fsx", "prepare_weights.stage_to_s3",
            "prepare_weights.neuron_compile"} <= _upstream(
        dag, "helm_deploy")
    # The cold start is measured once the smoke test has had its first token, beside the benchmark.
    assert "smoke_test" in _upstream(dag, "cold_start") and "benchmark" not in _upstream(dag, "cold_start")
    assert "cold_start" in _upstream(dag, "register") and "cold_start" in _upstream(dag, "mark_failed")
    branch = dag.get_task("prepare_weights.choose_weight_prep")
    assert {t.task_id for t in branch.downstream_list} == {
        "prepare_weights.neuron_compile", "prepare_weights.stage_to_fsx", "prepare_weights.stage_to_s3",
        "prepare_weights.weights_from_hub"}


def test_runs_of_different_deployments_go_at_once_the_idle_teardown_alone(dagbag, monkeypatch):
    from llm_on_eks.factory import MAX_ACTIVE_RUNS, build_teardown_dag

    for dag_id in ("deploy_llama4", "deploy_model", "teardown_deployment"):
        assert dagbag.dags[dag_id].max_active_runs == MAX_ACTIVE_RUNS == 16, dag_id
    assert dagbag.dags["teardown_idle_deployments"].max_active_runs == 1
    # Whoever runs Airflow sets it, as the other [llm_on_eks] settings.
    monkeypatch.setenv("AIRFLOW__LLM_ON_EKS__MAX_ACTIVE_RUNS", "4")
    assert build_teardown_dag("teardown_deployment", doc_md="x").max_active_runs == 4


def test_the_first_retry_waits_two_minutes_unless_set(dagbag, monkeypatch):
    from llm_on_eks.factory import build_teardown_dag

    tasks = dagbag.dags["deploy_llama4"].tasks
    assert {(task.retry_delay, task.retry_exponential_backoff) for task in tasks} == {(timedelta(minutes=2), 2.0)}
    monkeypatch.setenv("AIRFLOW__LLM_ON_EKS__RETRY_DELAY_S", "10")
    assert {task.retry_delay for task in build_teardown_dag("teardown_deployment", doc_md="x").tasks} \
        == {timedelta(seconds=10)}


def test_aws_waits_poll_every_30_s_unless_set_over_the_same_time(dagbag, monkeypatch):
    from llm_on_eks.factory import build_deploy_dag

    def waits(dag):
        return {t.task_id: (t.waiter_delay, t.waiter_max_attempts) for t in dag.tasks if hasattr(t, "waiter_delay")}

    default = waits(dagbag.dags["deploy_llama4"])
    assert default["provision.ensure_cluster"] == (30, 60) and default["provision.ensure_nodegroup"] == (30, 120)
    monkeypatch.setenv("AIRFLOW__LLM_ON_EKS__WAITER_DELAY_S", "4")
    every_4_s = waits(build_deploy_dag("deploy_llama4", doc_md="x"))
    assert every_4_s.keys() == default.keys()
    for task, (delay, attempts) in every_4_s.items():
        assert delay == 4 and 0 <= delay * attempts - default[task][0] * default[task][1] < 4, task


def test_what_needs_no_accelerator_node_runs_while_the_node_group_boots(dagbag):
    """FSx staging (system nodes, FSx CSI driver) and the token Secret wait for neither the
    accelerator node group nor its device plugin; a Neuron compile (on those nodes) waits for both."""
    dag = dagbag.dags["deploy_llama4"]
    accelerator = {"provision.ensure_nodegroup", "provision.ensure_nodepool", "device_plugin"}
    assert _upstream(dag, "hf_token_secret") & accelerator == set()
    assert "take_lease" in _upstream(dag, "hf_token_secret")
    assert _upstream(dag, "prepare_weights.stage_to_fsx") & accelerator == set()
    assert {"provision.ensure_addons", "storage.ensure_fsx", "hf_token_secret"} <= _upstream(
        dag, "prepare_weights.stage_to_fsx")
    assert accelerator <= _upstream(dag, "prepare_weights.neuron_compile")
    assert "provision.ensure_nodegroup" not in _upstream(dag, "provision.ensure_addons")


def test_the_idle_teardown_judges_per_cluster_and_leaves_what_deployments_share_to_remove_cluster(dagbag):
    """One judge task instance per cluster, and each idle deployment's teardown only its own
    steps (and FSx's, which withdraws its use): no switched-off steps holding worker slots. The
    deploy's teardown on failure is as narrow; teardown_deployment keeps its switches."""
    idle = dagbag.dags["teardown_idle_deployments"]
    assert "judge_deployments" in idle.task_ids and "judge_deployment" not in idle.task_ids
    assert {t for t in idle.task_ids if t.startswith("teardown.")} == {
        "teardown.take_lease", "teardown.teardown_kube.uninstall_release",
        "teardown.teardown_kube.delete_cluster_objects", "teardown.teardown_aws.delete_nodegroup",
        "teardown.teardown_aws.delete_fsx", "teardown.register_removal", "teardown.release_lease"}
    assert "remove_cluster.teardown_aws.delete_cluster" in idle.task_ids
    shared = {"teardown_aws.delete_system_nodegroup", "teardown_aws.delete_cluster", "teardown_aws.delete_network",
              "teardown_aws.delete_roles", "teardown_aws.delete_artifacts"}
    assert shared & set(dagbag.dags["deploy_llama4"].task_ids) == set()
    assert shared <= set(dagbag.dags["teardown_deployment"].task_ids)

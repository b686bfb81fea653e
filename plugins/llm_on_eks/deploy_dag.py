"""The deploy DAG factory: deploy_llama4 and deploy_model are the same pipeline over different
slices of the catalog, so both come from here and cannot drift apart.

    plan -> provision + storage -> device_plugin -> hf_token_secret -> prepare_weights (neuron_compile |
    stage_to_fsx | weights_from_hub) -> helm_deploy -> wait_ready -> smoke_test -> benchmark
    -> register
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import DAG, Asset, TriggerRule, task, task_group

from llm_on_eks.catalog import catalog_index
from llm_on_eks.params import deploy_params

OWNER = "ml-platform"
DEFAULT_ARGS = {"owner": OWNER, "retries": 2, "retry_delay": timedelta(minutes=2), "retry_exponential_backoff": True}
START_DATE = pendulum.datetime(2026, 1, 1, tz="UTC")
# Consumers (dashboards, the idle teardown) can be scheduled on new deployments.
# A plain name, not a URI: a URI scheme makes Airflow load every provider's URI handlers at parse
# time (the Amazon one alone imports the S3 hook, half a second).
DEPLOYMENTS_ASSET = Asset("llm_deployments")
WEIGHT_PREP_TASKS = {
    "neuron_compiled": "prepare_weights.neuron_compile",
    "fsx": "prepare_weights.stage_to_fsx",
    "hub": "prepare_weights.weights_from_hub",
}


@task
def plan_deployment(**context) -> dict[str, Any]:
    """Validate params against the catalog and size the deployment; refuse bad input before
    anything is created. A refusal is final: retrying cannot fix the input."""
    from airflow.sdk.exceptions import AirflowFailException

    from llm_on_eks.plan import PlanError, build_plan
    from llm_on_eks.plan_report import summarize

    try:
        plan = build_plan(dict(context["params"]))
    except PlanError as exc:
        raise AirflowFailException(f"refused before creating anything: {exc}") from None
    print(summarize(plan))
    return plan


@task.branch
def choose_weight_prep(plan: dict[str, Any]) -> str:
    """Neuron profiles compile, FSx profiles stage weights, small models load from the hub."""
    return WEIGHT_PREP_TASKS[plan["profile"]["weights"]]


@task
def weights_from_hub(plan: dict[str, Any]) -> dict[str, Any]:
    """Nothing to prepare: vLLM downloads the weights at start-up with the HF token."""
    return {"weights": "hub", "hf_repo": plan["model"]["hf_repo"], "revision": plan["model"]["revision"]}


@task(trigger_rule=TriggerRule.NONE_FAILED, outlets=[DEPLOYMENTS_ASSET])
def register(plan: dict[str, Any], smoke: Any = None, bench: Any = None, *, outlet_events=None) -> dict[str, Any]:
    """Record the deployment as an Asset event, the feed for dashboards and the idle teardown."""
    record = {
        "deployment": plan["deployment"],
        "model": plan["model"]["id"],
        "accelerator": plan["profile"]["accelerator"],
        "instance_type": plan["profile"]["instance_type"],
        "cluster": plan["cluster"]["name"],
        "region": plan["aws"]["region"],
        "namespace": plan["kubernetes"]["namespace"],
        "hourly_usd": plan["sizing"]["hourly_usd"],
        "idle_ttl_minutes": plan["lifecycle"]["idle_ttl_minutes"],
        "dry_run": plan["dry_run"],
        "smoke_test": smoke,
        "benchmark": bench,
    }
    if not plan["dry_run"]:
        outlet_events[DEPLOYMENTS_ASSET].extra = record
    return record


def build_deploy_dag(dag_id: str, *, doc_md: str, model_ids: list[str] | None = None,
                     default_model: str | None = None, tags: list[str] | None = None) -> DAG:
    """One deploy DAG offering ``model_ids`` (default: the whole catalog)."""
    from llm_on_eks.aws.task_groups import provision_group, storage_group
    from llm_on_eks.operators.kube_steps import (
        DevicePluginOperator,
        HelmDeployOperator,
        HfTokenSecretOperator,
        NeuronCompileOperator,
        StageWeightsToFsxOperator,
        WaitReadyOperator,
    )
    from llm_on_eks.operators.serving_steps import BenchmarkOperator, SmokeTestOperator

    all_models, instance_types = catalog_index()
    model_ids = model_ids or all_models
    with DAG(
        dag_id=dag_id,
        doc_md=doc_md,
        schedule=None,
        start_date=START_DATE,
        catchup=False,
        max_active_runs=1,
        default_args=DEFAULT_ARGS,
        tags=["llm", "eks", "vllm", "deploy", *(tags or [])],
        params=deploy_params(model_ids, default_model or model_ids[0], instance_types),
        render_template_as_native_obj=True,
    ) as dag:
        plan = plan_deployment()
        provision = provision_group(plan)
        storage, fsx = storage_group(plan)
        devices = DevicePluginOperator(task_id="device_plugin", plan=plan)
        secret = HfTokenSecretOperator(task_id="hf_token_secret", plan=plan)

        @task_group(group_id="prepare_weights")
        def prepare_weights():
            choice = choose_weight_prep(plan)
            choice >> [
                NeuronCompileOperator(task_id="neuron_compile", plan=plan),
                StageWeightsToFsxOperator(task_id="stage_to_fsx", plan=plan, fsx=fsx),
                weights_from_hub(plan),
            ]

        weights = prepare_weights()
        deploy = HelmDeployOperator(
            task_id="helm_deploy", plan=plan, trigger_rule=TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS
        )
        ready = WaitReadyOperator(task_id="wait_ready", plan=plan, deploy=deploy.output)
        smoke = SmokeTestOperator(task_id="smoke_test", plan=plan)
        # Runs after a skipped smoke test too: the switches are independent.
        bench = BenchmarkOperator(task_id="benchmark", plan=plan, trigger_rule=TriggerRule.NONE_FAILED)
        # Storage needs the cluster (FSx goes into its subnets) but not the node group.
        plan >> provision >> devices >> secret >> weights
        dag.get_task("provision.ensure_cluster") >> storage >> weights
        weights >> deploy >> ready >> smoke >> bench
        register(plan, smoke.output, bench.output)
    return dag

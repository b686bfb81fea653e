"""Test DAGs: the serving checks of the deploy pipeline alone (plan -> smoke_test -> benchmark),
wired as build_deploy_dag wires them, against whatever endpoint the run's conf names."""

from __future__ import annotations

from airflow.sdk import DAG, TriggerRule

from llm_on_eks.catalog import catalog_index
from llm_on_eks.factory import DEFAULT_ARGS, START_DATE
from llm_on_eks.operators.plan_deployment import plan_deployment
from llm_on_eks.operators.serving_checks import BenchmarkOperator, SmokeTestOperator
from llm_on_eks.params import deploy_form

DAG_ID = "test_serving_steps"
# A deadline short enough for a test of a server that never becomes ready.
SHORT_DEADLINE_S = 4.0

for suffix, deadline_s in (("", None), ("_short_deadline", SHORT_DEADLINE_S)):
    with DAG(DAG_ID + suffix, schedule=None, start_date=START_DATE, catchup=False,
             default_args={**DEFAULT_ARGS, "retries": 0}, tags=["test"], render_template_as_native_obj=True,
             params=deploy_form(["llama4-scout", "llama-3-8b"], "llama4-scout", catalog_index()[1])):
        plan = plan_deployment()
        serving = {"target": plan["target"], "serving": plan["serving"]}
        smoke = SmokeTestOperator(task_id="smoke_test", release=plan["release"], smoke_test=plan["smoke_test"],
                                  deadline_s=deadline_s, **serving)
        plan >> smoke >> BenchmarkOperator(task_id="benchmark", benchmark=plan["benchmark"], **serving,
                                           trigger_rule=TriggerRule.NONE_FAILED)

"""Test DAGs: the cluster-side steps of the deploy pipeline alone (HF token secret, Helm deploy,
wait ready), wired as build_deploy_dag wires them, waiting in the worker and deferred."""

from __future__ import annotations

from airflow.sdk import DAG

from llm_on_eks.catalog import catalog_index
from llm_on_eks.factory import DEFAULT_ARGS, START_DATE
from llm_on_eks.operators.helm_deploy import HelmDeployOperator, WaitReadyOperator
from llm_on_eks.operators.hf_token_secret import HfTokenSecretOperator
from llm_on_eks.operators.plan_deployment import plan_deployment
from llm_on_eks.params import deploy_form

DAG_ID = "test_cluster_steps"

for suffix, deferrable in (("", False), ("_deferrable", True)):
    with DAG(DAG_ID + suffix, schedule=None, start_date=START_DATE, catchup=False,
             default_args={**DEFAULT_ARGS, "retries": 0}, tags=["test"], render_template_as_native_obj=True,
             params=deploy_form(["llama-3-8b", "llama4-scout"], "llama-3-8b", catalog_index()[1])):
        plan = plan_deployment()
        deploy = HelmDeployOperator(task_id="helm_deploy", target=plan["target"], release=plan["release"])
        HfTokenSecretOperator(task_id="hf_token_secret", target=plan["target"], aws=plan["aws"],
                              hf_token=plan["hf_token"]) >> deploy
        deploy >> WaitReadyOperator(task_id="wait_ready", target=plan["target"], release=plan["release"],
                                    deploy=deploy.output, deferrable=deferrable)

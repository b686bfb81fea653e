"""Test DAGs: the AWS half of the deploy pipeline alone (provision and storage groups, wired as
build_deploy_dag wires them) and the AWS teardown group, recording the removal as
teardown_deployment does (the idle teardown finds the cluster by it), waiting in the worker and
deferred.
Polls every second: the test's stand-in AWS turns CREATING into ACTIVE after one look."""

from __future__ import annotations

from airflow.sdk import DAG, Param

from llm_on_eks.catalog import catalog_index
from llm_on_eks.factory import DEFAULT_ARGS, START_DATE, provision_group, storage_group, teardown_aws_group
from llm_on_eks.operators.plan_deployment import plan_deployment
from llm_on_eks.operators.register import register_removal
from llm_on_eks.params import deploy_form

PROVISION_DAG_ID = "aws_provision"
TEARDOWN_DAG_ID = "aws_teardown"
MODELS = ["llama4-scout", "llama4-maverick", "llama-3-8b"]

for suffix, deferrable in (("", False), ("_deferrable", True)):
    with DAG(PROVISION_DAG_ID + suffix, schedule=None, start_date=START_DATE, catchup=False,
             default_args={**DEFAULT_ARGS, "retries": 0}, tags=["test"], render_template_as_native_obj=True,
             params=deploy_form(MODELS, "llama4-scout", catalog_index()[1])) as dag:
        plan = plan_deployment()
        provision = provision_group(plan, deferrable=deferrable, waiter_delay=1)
        storage, fsx = storage_group(plan, deferrable=deferrable, waiter_delay=1)
        plan >> provision
        dag.get_task("provision.ensure_cluster") >> storage

    with DAG(TEARDOWN_DAG_ID + suffix, schedule=None, start_date=START_DATE, catchup=False,
             default_args={**DEFAULT_ARGS, "retries": 0}, tags=["test"], render_template_as_native_obj=True,
             params={**deploy_form(MODELS, "llama4-scout", catalog_index()[1]),
                     "delete_cluster": Param(False, type="boolean"), "delete_fsx": Param(False, type="boolean"),
                     "delete_artifacts": Param(False, type="boolean")}):
        plan = plan_deployment()
        plan >> teardown_aws_group(plan, delete_cluster="{{ params.delete_cluster }}",
                                   delete_fsx="{{ params.delete_fsx }}",
                                   delete_artifacts="{{ params.delete_artifacts }}", deferrable=deferrable,
                                   waiter_delay=1) >> register_removal(plan["target"], "requested")

"""Test DAG: the device plugin step alone, after the plan, with a short wait so a node that
never advertises its devices fails in seconds."""

from __future__ import annotations

from airflow.sdk import DAG

from llm_on_eks.catalog import catalog_index
from llm_on_eks.factory import DEFAULT_ARGS, START_DATE
from llm_on_eks.operators.device_plugin import DevicePluginOperator
from llm_on_eks.operators.plan_deployment import plan_deployment
from llm_on_eks.params import deploy_form

WAIT_S = 5

models, instance_types = catalog_index()
with DAG("test_device_plugin", schedule=None, start_date=START_DATE, catchup=False,
         default_args={**DEFAULT_ARGS, "retries": 0}, tags=["test"], render_template_as_native_obj=True,
         params=deploy_form(models, "llama4-scout", instance_types)):
    plan = plan_deployment()
    DevicePluginOperator(task_id="device_plugin", target=plan["target"], profile=plan["profile"],
                         kubernetes=plan["kubernetes"], wait_s=WAIT_S)

"""Test DAGs: the prepare_weights group (Neuron compile, FP8 staging to FSx) alone, built by the
factory's builder, for runs on the local control plane against a moto S3, waiting in the worker
and deferred. The FSx handles stand in for the storage group's output (FSx itself is the AWS
half's business)."""

from __future__ import annotations

from airflow.sdk import DAG

from llm_on_eks.catalog import catalog_index
from llm_on_eks.factory import DEFAULT_ARGS, START_DATE, prepare_weights_group
from llm_on_eks.operators.plan_deployment import plan_deployment
from llm_on_eks.params import deploy_form

DAG_ID = "test_weight_steps"
FSX = {"file_system_id": "fs-0123456789abcdef0", "dns_name": "fs-0123456789abcdef0.fsx.us-west-2.amazonaws.com",
       "mount_name": "abcdefgh"}

for suffix, deferrable in (("", False), ("_deferrable", True)):
    with DAG(DAG_ID + suffix, schedule=None, start_date=START_DATE, catchup=False,
             default_args={**DEFAULT_ARGS, "retries": 0}, tags=["test"], render_template_as_native_obj=True,
             params=deploy_form(["llama4-scout", "llama4-maverick"], "llama4-scout", catalog_index()[1])):
        plan = plan_deployment()
        plan >> prepare_weights_group(plan, FSX, deferrable=deferrable)

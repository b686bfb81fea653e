"""Test DAGs: a DAG of a team's own using ``llm_endpoint`` (its body reads the holds the cluster
shows, and can hold the deployment as a second consumer run would), and the start of a teardown
(plan, take_lease, release_lease), which ``llm_endpoint``'s release starts."""

from __future__ import annotations

from airflow.sdk import DAG, Param, task

from llm_on_eks.factory import DEFAULT_ARGS, START_DATE, llm_endpoint, release_lease, take_lease
from llm_on_eks.operators.lease import TEARDOWN
from llm_on_eks.operators.plan_teardown import plan_teardown
from llm_on_eks.params import teardown_form

DAG_ID = "test_llm_endpoint"
TEARDOWN_DAG_ID = "test_llm_endpoint_teardown"


@task
def use(endpoint: dict, params: dict | None = None, ti=None) -> dict:
    """The holds on the deployment while this run uses it, after ``params["also_held_by"]`` (a
    second consumer run) held it too; and this DAG's next run as a task reads it (the idle judge's
    and the warm-up's source)."""
    from llm_on_eks.kube.access import api_client
    from llm_on_eks.kube.holds import live_holds, take_hold

    with api_client(endpoint["access"]) as api:
        if params["also_held_by"]:
            take_hold(api, endpoint["namespace"], endpoint["deployment"], params["also_held_by"], 3600)
        holds = [h.holder for h in live_holds(api, endpoint["namespace"], endpoint["deployment"])]
    return {"holds": holds, "next_run": ti.get_dag(DAG_ID).next_dagrun.isoformat()}


with DAG(DAG_ID, schedule="0 2 * * *", start_date=START_DATE, catchup=False, default_args={**DEFAULT_ARGS, "retries": 0},
         tags=["test"], params={"deploy": Param({}, type="object"), "also_held_by": Param(None, type=["null", "string"])}):
    with llm_endpoint(model="llama-3-8b", overrides="{{ params.deploy | tojson }}", when_released="teardown",
                      teardown_dag_id=TEARDOWN_DAG_ID) as llm:
        use(llm.endpoint)

with DAG(TEARDOWN_DAG_ID, schedule=None, start_date=START_DATE, catchup=False,
         default_args={**DEFAULT_ARGS, "retries": 0}, tags=["test"], render_template_as_native_obj=True,
         params=teardown_form()):
    plan = plan_teardown()
    take = take_lease(plan, TEARDOWN)
    release_lease(plan, take, [take])

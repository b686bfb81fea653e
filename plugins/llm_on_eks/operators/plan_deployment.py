"""The ``plan_deployment`` step: validate the run's params against the catalog, size and price
the deployment, and refuse bad input before anything is created."""

from __future__ import annotations

from typing import Any

from airflow.sdk import task
from airflow.sdk.exceptions import AirflowFailException

from llm_on_eks.inputs import InputError, check_known
from llm_on_eks.plan import PlanError, build_plan
from llm_on_eks.plan_report import SECTIONS, summarize


@task(multiple_outputs=True)
def plan_deployment(**context: Any) -> dict[str, Any]:
    """The plan, pushed whole and one XCom per section, so a step can take just the section it
    acts on (``plan["nodegroup"]``), and its summary. A refusal is final: retrying cannot fix the input."""
    try:
        check_known(context["dag_run"].conf or {}, context["dag"].params)
        plan = build_plan(dict(context["params"]))
    except (InputError, PlanError) as exc:
        raise AirflowFailException(f"refused before creating anything: {exc}") from None
    summary = summarize(**{k: plan[k] for k in SECTIONS})
    print(summary)
    return {**plan, "summary": summary}  # the summary too, for the person asked to approve (approve_spend)

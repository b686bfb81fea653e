"""The ``plan_teardown`` step: what a teardown acts on, from the deployment's identity alone."""

from __future__ import annotations

from typing import Any

from airflow.sdk import task
from airflow.sdk.exceptions import AirflowFailException

from llm_on_eks.inputs import InputError, check_known
from llm_on_eks.plan import PlanError, build_teardown_plan


@task(multiple_outputs=True)
def plan_teardown(**context: Any) -> dict[str, Any]:
    """The teardown plan, whole and one XCom per section (``plan["nodegroup"]``). A refusal is
    final: retrying cannot fix the input."""

    try:
        check_known(context["dag_run"].conf or {}, context["dag"].params)
        plan = build_teardown_plan(dict(context["params"]))
    except (InputError, PlanError) as exc:
        raise AirflowFailException(f"refused before touching anything: {exc}") from None
    print(f"Teardown of {plan['deployment']!r} in {plan['kubernetes']['namespace']} on {plan['cluster']['name']} "
          f"({plan['aws']['region']}){' (DRY RUN: nothing will be removed)' if plan['dry_run'] else ''}")
    return dict(plan)

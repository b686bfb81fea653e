"""approve_spend: who is asked, and where the step sits. Held, approved and rejected runs under the
real scheduler are tests/ui/test_approval.py."""

from __future__ import annotations

import pytest

from llm_on_eks.operators.approval import approval_reasons
from tests.test_dag_integrity import _upstream, dagbag  # noqa: F401 - a fixture


@pytest.mark.parametrize(("hourly", "creates", "limit", "new_clusters", "asked"), [
    (98.32, False, None, False, []),  # no rule set: never asked
    (98.32, False, 50.0, False, ["above"]),
    (1.21, False, 50.0, False, []),
    (50.0, False, 50.0, False, []),  # at the limit is within it
    (1.21, True, 50.0, True, ["cluster"]),
    (98.32, True, 50.0, True, ["above", "cluster"]),
    (98.32, True, None, False, []),
])
def test_approval_is_asked_for_what_the_rules_name(hourly, creates, limit, new_clusters, asked):
    reasons = approval_reasons(hourly_usd=hourly, creates_cluster=creates, limit_usd=limit, new_clusters=new_clusters)
    assert [("above" if "above" in r else "cluster") for r in reasons] == asked
    if "above" in asked:
        assert f"${hourly:,.2f}/hour" in reasons[0] and "approve_above_usd_per_hour" in reasons[0]


def test_the_approval_comes_after_preflight_and_before_anything_is_created(dagbag):  # noqa: F811
    for dag_id in ("deploy_llama4", "deploy_model"):
        dag = dagbag.dags[dag_id]
        approve = dag.get_task("provision.approve_spend")
        assert {t.task_id for t in approve.upstream_list} == {"plan_deployment", "provision.preflight"}
        assert {t.task_id for t in approve.downstream_list} == {"provision.ensure_network", "provision.ensure_roles",
                                                                "prepare_weights.choose_weight_prep"}
        # Every step that creates or changes something is after it; a rejection skips them all.
        before = {"plan_deployment", "provision.preflight", "provision.approve_spend"}
        unguarded = [t.task_id for t in dag.tasks
                     if t.task_id not in before and "provision.approve_spend" not in _upstream(dag, t.task_id)]
        assert unguarded == []
    assert "provision.approve_spend" not in dagbag.dags["teardown_deployment"].task_ids

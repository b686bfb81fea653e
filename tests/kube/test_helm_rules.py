"""Helm decisions without a cluster: whose release it is, and how a release left pending by a
killed helm is brought back before the deploy acts on it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from llm_on_eks.kube.helm import STUCK_AFTER_S, HelmBusy, foreign_release, stuck_recovery, unlocked
from llm_on_eks.naming import MANAGED_BY_KEY

NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
OLD = (NOW - timedelta(seconds=STUCK_AFTER_S + 1)).isoformat()
# helm prints Go timestamps: nanoseconds and a numeric offset.
RECENT = (NOW - timedelta(seconds=30)).strftime("%Y-%m-%dT%H:%M:%S.123456789+00:00")


def _history(*statuses: str, updated: str = OLD) -> list[dict]:
    return [{"revision": i, "status": s, "updated": updated, "chart": "vllm-serving-0.1.0"}
            for i, s in enumerate(statuses, start=1)]


@pytest.mark.parametrize(("history", "recovery"), [
    ([], None),
    (_history("superseded", "deployed"), None),
    (_history("deployed", "failed"), None),  # the next upgrade re-applies it; nothing is stuck
    (_history("superseded", "deployed", "pending-upgrade"), ("rollback", 2)),
    (_history("deployed", "failed", "pending-rollback"), ("rollback", 1)),
    (_history("pending-install"), ("uninstall", None)),
    (_history("failed", "pending-upgrade"), ("uninstall", None)),
])
def test_stuck_recovery(history, recovery):
    assert stuck_recovery(history, NOW) == recovery


def test_a_recent_pending_revision_is_left_to_the_helm_working_on_it_until_it_counts_as_stuck():
    with pytest.raises(HelmBusy, match="revision 2 is pending-upgrade since 30 s") as busy:
        stuck_recovery(_history("deployed", "pending-upgrade", updated=RECENT), NOW)
    assert busy.value.revision == 2
    assert busy.value.stuck_at == pytest.approx((NOW - timedelta(seconds=30)).timestamp() + STUCK_AFTER_S)


@pytest.mark.parametrize(("history", "settled"), [
    (_history("deployed", "pending-upgrade"), False),
    (_history("deployed", "deployed"), True),  # its helm finished
    (_history("deployed", "failed"), True),
    (_history("deployed", "pending-upgrade", "pending-rollback"), True),  # someone else acts now
    ([], True),  # uninstalled
])
def test_what_settles_the_pending_revision_being_waited_for(history, settled):
    assert unlocked(history, 2) is settled


OURS = {"labels": {MANAGED_BY_KEY: "llm-on-eks"}}


@pytest.mark.parametrize(("found", "values", "problem"), [
    (None, None, None),
    ({"chart": "vllm-serving-0.1.0"}, OURS, None),
    ({"chart": "nginx-1.2.3"}, OURS, "made from chart nginx-1.2.3, not llm-on-eks's vllm-serving"),
    ({"chart": "vllm-serving-extra-1.0"}, {}, "lack the label"),
    ({"chart": "vllm-serving-0.1.0"}, {"labels": {MANAGED_BY_KEY: "someone"}}, "lack the label"),
    ({"chart": ""}, None, "made from chart unknown"),
])
def test_foreign_release(found, values, problem):
    found_problem = foreign_release(found, values)
    assert found_problem is None if problem is None else problem in found_problem

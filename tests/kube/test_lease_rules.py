"""The Lease rules (``llm_on_eks.kube.lease.decide``), table by table, no servers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from llm_on_eks.kube.lease import LeaseView, decide

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
ME = "teardown_deployment/manual__b"


def held(holder: str | None, renewed_ago_s: float | None = 60, duration_s: int | None = 300,
         action: str | None = "deploy") -> LeaseView:
    renewed = NOW - timedelta(seconds=renewed_ago_s) if renewed_ago_s is not None else None
    return LeaseView(holder=holder, renewed=renewed, duration_s=duration_s, action=action, resource_version="7")


@pytest.mark.parametrize(("found", "step", "reason"), [
    (None, "create", "free: no lease"),
    (held(None), "take", "free: released"),
    (held(""), "take", "free: released"),
    (held(ME), "renew", "held by this run"),
    # Held by this run but stale: still ours to renew (no one took it over).
    (held(ME, renewed_ago_s=3600), "renew", "held by this run"),
    (held("deploy_model/manual__a"), "wait", "held by run deploy_model/manual__a (deploy), renewed "
                                             "2026-11-25T11:59:00+00:00, until 2026-11-25T12:04:00+00:00"),
    # One second left is still held; expiry on the second is stale (client-go: renew + duration > now).
    (held("deploy_model/manual__a", renewed_ago_s=299), "wait", "held by run deploy_model/manual__a"),
    (held("deploy_model/manual__a", renewed_ago_s=300), "take", "stale: held by run deploy_model/manual__a"),
    (held("deploy_model/manual__a", renewed_ago_s=4000, action=None), "take",
     "stale: held by run deploy_model/manual__a (unknown action)"),
    # A Lease that cannot say when it expires is not alive.
    (held("deploy_model/manual__a", renewed_ago_s=None), "take", "stale: held by run deploy_model/manual__a"),
    (held("deploy_model/manual__a", duration_s=None), "take", "stale: held by run deploy_model/manual__a"),
], ids=["missing", "released", "released-empty", "mine", "mine-stale", "held", "held-last-second", "expired",
        "expired-no-action", "never-renewed", "no-duration"])
def test_decide(found, step, reason):
    decision = decide(found, ME, NOW)
    assert decision.step == step and decision.reason.startswith(reason), decision

"""What a consumer DAG's schedule decides (``llm_endpoint``'s Asset events, Airflow's next run):
the idle judge keeps a deployment for a consumer due soon, the warm-up brings a removed one up
ahead of its consumer, and the summary prices both. Tables, no servers."""

from __future__ import annotations

from datetime import timedelta

import pytest

from llm_on_eks.operators.idle_teardown import consumer_records, latest_records, summarize
from llm_on_eks.serving.consumers import Consumer, due_consumer, warm_up_decision
from llm_on_eks.serving.idleness import judge
from tests.test_idleness import NOW, seen


def in_minutes(minutes: float | None):
    return None if minutes is None else NOW + timedelta(minutes=minutes)


def consumer(dag_id: str = "nightly_batch", minutes: float | None = 12, keep: float = 15) -> Consumer:
    return Consumer(dag_id, in_minutes(minutes), keep, cold_start_s=840)


@pytest.mark.parametrize(("consumers", "teardown", "reason"), [
    ((), True, "idle 90 min, TTL 60 min"),
    ((consumer(),), False, "kept: nightly_batch runs in 12 min (idle 90 min, TTL 60 min)"),
    ((consumer(minutes=40),), True, "idle 90 min"),  # beyond its keep window: a warm-up brings it back
    ((consumer(minutes=None),), True, "idle 90 min"),  # paused, unscheduled or gone
    ((consumer(minutes=-3),), True, "idle 90 min"),  # due already: that run holds it or brings it up
    ((consumer(minutes=40), consumer("evals", minutes=20, keep=30), consumer("late", minutes=25, keep=30)), False,
     "kept: evals runs in 20 min"),
])
def test_an_idle_deployment_is_kept_for_a_consumer_due_within_its_window(consumers, teardown, reason):
    verdict = judge(seen(consumers=consumers))
    assert verdict.teardown is teardown and verdict.reason.startswith(reason), verdict
    if not teardown:
        assert verdict.state is not None  # the idle clock goes on: kept for a run, not busy
        assert verdict.kept_for == {"dag_id": reason.split()[1], "in_minutes": float(reason.split()[4]),
                                    "cold_start_s": 840}


def test_only_an_idle_deployment_is_kept_for_a_consumer():
    """A failed deploy is not worth keeping for anyone, and a busy one is kept anyway."""
    failed = judge(seen(consumers=(consumer(),), failed_at=NOW - timedelta(hours=1)))
    assert failed.teardown and failed.kept_for is None
    assert due_consumer((consumer(),), NOW)[1] == 12


RECORD = {"consumer": "nightly_batch", "deployment": "scout", "cluster": "ml", "region": "us-west-2",
          "namespace": "batch", "conf": {"model": "llama4-scout"}, "cold_start_s": 840, "hourly_usd": 55.04,
          "keep_within_minutes": 14}


@pytest.mark.parametrize(("minutes", "serving", "deploy", "why"), [
    (None, False, False, "scout for nightly_batch: not warmed up, nightly_batch is paused, unscheduled or gone"),
    (20, True, False, "scout for nightly_batch: serving (the idle teardown keeps it for the run in 20 min)"),
    (-1, False, False, "scout for nightly_batch: its run is due already and brings it up itself"),
    (30, False, False, "scout for nightly_batch: runs in 30 min, warmed up 24 min ahead"),
    (20, False, True, "scout for nightly_batch: runs in 20 min, cold start 14 min: deploying now ($5.50 of nodes "
                      "before the run starts, and the run waits 14 min less)"),
])
def test_a_removed_deployment_is_warmed_up_a_cold_start_ahead_of_its_consumer(minutes, serving, deploy, why):
    assert warm_up_decision(RECORD, in_minutes(minutes), serving, NOW) == (deploy, why)


def test_consumer_events_are_not_deployment_records():
    deployment = {"deployment": "scout", "cluster": "ml", "region": "us-west-2", "namespace": "batch", "hourly_usd": 55}
    older = {**RECORD, "cold_start_s": 900}
    extras = [deployment, older, {**RECORD, "consumer": "evals"}, RECORD]
    assert latest_records(extras) == [deployment]
    assert consumer_records(extras) == {("us-west-2", "ml", "batch", "scout"): [{**RECORD, "consumer": "evals"},
                                                                                 RECORD]}


def test_the_summary_prices_keeping_a_deployment_for_its_consumer(monkeypatch):
    from llm_on_eks.operators import idle_teardown

    monkeypatch.setattr(idle_teardown, "billing_report", lambda aws, cluster: {"items": [], "hourly_usd": 0.0})
    verdict = {"deployment": "scout", "namespace": "batch", "cluster": "ml", "region": "us-west-2",
               "teardown": False, "reason": "kept: nightly_batch runs in 12 min (idle 90 min, TTL 60 min)",
               "hourly_usd": 55.04, "idle_cost_usd": 0.0, "plan": {"aws": {"conn_id": "aws_default", "region": "us-west-2"}},
               "kept_for": {"dag_id": "nightly_batch", "in_minutes": 12.0, "cold_start_s": 840}}
    summary = summarize.function([[verdict]], [])
    assert summary["kept_for_consumers"] == [{"deployment": "scout", "dag_id": "nightly_batch", "in_minutes": 12.0,
                                              "cold_start_s": 840, "idle_until_run_usd": 11.01,
                                              "cold_start_usd": 12.84}]

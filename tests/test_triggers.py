"""The cluster triggers serialize ids only (never the plan) and rebuild from what they serialize,
as the triggerer does after a restart."""

from __future__ import annotations

import asyncio
import importlib
import json
import time

import pytest
from airflow.triggers.base import BaseTrigger, TriggerEvent

from llm_on_eks.plan import build_plan
from llm_on_eks.triggers.kube import JobCompleteTrigger, ReleaseReadyTrigger
from llm_on_eks.triggers.settled import SettledTrigger


@pytest.fixture(scope="module")
def access():
    return build_plan({"model": "llama4-scout", "accelerator": "neuron", "region": "us-east-2"})["target"]["access"]


@pytest.mark.parametrize("make", [
    lambda access: JobCompleteTrigger(access=access, job_name="scout-compile-1", deadline=1.0, budget_s=60, poll_s=5),
    lambda access: ReleaseReadyTrigger(access=access, release="scout", multi_node=True, deadline=1.0, budget_s=60,
                                       poll_s=5),
], ids=["job", "release"])
def test_round_trip_carries_ids_only(access, make):
    trigger = make(access)
    classpath, kwargs = trigger.serialize()
    assert len(json.dumps(kwargs)) < 600, kwargs  # ids, not a plan
    assert set(kwargs["access"]) == {"kubernetes_conn_id", "aws_conn_id", "region", "cluster", "namespace"}
    module, _, name = classpath.rpartition(".")
    rebuilt = getattr(importlib.import_module(module), name)(**kwargs)
    assert rebuilt.serialize() == (classpath, kwargs)


class FiresAt(BaseTrigger):
    """Fires once the clock passes ``at`` (a Unix time)."""

    def __init__(self, at: float):
        super().__init__()
        self.at = at

    def serialize(self):
        return f"{__name__}.FiresAt", {"at": self.at}

    async def run(self):
        await asyncio.sleep(max(0.0, self.at - time.time()))
        yield TriggerEvent({"status": "success", "result": self.at})


def first_event(trigger) -> tuple[dict, float]:
    async def first():
        async for event in trigger.run():
            return event.payload, time.time()
    return asyncio.run(first())


def test_a_resumption_waits_out_the_settle_time_and_a_later_one_does_not(access):
    # apache/airflow#72716: an event right after the deferral is held until settle_s has passed.
    settled = SettledTrigger.around(FiresAt(time.time()), settle_s=1.0)
    payload, at = first_event(settled)
    assert payload["status"] == "success" and at >= settled.deferred_at + 1.0
    # An event after the settle time passes on as it comes.
    late = SettledTrigger(f"{__name__}.FiresAt", {"at": time.time() + 0.5}, deferred_at=time.time() - 5, settle_s=1.0)
    payload, at = first_event(late)
    assert payload["result"] <= at < payload["result"] + 0.5
    # The triggerer rebuilds it (and what it wraps) from what it serializes.
    wrapped = SettledTrigger.around(JobCompleteTrigger(access=access, job_name="j", deadline=1.0, budget_s=60, poll_s=5))
    classpath, kwargs = wrapped.serialize()
    assert classpath == "llm_on_eks.triggers.settled.SettledTrigger"
    rebuilt = SettledTrigger(**json.loads(json.dumps(kwargs)))
    assert rebuilt.serialize() == (classpath, kwargs) and rebuilt.inner.serialize() == wrapped.inner.serialize()

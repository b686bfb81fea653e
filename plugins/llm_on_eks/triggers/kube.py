"""Deferrable waits on the cluster: a Job's completion, a release's readiness.

Both can take hours (Neuron compiles, Maverick's start-up), so the task gives back its worker
slot and the triggerer polls. Each poll opens a fresh connection through the same access path
as the tasks (llm_on_eks.kube.access), so an EKS token never outlives its ~15 minutes
(apache/airflow#63020), and runs the same probe the in-worker wait uses. The deadline is an
absolute time fixed when the task defers: a triggerer restart does not restart the budget.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

POLL_S = 10


class KubeWaitTrigger(BaseTrigger):
    """Poll until the Job ``job_name`` completes or, without one, the plan's release is ready.

    ``deadline`` is a Unix time; ``budget_s`` only words the timeout message.
    """

    def __init__(self, plan: dict[str, Any], deadline: float, budget_s: int, job_name: str | None = None,
                 poll_s: float = POLL_S):
        super().__init__()
        self.plan = plan
        self.deadline = deadline
        self.budget_s = budget_s
        self.job_name = job_name
        self.poll_s = poll_s

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (f"{type(self).__module__}.{type(self).__qualname__}",
                {"plan": self.plan, "deadline": self.deadline, "budget_s": self.budget_s, "job_name": self.job_name,
                 "poll_s": self.poll_s})

    def _probe(self, last: bool) -> dict[str, Any] | None:
        """One look, blocking (the kubernetes client is synchronous): run in a thread."""
        from llm_on_eks.kube import jobs, readiness
        from llm_on_eks.kube.access import api_client

        namespace = self.plan["kubernetes"]["namespace"]
        with api_client(self.plan) as api:
            if self.job_name:
                state, detail = jobs.job_status(api, namespace, self.job_name)
                if state == "complete":
                    return {"status": "success", "result": detail}
                if state == "failed":
                    return {"status": "error", "message": detail}
                if last:
                    return {"status": "error", "message": jobs.timed_out(api, namespace, self.job_name, self.budget_s)}
                return None
            state = readiness.check(api, self.plan, datetime.now(UTC))
            if state.ready:
                return {"status": "success"}
            if state.unschedulable or last:
                return {"status": "error", "unschedulable": state.unschedulable, "detail": state.detail}
            return None

    async def run(self) -> AsyncIterator[TriggerEvent]:
        while True:
            event = await asyncio.to_thread(self._probe, time.time() > self.deadline)
            if event is not None:
                yield TriggerEvent(event)
                return
            await asyncio.sleep(self.poll_s)

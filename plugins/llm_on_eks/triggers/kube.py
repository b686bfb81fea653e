"""Deferrable waits on the cluster: a Job's completion, a release's readiness, a release another
helm holds.

The first two can take hours (Neuron compiles, Maverick's start-up), the third minutes (a killed
worker's helm), so the task gives back its worker slot and the triggerer polls. A run opens one
client through the same access path as the tasks (``llm_on_eks.kube.access``; helm gets a
kubeconfig from it), which renews the AWS credentials and the EKS token as they age, so a
two-hour wait never holds an expired one (apache/airflow#63020), and each poll runs the same
probe the in-worker wait uses. The deadline is an absolute time fixed when the task defers: a
triggerer restart does not restart the budget.

Every event has one shape, which ``DeploymentStepOperator.execute_complete`` validates:
``{"status": "success", "result": ...}`` or ``{"status": "error", "message": ..., "result": ...}``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from datetime import UTC, datetime
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from llm_on_eks.kube import jobs, readiness
from llm_on_eks.kube.access import api_client, kubeconfig
from llm_on_eks.kube.helm import Helm, unlocked
from llm_on_eks.plan.types import ClusterAccess


class _ClusterPollTrigger(BaseTrigger):
    """Poll ``look`` in a thread until it answers or ``deadline`` (a Unix time) passes; the
    subclass's fields (ids only, never the plan) are serialized beside the common ones."""

    def __init__(self, access: ClusterAccess, deadline: float, budget_s: int, poll_s: float):
        super().__init__()
        self.access = access
        self.deadline = deadline
        self.budget_s = budget_s
        self.poll_s = poll_s

    def fields(self) -> dict[str, Any]:
        return {}

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (f"{type(self).__module__}.{type(self).__qualname__}",
                {"access": self.access, "deadline": self.deadline, "budget_s": self.budget_s, "poll_s": self.poll_s,
                 **self.fields()})

    def client(self) -> AbstractContextManager[Any]:
        """What ``look`` is given: a kubernetes client, by default."""
        return api_client(self.access)

    def look(self, api: Any, last: bool) -> dict[str, Any] | None:
        raise NotImplementedError

    async def run(self) -> AsyncIterator[TriggerEvent]:
        # The kubernetes client and helm are synchronous: opening them and each look run in a thread.
        with ExitStack() as stack:
            api = await asyncio.to_thread(stack.enter_context, self.client())
            while True:
                event = await asyncio.to_thread(self.look, api, time.time() > self.deadline)
                if event is not None:
                    yield TriggerEvent(event)
                    return
                # The last look comes at the deadline, not up to a poll after it.
                await asyncio.sleep(min(self.poll_s, max(0.0, self.deadline - time.time())))


class JobCompleteTrigger(_ClusterPollTrigger):
    """Until the Job ``job_name`` completes (result: its summary), fails, or runs out of time."""

    def __init__(self, job_name: str, **kwargs: Any):
        super().__init__(**kwargs)
        self.job_name = job_name

    def fields(self) -> dict[str, Any]:
        return {"job_name": self.job_name}

    def look(self, api: Any, last: bool) -> dict[str, Any] | None:
        namespace = self.access["namespace"]
        state, detail = jobs.job_status(api, namespace, self.job_name)
        if state == "complete":
            return {"status": "success", "result": detail}
        if state == "failed":
            return {"status": "error", "message": detail, "result": None}
        if last:
            return {"status": "error", "message": jobs.timed_out(api, namespace, self.job_name, self.budget_s),
                    "result": None}
        return None


class ReleaseReadyTrigger(_ClusterPollTrigger):
    """Until the release's pods are ready, some cannot be scheduled, or time runs out (result:
    the unschedulable pods; message: the pods and their last events)."""

    def __init__(self, release: str, multi_node: bool, **kwargs: Any):
        super().__init__(**kwargs)
        self.release = release
        self.multi_node = multi_node

    def fields(self) -> dict[str, Any]:
        return {"release": self.release, "multi_node": self.multi_node}

    def look(self, api: Any, last: bool) -> dict[str, Any] | None:
        state = readiness.check(api, self.access["namespace"], self.release, self.multi_node, datetime.now(UTC))
        if state.ready:
            return {"status": "success", "result": None}
        if state.unschedulable or last:
            return {"status": "error", "message": state.detail, "result": {"unschedulable": state.unschedulable}}
        return None


class ReleaseUnlockedTrigger(_ClusterPollTrigger):
    """Until the release's pending ``revision`` is settled by the helm working on it, or the
    deadline passes, after which it counts as stuck; both are a success: the step runs again and
    upgrades or recovers. Asks helm itself (``helm history``), whatever storage it uses."""

    def __init__(self, release: str, revision: int, **kwargs: Any):
        super().__init__(**kwargs)
        self.release = release
        self.revision = revision

    def fields(self) -> dict[str, Any]:
        return {"release": self.release, "revision": self.revision}

    @contextmanager
    def client(self) -> Any:
        with kubeconfig(self.access) as config:
            yield Helm(config, self.access["namespace"])

    def look(self, helm: Any, last: bool) -> dict[str, Any] | None:
        if last or unlocked(helm.history(self.release), self.revision):
            return {"status": "success", "result": None}
        return None

"""Every deferral's trigger, wrapped so the task cannot resume within seconds of deferring.

When a trigger fires right after a task defers, the resumed try can be running before the
scheduler reads the deferring try's own exit ("success"); it then takes that for the resumed
try's end, fails the try and clears its resume point (apache/airflow#72716, open in Airflow
3.3.2; fix PRs #72767 and #73546 unmerged). The task goes ``up_for_retry`` and waits its
retry delay (2-4 minutes by default), where waits on the local AWS and kwok end in seconds,
against 10 s here. The wrapped trigger polls as it always does; only an event that
comes sooner than ``settle_s`` after the deferral is held back until then, so a wait that lasts
longer costs nothing. It narrows the race (the issue's timeline: the stale exit was read 6.5 s
after the deferral) without closing it; the retried task adopts what exists, as before.
"""

from __future__ import annotations

import asyncio
import importlib
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

SETTLE_S = 10.0


class SettledTrigger(BaseTrigger):
    """Run the trigger ``classpath(**kwargs)``; pass on its event no sooner than ``settle_s``
    after ``deferred_at`` (a Unix time)."""

    def __init__(self, classpath: str, kwargs: dict[str, Any], deferred_at: float, settle_s: float = SETTLE_S):
        super().__init__()
        self.classpath = classpath
        self.kwargs = kwargs
        self.deferred_at = deferred_at
        self.settle_s = settle_s
        module, _, name = classpath.rpartition(".")
        self.inner: BaseTrigger = getattr(importlib.import_module(module), name)(**kwargs)

    @classmethod
    def around(cls, trigger: BaseTrigger, settle_s: float = SETTLE_S) -> SettledTrigger:
        classpath, kwargs = trigger.serialize()
        return cls(classpath, kwargs, deferred_at=time.time(), settle_s=settle_s)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (f"{type(self).__module__}.{type(self).__qualname__}",
                {"classpath": self.classpath, "kwargs": self.kwargs, "deferred_at": self.deferred_at,
                 "settle_s": self.settle_s})

    async def run(self) -> AsyncIterator[TriggerEvent]:
        async for event in self.inner.run():
            await asyncio.sleep(max(0.0, self.deferred_at + self.settle_s - time.time()))
            yield event
            return

    async def cleanup(self) -> None:
        await self.inner.cleanup()

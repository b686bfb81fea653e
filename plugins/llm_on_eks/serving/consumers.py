"""The DAGs that use a deployment through ``llm_endpoint``, and what their schedules decide: no
peer knows when the workload runs next (they judge idleness from requests or GPU metrics alone);
Airflow does. An idle deployment is kept when a consumer runs again within its keep window, and
a removed one is brought up again (warm-up) a predicted cold start ahead of a consumer's next
run, so that the run does not wait for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

# The warm-up DAG's interval: a deployment is brought up this much earlier than its cold start
# needs, since the next check may come this late.
WARM_UP_INTERVAL_MINUTES = 10


@dataclass(frozen=True)
class Consumer:
    """A DAG that uses the deployment through ``llm_endpoint`` (its hold's Asset event), with
    what Airflow says of its next run: None when it is paused, unscheduled or gone."""

    dag_id: str
    next_run: datetime | None
    keep_within_minutes: float  # keep the deployment when its next run is due this soon
    cold_start_s: int = 0  # the plan's predicted cold start: what the run would wait for were it removed


def due_consumer(consumers: tuple[Consumer, ...], now: datetime) -> tuple[Consumer, float] | None:
    """The consumer whose next run comes soonest within its keep window, and the minutes to it."""
    due = [(c, (c.next_run - now).total_seconds() / 60) for c in consumers if c.next_run is not None]
    due = [(c, minutes) for c, minutes in due if 0 <= minutes <= c.keep_within_minutes]
    return min(due, key=lambda found: found[1]) if due else None


def warm_up_decision(record: dict[str, Any], next_run: datetime | None, serving: bool, now: datetime
                     ) -> tuple[bool, str]:
    """(deploy now?, why) for one consumer's record: its deployment is brought up when it does not
    serve and the consumer's next run is due within the predicted cold start plus one warm-up
    interval."""
    dag, deployment = record["consumer"], record["deployment"]
    if next_run is None:
        return False, f"{deployment} for {dag}: not warmed up, {dag} is paused, unscheduled or gone"
    minutes = (next_run - now).total_seconds() / 60
    cold = record["cold_start_s"] / 60
    lead = cold + WARM_UP_INTERVAL_MINUTES
    if serving:
        return False, f"{deployment} for {dag}: serving (the idle teardown keeps it for the run in {minutes:.0f} min)"
    if minutes < 0:
        return False, f"{deployment} for {dag}: its run is due already and brings it up itself"
    if minutes > lead:
        return False, f"{deployment} for {dag}: runs in {minutes:.0f} min, warmed up {lead:.0f} min ahead"
    return True, (f"{deployment} for {dag}: runs in {minutes:.0f} min, cold start {cold:.0f} min: deploying now "
                  f"(${record['hourly_usd'] * max(minutes - cold, 0) / 60:.2f} of nodes before the run starts, "
                  f"and the run waits {cold:.0f} min less)")

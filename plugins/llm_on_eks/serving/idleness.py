"""Is a deployment idle? The idle teardown's rules, as one pure function over what was read.

Idle means no useful work (skypilot#10628, dstack#2374): vLLM's counters of finished requests
and of prompt and generation tokens have not moved, and nothing is running or waiting, for at
least the deployment's idle TTL. Counters decide, not the in-flight gauge: a busy vLLM CPU server
was measured answering ``/metrics`` only after its request ended, showing 0 in flight. The last
counter values and the time they last moved are kept on the release's Service (an annotation),
so a restarted Airflow or another worker loses nothing.

It fails safe: unreadable metrics, pods not ready (a model still loading), a deployment younger
than its TTL, a protected one and one whose Lease another run holds (a deploy or a teardown in
progress) are kept, each with its reason, and so is one a DAG run holds (``llm_endpoint``). A deploy that failed (its node
group tagged ``failed-at``) is removed after a grace period unless it has served since.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from llm_on_eks.naming import LABEL_PREFIX
from llm_on_eks.serving.consumers import Consumer, due_consumer
from llm_on_eks.serving.metrics import DeploymentLoad

STATE_ANNOTATION = f"{LABEL_PREFIX}/idle-state"
COUNTERS = ("requests_succeeded", "prompt_tokens", "generation_tokens")
FAILED_GRACE_MINUTES = 30
# A node group with no release for this long was left by a run that died before registering or
# failing (Maverick on Trainium2 compiles for up to 90 minutes before its release exists).
ORPHAN_GRACE_MINUTES = 180


@dataclass(frozen=True)
class Observation:
    """What the judge read of one deployment at ``now``."""

    now: datetime
    idle_ttl_minutes: int
    protected: bool
    created_at: datetime | None  # the release's Service; None: no release
    ready: bool | None  # None: not known (no release)
    load: DeploymentLoad | None
    state: dict[str, Any] = field(default_factory=dict)  # the annotation as last written
    failed_at: datetime | None = None  # from the node group's tag
    nodegroup_created_at: datetime | None = None  # from the node group's tag
    failed_grace_minutes: int = FAILED_GRACE_MINUTES
    lease: tuple[str, str] | None = None  # (action, holder) of a live Lease on the deployment
    holds: tuple[str, ...] = ()  # the runs holding it now (llm_on_eks.kube.holds)
    consumers: tuple[Consumer, ...] = ()
    deployed_at: datetime | None = None  # when the last successful deploy run registered it


@dataclass(frozen=True)
class Verdict:
    teardown: bool
    reason: str
    state: dict[str, Any] | None  # the annotation to write; None: leave it
    idle_minutes: float | None = None
    kept_for: dict[str, Any] | None = None  # the consumer it is kept for, when it runs, the cold start it saves


def parse_state(text: str | None) -> dict[str, Any]:
    try:
        state = json.loads(text or "{}")
    except ValueError:
        return {}
    return state if isinstance(state, dict) else {}


def judge(seen: Observation) -> Verdict:
    now = seen.now
    if seen.lease is not None:  # the most current fact: another run is working on it
        action, holder = seen.lease
        return Verdict(False, f"kept: {action} in progress (run {holder})", None)
    if seen.holds:  # a DAG run is using it (llm_endpoint): it releases its hold when it ends
        return Verdict(False, f"kept: in use by {len(seen.holds)} run(s): {', '.join(seen.holds)}", None)
    if seen.protected:
        return Verdict(False, "kept: protected", None)
    if seen.failed_at is not None:  # a later successful run removes the tag
        waited = (now - seen.failed_at).total_seconds() / 60
        if waited < seen.failed_grace_minutes:
            return Verdict(False, f"kept: deploy failed {waited:.0f} min ago, grace {seen.failed_grace_minutes} min",
                           None)
        return Verdict(True, f"deploy failed {waited:.0f} min ago and no run of it has succeeded since", None)
    if seen.created_at is None:
        if seen.nodegroup_created_at is None:
            return Verdict(False, "kept: neither a release nor a node group of ours found", None)
        alone = (now - seen.nodegroup_created_at).total_seconds() / 60
        if alone < ORPHAN_GRACE_MINUTES:
            return Verdict(False, f"kept: node group without a release for {alone:.0f} min (a deploy may be on its "
                                  f"way), grace {ORPHAN_GRACE_MINUTES} min", None)
        return Verdict(True, f"node group without a release for {alone:.0f} min", None)
    # A successful deploy restarts both clocks: its smoke test and benchmark were work, and its
    # server may be a new process whose counters started again, even at the values last read.
    started = max(seen.created_at, seen.deployed_at or seen.created_at)
    age = (now - started).total_seconds() / 60
    verdict = _serving(seen, started)
    if age < seen.idle_ttl_minutes:
        # Too young to go, but read all the same: the idle clock starts at the first reading, so
        # an unused deployment goes one TTL after its deploy, not two.
        return Verdict(False, f"kept: {age:.0f} min old, younger than its idle TTL of {seen.idle_ttl_minutes} min",
                       verdict.state)
    return verdict


def _serving(seen: Observation, started: datetime) -> Verdict:
    """The verdict from readiness and vLLM's counters, for a deployment old enough to judge."""
    now = seen.now
    if not seen.ready:
        return Verdict(False, "kept: pods not ready (never stopped while loading)", None)
    load = seen.load
    if load is None or load.error or any(getattr(load, c) is None for c in COUNTERS):
        why = (load.error if load and load.error else "counters missing") if load else "not read"
        return Verdict(False, f"kept: metrics unreadable ({why})", None)
    counters = {c: getattr(load, c) for c in COUNTERS}
    busy = bool(load.in_flight)
    deploy = {"deployed_at": seen.deployed_at.isoformat(timespec="seconds")} if seen.deployed_at else {}
    previous, last_active = seen.state.get("counters"), seen.state.get("last_active")
    if seen.state.get("deployed_at") != deploy.get("deployed_at"):
        previous = None  # read before the last deploy: a new baseline
    if previous is None or last_active is None:
        state = {"counters": counters, "last_active": now.isoformat(timespec="seconds"), **deploy}
        return Verdict(False, "kept: first reading, the idle clock starts now", state)
    if busy or previous != counters:
        state = {"counters": counters, "last_active": now.isoformat(timespec="seconds"), **deploy}
        return Verdict(False, "kept: served since the last check" if not busy else "kept: requests in flight", state)
    idle = (now - datetime.fromisoformat(last_active)).total_seconds() / 60
    state = {"counters": counters, "last_active": last_active, **deploy}
    if idle < seen.idle_ttl_minutes:
        return Verdict(False, f"kept: idle {idle:.0f} of {seen.idle_ttl_minutes} min", state, idle)
    due = due_consumer(seen.consumers, now)
    if due is not None:  # removed now, it would have to start cold for that run
        consumer, minutes = due
        return Verdict(False, f"kept: {consumer.dag_id} runs in {minutes:.0f} min (idle {idle:.0f} min, TTL "
                              f"{seen.idle_ttl_minutes} min)", state, idle,
                       {"dag_id": consumer.dag_id, "in_minutes": round(minutes, 1),
                        "cold_start_s": consumer.cold_start_s})
    return Verdict(True, f"idle {idle:.0f} min, TTL {seen.idle_ttl_minutes} min", state, idle)


def idle_cost(hourly_usd: float, idle_minutes: float | None) -> float:
    """What the deployment cost while idle (catalog list price)."""
    return round(hourly_usd * (idle_minutes or 0) / 60, 2)


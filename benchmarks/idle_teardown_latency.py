"""How late the idle teardown acts: from the moment a deployment's idle TTL has passed (its last
request + TTL) to the moment teardown_idle_deployments asks EKS to delete its node group.

The judge runs only on the schedule's ticks and also only notices activity on a tick (it keeps
the counters and the time it saw them move on the Service), so the latency has two parts: the
wait for the tick that first sees the TTL passed, which depends on the schedule interval, the
TTL and when the last request came; and the run's own time from its start to the delete request
(discover, judge, take_lease, uninstall, cluster objects), measured once and passed in.

This replays the real rules (llm_on_eks.serving.idleness.judge) on the real schedule (croniter,
as Airflow's cron timetables) for many random last-request moments and prints percentiles:

    .venv/bin/python benchmarks/idle_teardown_latency.py [--overhead-s S] [--samples N]

Defaults: the */10 schedule of teardown_idle_deployments and */5, TTLs of 15, 60 and 120 min,
2000 samples each, a fixed seed, overhead 0 (the schedule's share alone).
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "plugins")]

from croniter import croniter  # noqa: E402

from llm_on_eks.serving.idleness import Observation, judge  # noqa: E402
from llm_on_eks.serving.metrics import DeploymentLoad  # noqa: E402

START = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)
CREATED = START - timedelta(days=1)  # older than any TTL: only idleness decides


def load(requests: float) -> DeploymentLoad:
    return DeploymentLoad(source="replay", running=0.0, waiting=0.0, requests_succeeded=requests,
                          prompt_tokens=requests * 100, generation_tokens=requests * 50)


def latency_s(schedule: str, ttl_min: int, last_request: datetime, overhead_s: float) -> float:
    """Seconds from ``last_request + TTL`` to the delete request, judging on each tick."""
    ticks = croniter(schedule, last_request - timedelta(minutes=30))
    state: dict = {}
    while True:
        now = ticks.get_next(datetime)
        # Traffic until the last request: the counters move between every two ticks before it.
        served = min(now, last_request).timestamp()
        verdict = judge(Observation(now=now, idle_ttl_minutes=ttl_min, protected=False, created_at=CREATED,
                                    ready=True, load=load(served), state=state))
        state = verdict.state if verdict.state is not None else state
        if verdict.teardown:
            return (now - (last_request + timedelta(minutes=ttl_min))).total_seconds() + overhead_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--overhead-s", type=float, default=0.0, help="a run's start to its delete request")
    parser.add_argument("--samples", type=int, default=2000)
    args = parser.parse_args()
    rng = random.Random(12)
    print(f"latency from TTL passed to node-group delete request, {args.samples} random last-request moments, "
          f"run overhead {args.overhead_s:.0f} s")
    print(f"{'schedule':<14}{'TTL min':>8}{'p50 s':>9}{'p95 s':>9}{'max s':>9}{'mean s':>9}")
    for schedule in ("*/10 * * * *", "*/5 * * * *"):
        for ttl in (15, 60, 120):
            moments = [START + timedelta(seconds=rng.uniform(0, 6 * 3600)) for _ in range(args.samples)]
            lat = sorted(latency_s(schedule, ttl, m, args.overhead_s) for m in moments)
            p50, p95 = (lat[min(len(lat) - 1, int(q * len(lat)))] for q in (0.5, 0.95))
            print(f"{schedule:<14}{ttl:>8}{p50:>9.0f}{p95:>9.0f}{lat[-1]:>9.0f}{statistics.fmean(lat):>9.0f}")


if __name__ == "__main__":
    main()

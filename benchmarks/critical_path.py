"""A deploy's wall time against its critical path: one deploy of Llama 4 Scout on GPU (weights
staged on FSx) onto a cluster that does not exist yet, through the real scheduler and triggerer,
with every long step held for a set time by a delaying layer (stand-ins for AWS's and the nodes'
own times): the local AWS keeps the cluster, the node groups and the FSx file system CREATING
(``local_stack.aws --hold``), and kwok's Stage delays (``local_stack/kwok_stages.py``) keep the
weight Job's pod running and the serving pods unready.

The lower bound is the DAG's longest path with each step weighted by its hold (everything else
free): what the run would take if Airflow and our code added nothing. The script prints the wall
time over it, the run's measured critical chain (each step after the one it waited for last) with
what Airflow adds before each step (upstream done -> step started) and inside it (the step's time
beyond its hold: process start, API calls, the poll interval that sees the hold end), and how much
of the held waits a worker slot was held (sampled every 2 s; deferred waits hold none). Then it
deploys the same again and prints what that run asked AWS and Kubernetes to create or change
(local_stack/changes.py: from the servers' own records) and its wall time against the first.

It brings up its own local stack (local_stack/held.py) and stops it at the end:

    scripts/demo-stop      # if the demo is up
    .venv/bin/python benchmarks/critical_path.py [--scale 1.0] [--polling]

``--scale`` multiplies every hold; ``--polling`` runs with ``[operators] default_deferrable`` off,
so the waits poll in worker slots. The holds are the plan's own times shrunk (the cluster's 15
minutes to 120 s), and so are the AWS waits' polls by default (``[llm_on_eks] waiter_delay_s``,
30 s shrunk alike to 4 s): a wait ends on average half a poll after its hold, which at full size
is 15 s of a 15-minute step and would be 15 s of a 2-minute one here. ``--full-polls`` keeps 30 s.
The Kubernetes waits poll every 2 s, as on every local stack (``[llm_on_eks] kube_poll_s``); what
each step costs to start is not shrunk, so the ratio still overstates a full-size run's.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "plugins")]

from llm_on_eks.operators.aws_wait import AwsWaitOperator  # noqa: E402
from llm_on_eks.plan.cold_start import CLUSTER_CREATE_S  # noqa: E402
from local_stack import changes, demo  # noqa: E402
from local_stack.held import HOLDS, deploy_conf, held_stack  # noqa: E402

# The holds each step waits out, by task id (ensure_addons: the add-ons are made side by side).
HELD_STEPS = {"provision.ensure_cluster": ("cluster",), "provision.ensure_system_nodegroup": ("nodegroup",),
              "provision.ensure_nodegroup": ("nodegroup",), "provision.ensure_addons": ("addon",),
              "storage.ensure_fsx": ("fs", "association"), "prepare_weights.stage_to_fsx": ("job",),
              "wait_ready": ("rollout",)}
POLL_S = 2.0


def seconds(iso: str | None) -> float | None:
    return datetime.fromisoformat(iso).timestamp() if iso else None


def longest_path(upstream: dict[str, set[str]], weight: dict[str, float]) -> tuple[float, list[str]]:
    """The heaviest path through the DAG (``upstream``: each task's direct upstream tasks)."""
    best: dict[str, tuple[float, list[str]]] = {}

    def visit(task: str) -> tuple[float, list[str]]:
        if task not in best:
            before = max((visit(u) for u in upstream[task]), default=(0.0, []), key=lambda b: b[0])
            best[task] = (before[0] + weight.get(task, 0.0), [*before[1], task])
        return best[task]

    return max((visit(t) for t in upstream), key=lambda b: b[0])


def measured_chain(upstream: dict[str, set[str]], tis: dict[str, dict]) -> list[str]:
    """From the task that ended last, back through the upstream task each one waited for last."""
    ran = {t: ti for t, ti in tis.items() if ti["start_date"] and ti["end_date"]}
    task = max(ran, key=lambda t: seconds(ran[t]["end_date"]))
    chain = [task]
    while before := [u for u in upstream[task] if u in ran]:
        task = max(before, key=lambda u: seconds(ran[u]["end_date"]))
        chain.append(task)
    return chain[::-1]


class SlotSampler:
    """Seconds each task instance was seen running (holding a worker slot) and deferred."""

    def __init__(self) -> None:
        self.running: Counter[str] = Counter()
        self.deferred: Counter[str] = Counter()
        self.last: float | None = None

    def __call__(self, tis: dict[str, list[dict]]) -> None:
        now = time.monotonic()
        step, self.last = (now - self.last if self.last else 0.0), now
        for ti in tis["held"]:
            if ti["state"] == "running":
                self.running[ti["task_id"]] += step
            elif ti["state"] == "deferred":
                self.deferred[ti["task_id"]] += step


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="multiplies every hold")
    parser.add_argument("--polling", action="store_true", help="waits poll in worker slots (no deferral)")
    parser.add_argument("--full-polls", action="store_true", help="AWS waits poll every 30 s, as at full size")
    args = parser.parse_args()
    holds = {kind: held * args.scale for kind, held in HOLDS.items()}
    full_delay = AwsWaitOperator.WAIT[0]
    delay = full_delay if args.full_polls else max(1, round(full_delay * holds["cluster"] / CLUSTER_CREATE_S))
    print(f"AWS waits poll every {delay} s (at full size {full_delay} s; the cluster's hold is "
          f"{holds['cluster'] / CLUSTER_CREATE_S:.2f} of its {CLUSTER_CREATE_S // 60} minutes)")
    with held_stack(holds, args.polling, settings={"AIRFLOW__LLM_ON_EKS__WAITER_DELAY_S": str(delay)}) as local:
        conf, api, dag_id = deploy_conf(local), local.api, demo.DAG_ID
        sampler = SlotSampler()
        dag_run, tis = demo.run_to_end(api, "held", dag_id, conf, on_poll=sampler, poll_s=POLL_S)
        if dag_run["state"] != "success":
            print(f"run {dag_run['dag_run_id']}: {dag_run['state']}; nothing to measure")
            return 1
        first = report(api, dag_id, dag_run, {ti["task_id"]: ti for ti in tis}, holds, sampler, args.polling)
        print("\nThe same deploy again (it serves: every step adopts what is there):")
        with changes.counting(local.aws_url, local.kubeconfig, local.identity["access_key_id"]) as made:
            dag_run, _ = demo.run_to_end(api, "again", dag_id, conf)
        wall = demo.wall_s(dag_run)
        print(f"\nrun {dag_run['dag_run_id']}: {dag_run['state']} in {wall:.0f} s, {wall / first:.0%} of the first "
              "deploy's wall time")
        for line in made.lines():
            print(f"  {line}")
        return 0 if dag_run["state"] == "success" else 1


def report(api, dag_id: str, dag_run: dict, tis: dict[str, dict], holds: dict[str, float], sampler: SlotSampler,
           polling: bool) -> float:
    """Print the run's measures; its wall time."""
    tasks = api.get(f"/api/v2/dags/{dag_id}/tasks")["tasks"]
    upstream: dict[str, set[str]] = {t["task_id"]: set() for t in tasks}
    for task in tasks:
        for down in task["downstream_task_ids"]:
            upstream[down].add(task["task_id"])
    ran = {t for t, ti in tis.items() if ti["state"] == "success"}
    weight = {t: sum(holds[kind] for kind in kinds) for t, kinds in HELD_STEPS.items() if t in ran}
    bound, path = longest_path(upstream, weight)
    wall = demo.wall_s(dag_run)
    print(f"\nrun {dag_run['dag_run_id']}: {wall:.0f} s wall (the run's start to its end), critical path's lower "
          f"bound {bound:.0f} s: ratio {wall / bound:.2f} (target <= 1.10)")
    print("  the lower bound's path: " + " -> ".join(f"{t} ({weight[t]:.0f} s)" if t in weight else t
                                                     for t in path if t in ran))
    chain = measured_chain(upstream, tis)
    print("\nThe run's critical chain (each step after the upstream it waited for last):")
    print(f"  {'step':<40} {'hold':>6} {'ran':>7} {'before it':>10} {'inside it':>10}")
    before_total = inside_total = 0.0
    previous_end = seconds(dag_run["start_date"])
    for task in chain:
        ti = tis[task]
        start, end = seconds(ti["start_date"]), seconds(ti["end_date"])
        hold = weight.get(task, 0.0)
        before, inside = start - previous_end, end - start - hold
        before_total += before
        inside_total += inside
        previous_end = end
        print(f"  {task:<40} {hold:>5.0f}s {end - start:>6.1f}s {before:>9.1f}s {inside:>9.1f}s")
    print(f"  {'in all':<40} {sum(weight.get(t, 0) for t in chain):>5.0f}s {'':>7} {before_total:>9.1f}s "
          f"{inside_total:>9.1f}s   ({len(chain)} steps: {(before_total + inside_total) / len(chain):.1f} s each "
          "added on average)")
    held = [t for t in HELD_STEPS if t in ran]
    running = sum(sampler.running[t] for t in held)
    waited = running + sum(sampler.deferred[t] for t in held)
    mode = "polling in worker slots ([operators] default_deferrable off)" if polling else "deferred to the triggerer"
    print(f"\nWorker slots during the held steps, {mode}: {running:.0f} slot-s held over {waited:.0f} s of those "
          f"steps = {running / waited if waited else 0:.2f} (target < 0.05 deferred)")
    for task in held:
        print(f"  {task:<40} running {sampler.running[task]:6.0f} s, deferred {sampler.deferred[task]:6.0f} s")
    return wall


if __name__ == "__main__":
    raise SystemExit(main())

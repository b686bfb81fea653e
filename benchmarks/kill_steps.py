"""Task processes killed in the middle of each long step of one deploy and its teardown, under the real scheduler:
does each retried try adopt what the killed one made, does the run still succeed with exactly one
of everything, and is the Lease released at the end?

One deploy of Scout on GPU (weights staged on FSx) onto a new cluster, on the local stack with its
long steps held (local_stack/held.py) and ``[operators] default_deferrable`` off, so that each wait
runs in its task process, as a wait does when a team runs without a triggerer; a deferred wait has
no task process to kill (the triggerer holds it). Each step in ``KILLS`` is SIGKILLed once it has
run ``--after`` seconds of its first try (the smoke test, which lasts seconds, as soon as it is seen
running): the task process Airflow records for the try, as the OOM killer would end it; for
``helm_deploy``, its ``helm upgrade --install`` child and then the task process, as soon as helm has
recorded the release ``pending-install`` (the retry meets a release no helm will finish: it waits
until the revision counts as stuck, ``kube/helm.py`` ``STUCK_AFTER_S``, then uninstalls and installs);
or, for the accelerator node group, its supervisor (the LocalExecutor worker that runs the try and
heartbeats for it), as when the OOM killer picks that one. A try whose supervisor is gone stops heartbeating;
the scheduler fails it after ``[scheduler] task_instance_heartbeat_timeout`` (60 s here, 300 s by
default) and the retry runs while the orphaned task process may still be polling. At the end it
prints, per step, what was killed and when, the try that finished it and what that try reports
(``created``: the killed try's resource, adopted by its created-by-run tag), the run's state and
the Lease's, and what the local AWS and the API server hold (their own listings): exactly one
cluster, system node group, file system and bucket, and the deployment's node group; one release,
Deployment, Service and token Secret, no Lease.

Then the deployment's teardown, its node group's delete killed the same way mid-wait (the local
AWS keeps a deleted node group DELETING for a while, as EKS does while it drains): the retry finds
it DELETING and waits without deleting again; the teardown succeeds and leaves what the cluster
shares, none of the deployment's node group, and nothing of the deployment in the API server. A retry comes ``RETRY_DELAY_S`` after a killed try.

    scripts/demo-stop      # if the demo is up
    .venv/bin/python benchmarks/kill_steps.py [--after 15]
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "plugins")]

from llm_on_eks.kube.helm import PENDING  # noqa: E402
from local_stack import demo  # noqa: E402
from local_stack.held import HOLDS, ONE_EACH, deploy_conf, held_stack, in_the_cluster  # noqa: E402
from local_stack.stack import is_airflow  # noqa: E402

# step -> what is killed: its task process, or the supervisor that runs it; the deploy's steps,
# then the teardown's.
KILLS = {"provision.ensure_cluster": "task", "provision.ensure_nodegroup": "supervisor", "storage.ensure_fsx": "task",
         "prepare_weights.stage_to_fsx": "task", "helm_deploy": "helm", "wait_ready": "task", "smoke_test": "task",
         "teardown_aws.delete_nodegroup": "task"}
# A killed try's retry this long after (``[llm_on_eks] retry_delay_s``; 2 minutes unless set): a
# retry's delay is not what is measured.
RETRY_DELAY_S = 20
# Steps over in seconds: killed when first seen running rather than ``--after`` into the try.
AT_ONCE = {"smoke_test", "helm_deploy"}
HEARTBEAT_TIMEOUT_S = 60
REGION = demo.DEPLOYS["gpu"][1]["region"]


class Killer:
    """SIGKILL each step of ``KILLS`` (its task process, its supervisor, or its helm and then the
    task process) once it has run ``after_s`` in its first try."""

    def __init__(self, after_s: float, kubeconfig: str, namespace: str, release: str) -> None:
        self.after_s = after_s
        self.kubeconfig, self.namespace, self.release = kubeconfig, namespace, release
        self.running_since: dict[str, float] = {}
        self.killed: dict[str, dict] = {}

    def __call__(self, tis: dict[str, list[dict]]) -> None:
        now = time.monotonic()
        for ti in (ti for run in tis.values() for ti in run):
            task = ti["task_id"]
            if task not in KILLS or task in self.killed or ti["state"] != "running" or ti["try_number"] != 1:
                continue
            since = self.running_since.setdefault(task, now)
            pid = ti.get("pid")
            if (now - since < self.after_s and task not in AT_ONCE) or not is_airflow(pid):
                continue
            if KILLS[task] == "helm":
                self.killed[task] = {"after_s": None, "pid": pid, "what": "helm"}  # filled in by the thread
                threading.Thread(target=self._kill_helm, args=(task, pid, since), daemon=True).start()
                continue
            target = _parent(pid) if KILLS[task] == "supervisor" else pid
            os.kill(target, signal.SIGKILL)
            self.killed[task] = {"after_s": round(now - since), "pid": target, "what": KILLS[task]}
            print(f"  ** SIGKILL {task}'s {KILLS[task]} (pid {target}) after {now - since:.0f} s in its first try",
                  flush=True)


    def _kill_helm(self, task: str, pid: int, since: float) -> None:
        """Watch the release's records (helm's own Secrets, a watch on the API server: a poll
        would miss the second or less the record stays pending); once helm has recorded the
        release pending, SIGKILL the task process's helm child, then the task process. Bounded:
        60 s."""
        from kubernetes import client, config, watch

        api = client.CoreV1Api(config.new_client_from_config(self.kubeconfig))
        records = watch.Watch()
        for event in records.stream(api.list_namespaced_secret, self.namespace, timeout_seconds=60,
                                    label_selector=f"owner=helm,name={self.release}"):
            if (event["object"].metadata.labels or {}).get("status") not in PENDING:
                continue
            helm = next((child for child in _children(pid) if b"upgrade" in _cmdline(child)), None)
            if helm:
                os.kill(helm, signal.SIGKILL)
                os.kill(pid, signal.SIGKILL)
                self.killed[task] = {"after_s": round(time.monotonic() - since), "pid": pid, "what": "helm, then task"}
                print(f"  ** SIGKILL {task}'s helm upgrade (pid {helm}) with the release pending, then its task "
                      f"process (pid {pid})", flush=True)
            records.stop()
        if self.killed[task]["after_s"] is None:
            del self.killed[task]
            print(f"  ** {task}: no helm upgrade seen with the release pending; not killed", flush=True)


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _children(pid: int) -> list[int]:
    """The processes whose parent is ``pid``: /proc/<pid>/task/*/children lists them."""
    try:
        return [int(child) for thread in Path(f"/proc/{pid}/task").iterdir()
                for child in (thread / "children").read_text().split()]
    except OSError:
        return []


def _parent(pid: int) -> int:
    """The task process's supervisor: its parent, the LocalExecutor worker that runs the try."""
    parent = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    if b"LocalExecutor" not in Path(f"/proc/{parent}/cmdline").read_bytes():
        raise RuntimeError(f"the parent of task process {pid} is not a LocalExecutor worker")
    return parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--after", type=float, default=15.0, help="seconds into a step's first try")
    args = parser.parse_args()
    settings = {"AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": str(HEARTBEAT_TIMEOUT_S),
                "AIRFLOW__LLM_ON_EKS__RETRY_DELAY_S": str(RETRY_DELAY_S)}
    with held_stack(HOLDS, polling=True, settings=settings) as local:
        api, conf = local.api, deploy_conf(local)
        killer = Killer(args.after, local.kubeconfig, conf["namespace"], conf["deployment_name"])
        api.wait_for_dags(demo.TEARDOWN_DAG_ID)  # switched on, as a user does
        teardown = {k: conf[k] for k in ("deployment_name", "cluster_name", "region", "namespace")}
        ok, tis = True, {}
        for label, dag_id, run_conf in (("kill", demo.DAG_ID, conf), ("down", demo.TEARDOWN_DAG_ID, teardown)):
            dag_run, run_tis = demo.run_to_end(api, label, dag_id, run_conf, on_poll=killer, poll_s=1)
            run_id = dag_run["dag_run_id"]
            tis |= {ti["task_id"]: (dag_id, run_id, ti) for ti in run_tis}
            lease = (api.xcom(dag_id, run_id, "release_lease") or {}).get("action", "not released")
            print(f"\nrun {run_id} of {dag_id}: {dag_run['state']} in {demo.wall_s(dag_run):.0f} s; its Lease: {lease}")
            # One of each; after the teardown, none of the deployment's own node group.
            held = demo.holdings(local.aws_url, local.identity, REGION, conf["cluster_name"])
            ours = int(dag_id == demo.DAG_ID)
            as_expected = all(len(held[k]) == (ours if k == "deployment node groups" else 1) for k in ONE_EACH)
            print("  the local AWS holds: " + ", ".join(f"{len(v)} {k}" for k, v in held.items())
                  + (" (as expected)" if as_expected else f": {held}"))
            # The deployment's objects, one of each, the Lease released; after the teardown, none.
            cluster = in_the_cluster(local.kubeconfig, conf["namespace"], conf["deployment_name"])
            in_cluster_expected = cluster == {**dict.fromkeys(cluster, ours), "Leases": 0}
            print("  the API server holds: " + ", ".join(f"{n} {k}" for k, n in cluster.items())
                  + (" (as expected)" if in_cluster_expected else ""))
            ok &= dag_run["state"] == "success" and as_expected and in_cluster_expected
        print(f"\n  {'step':<30} {'killed':<22} {'tries':>5} {'state':<8} what the last try reports")
        for task in KILLS:
            killed, (dag_id, run_id, ti) = killer.killed.get(task), tis.get(task, (None, None, {}))
            result = (api.xcom(dag_id, run_id, task) if dag_id else None) or {}
            reported = str(result.get("action", result))[:70]
            when = f"{killed['what']} after {killed['after_s']} s" if killed else "not killed"
            print(f"  {task:<30} {when:<22} {ti.get('try_number', 0):>5} {ti.get('state') or '-':<8} {reported}")
        return 0 if ok and len(killer.killed) == len(KILLS) else 1


if __name__ == "__main__":
    raise SystemExit(main())

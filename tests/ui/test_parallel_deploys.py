"""Many deployments at once under the real scheduler, on SQLite with the LocalExecutor and on
PostgreSQL with the CeleryExecutor: scripts/demo's Monday morning (local_stack.demo).

On SQLite: Scout on GPU and Llama 3 8B onto one cluster that does not exist yet and Scout on
Trainium2 onto another, triggered at once; then the teardown of Scout on GPU while Llama 3 8B is
deployed again on the same cluster (it adopts everything). The team's spending rule holds the
deploys over its hourly limit (Scout on a p5.48xlarge) for a person's approval, answered here
through the REST API as the UI answers it (tests/ui/test_approval.py: the request itself, and a
rejection). Afterwards the idle teardown, run by the scheduler, keeps Scout on Trainium2, idle past
its TTL, for a consumer DAG due within its keep window, and says what that costs and saves (the
rule in every case: tests/test_consumers.py, tests/test_idleness.py).

On PostgreSQL + Celery: the two deploys that race for the one new cluster, the shortest run that
puts that executor and database under the race (CI time).

On SQLite, while the three deploys run, the triggerer is killed in the middle of a deferred AWS
wait and started again, and the task process of a smoke test is killed (kills where waits defer;
benchmarks/kill_steps.py kills every long step waiting in its worker).

Each time the runs go side by side (the per-deployment Lease, not a DAG-wide limit, keeps one run
per deployment), and the local AWS's own listings hold exactly one cluster, system node group, FSx
file system and bucket per cluster, and each deployment's own node group, after each batch. The
smoke tests reach the session's vLLM server by ``endpoint_url``; it serves Scout only, so Llama 3
8B deploys without one.
"""

from __future__ import annotations

import json
import os
import re
import signal
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from llm_on_eks.kube.lease import holder_of
from llm_on_eks.naming import IDLE_TTL_ANNOTATION
from llm_on_eks.operators.llm_endpoint import plan_endpoint
from llm_on_eks.serving.idleness import STATE_ANNOTATION
from local_stack import job_markers
from local_stack.demo import DEPLOYS, IDLE_DAG_ID, TEARDOWN_DAG_ID, deploy_at_once, deploy_conf, teardown_beside_deploy
from local_stack.stack import alive, is_airflow, wait_until
from tests.aws.conftest import client
from tests.ui.conftest import (
    ANSWER_AFTER_S,
    APPROVAL_LIMIT_USD,
    APPROVAL_STEP,
    hitl_path,
    post_consumer_record,
    wait_for_run,
)


class Approver:
    """``follow``'s look at each poll: approve a deploy's spending a little after it asks (again,
    should a try the deferral race failed ask again on its retry)."""

    def __init__(self, api) -> None:
        self.api, self.asked_at, self.approved = api, {}, set()

    def __call__(self, tis: dict[str, list[dict[str, Any]]]) -> None:
        for instances in tis.values():
            for ti in instances:
                if ti["task_id"] != APPROVAL_STEP or ti["state"] != "awaiting_input":
                    continue
                asked = (ti["dag_id"], ti["dag_run_id"], ti["try_number"])
                if asked in self.asked_at and self.asked_at[asked] is None:
                    continue  # answered
                if time.monotonic() - self.asked_at.setdefault(asked, time.monotonic()) >= ANSWER_AFTER_S:
                    self.api.patch(hitl_path(*asked[:2]), {"chosen_options": ["Approve"]})
                    self.asked_at[asked] = None
                    self.approved.add(asked[:2])


class Killer:
    """``follow``'s look at each poll: SIGKILL the triggerer's process group (as a node drain ends
    its pod) while a deploy's AWS wait is deferred to it, then start it again (as its supervisor,
    systemd or Kubernetes, would); and SIGKILL the task process of Scout on Trainium2's smoke test
    as soon as it runs (as the OOM killer ends one). benchmarks/kill_steps.py kills each long step
    in the worker (``default_deferrable`` off); deferred, the triggerer is what holds the wait."""

    def __init__(self, airflow) -> None:
        self.airflow, self.wait, self.smoke_pid = airflow, None, None

    def __call__(self, tis: dict[str, list[dict[str, Any]]]) -> None:
        for label, instances in tis.items():
            for ti in instances:
                if self.wait is None and ti["state"] == "deferred" and ti["task_id"].startswith("provision.ensure_"):
                    triggerer = self.airflow.pids["triggerer"]
                    os.killpg(triggerer, signal.SIGKILL)
                    wait_until(lambda pid=triggerer: not alive(pid), 30, "the killed triggerer gone")
                    self.airflow.start(on_start=lambda _: None)
                    self.wait = (label, ti["task_id"])
                if (label, ti["task_id"], ti["state"], ti["try_number"]) == ("trn2", "smoke_test", "running", 1) \
                        and self.smoke_pid is None and is_airflow(ti.get("pid")):
                    os.kill(ti["pid"], signal.SIGKILL)
                    self.smoke_pid = ti["pid"]


def _overlap(api, runs) -> bool:
    """Every run started before every other one ended: none waited for another."""
    spans = [[datetime.fromisoformat(api.run(dag_id, run_id)[k]) for k in ("start_date", "end_date")]
             for _, dag_id, run_id in runs]
    return max(start for start, _ in spans) < min(end for _, end in spans)


@pytest.mark.parametrize("stack", ["local_airflow", "team_airflow"])
def test_many_deployments_at_once(request, stack, local_aws, sandbox_cluster, vllm_server, namespace):
    airflow = request.getfixturevalue(stack)
    airflow, backends = airflow if stack == "team_airflow" else (airflow, None)
    api = airflow.api()
    local = stack == "local_airflow"
    # The idle teardown switched on now (a consumer's next run is Airflow's only for a DAG that is
    # on): its first run, at once, goes by while the deploys run.
    api.wait_for_dags(*{dag_id for dag_id, _ in DEPLOYS.values()}, TEARDOWN_DAG_ID, *([IDLE_DAG_ID] if local else []))
    url, identity = local_aws
    cluster = f"monday-{stack.removesuffix('_airflow')}"
    confs = {}
    # On PostgreSQL + Celery, the two that race for one new cluster (the third adds nothing there).
    for label, (_, params) in DEPLOYS.items() if local else [(k, DEPLOYS[k]) for k in ("gpu", "llama3")]:
        conf = deploy_conf(params, vllm_server.base_url, cluster, namespace)
        # Nothing for the idle teardown of either stack to act on while the session runs.
        del conf["cluster_quiet_minutes"]
        confs[label] = {**conf, "benchmark": False, "idle_ttl_minutes": 60,
                        **({"smoke_test": False} if params["model"] == "llama-3-8b" else {})}
    approver, killer = Approver(api), Killer(airflow)

    def on_poll(tis):
        approver(tis)
        if local:
            killer(tis)

    with job_markers.while_running(sandbox_cluster.api_client(), client(url, "s3", "us-east-1"), namespace,
                                   deadline_s=1200):
        deploys = deploy_at_once(api, url, identity, confs, cluster, namespace, on_poll=on_poll, poll_s=1)
        # What the Lease does is the executor's business nowhere: the second batch on one stack.
        later = teardown_beside_deploy(api, url, identity, confs["llama3"], cluster, namespace,
                                       on_poll=approver) if local else []

    kube = sandbox_cluster.api_client()
    assert _overlap(api, deploys) and (not later or _overlap(api, later))
    assert [d for d in ("scout-gpu", "llama3-gpu", "scout-trn2") if holder_of(kube, namespace, d)] == []
    # On the shared cluster, one run made it and the other adopted it.
    actions = sorted(api.xcom(dag_id, run_id, "provision.ensure_cluster")["action"]
                     for label, dag_id, run_id in deploys if label != "trn2")
    assert actions == ["adopted", "created"]
    if local:  # the team's rule: a person approves what costs more than the limit
        over = {(dag_id, run_id) for _, dag_id, run_id in deploys
                if api.xcom(dag_id, run_id, "plan_deployment")["sizing"]["hourly_usd"] > APPROVAL_LIMIT_USD}
        assert approver.approved == over and over, over  # Scout on a p5.48xlarge at least
        for dag_id, run_id in approver.approved:
            assert api.xcom(dag_id, run_id, APPROVAL_STEP) == {"asked": True, "answer": "Approve", "by": "admin"}
        _survived_the_kills(api, killer, deploys)
        _adopted_everything(api, later[1], deploys[1])
        _kept_for_its_consumer(airflow, kube, confs["trn2"])
    else:
        assert not approver.approved
        _ran_on_celery(api, deploys, backends["postgres"])


def _survived_the_kills(api, killer: Killer, deploys) -> None:
    """The deferred wait went on in the triggerer started again, in the same try; the smoke test's
    second try passed (``[llm_on_eks] retry_delay_s`` makes its wait short here). Exactly one of
    each resource and the Leases released: checked for the whole batch."""
    runs = {label: (dag_id, run_id) for label, dag_id, run_id in deploys}

    def tried(label: str, task: str) -> tuple[str, int]:
        return next((ti["state"], ti["try_number"]) for ti in api.task_instances(*runs[label]) if ti["task_id"] == task)

    assert tried(*killer.wait) == ("success", 1), killer.wait
    assert killer.smoke_pid, "the smoke test of Scout on Trainium2 was never seen running"
    assert tried("trn2", "smoke_test") == ("success", 2)


def _adopted_everything(api, again, first) -> None:
    """The deploy of what serves already made and changed nothing, and had no cold start to measure."""
    (_, dag_id, run_id), (_, _, first_id) = again, first
    steps = ("provision.ensure_cluster", "provision.ensure_nodegroup", "provision.ensure_system_nodegroup")
    xcoms = {task: api.xcom(dag_id, run_id, task)
             for task in (*steps, "device_plugin", "prepare_weights.stage_to_s3", "helm_deploy", "cold_start")}
    assert {task: xcoms[task]["action"] for task in steps} == dict.fromkeys(steps, "adopted")
    assert xcoms["device_plugin"]["action"] == "unchanged"
    assert xcoms["prepare_weights.stage_to_s3"]["skipped"] is True  # its marker is there
    assert xcoms["helm_deploy"]["changed"] is False
    assert xcoms["helm_deploy"]["revision"] == api.xcom(dag_id, first_id, "helm_deploy")["revision"] == 1
    cold = xcoms["cold_start"]
    assert cold["predicted_ttft_s"] == 0 and all(row.get("skipped") for row in cold["phases"]), cold


def _kept_for_its_consumer(airflow, kube, conf: dict[str, Any]) -> None:
    """Scout on Trainium2, idle past its TTL, is kept by the idle teardown's scheduled DAG for a
    consumer due soon; the other deployment, younger than its TTL, for that."""
    from kubernetes import client as k8s

    api, namespace, deployment = airflow.api(), conf["namespace"], conf["deployment_name"]
    where = {k: conf[k] for k in ("model", "accelerator", "region", "namespace", "cluster_name", "deployment_name")}
    # Any scheduled DAG stands for the consumer (as in test_warm_up): the idle teardown's own runs
    # every 10 minutes, within a 15-minute keep window.
    post_consumer_record(api, {**plan_endpoint.function(where, keep_within_minutes=15)["consumer"], "consumer": IDLE_DAG_ID})

    def judge(run_id: str) -> tuple[dict[str, Any], dict[str, str]]:
        airflow.cli("dags", "trigger", IDLE_DAG_ID, "--run-id", run_id)
        assert wait_for_run(api, run_id, dag_id=IDLE_DAG_ID) == "success"
        summary = api.xcom(IDLE_DAG_ID, run_id, "summarize")
        return summary, {k["deployment"]: k["reason"] for k in summary["kept"] if k["namespace"] == namespace}

    _, kept = judge("judge-first-reading")  # both young: read all the same, the idle clock starts
    young = r"kept: \d+ min old, younger than its idle TTL of 60 min"
    assert set(kept) == {"llama3-gpu", deployment} and all(re.fullmatch(young, r) for r in kept.values()), kept
    # Time moved as a clock would: its TTL 0, its last activity two minutes back.
    core = k8s.CoreV1Api(kube)
    state = json.loads(core.read_namespaced_service(deployment, namespace).metadata.annotations[STATE_ANNOTATION])
    state["last_active"] = (datetime.now(UTC) - timedelta(minutes=2)).isoformat(timespec="seconds")
    core.patch_namespaced_service(deployment, namespace, {"metadata": {"annotations": {
        STATE_ANNOTATION: json.dumps(state), IDLE_TTL_ANNOTATION: "0"}}})
    summary, kept = judge("judge-consumer-due")
    assert re.fullmatch(rf"kept: {IDLE_DAG_ID} runs in \d+ min \(idle [2-5] min, TTL 0 min\)", kept[deployment]), kept
    assert re.fullmatch(young, kept["llama3-gpu"]), kept
    (saving,) = [k for k in summary["kept_for_consumers"] if k["deployment"] == deployment]
    assert saving["dag_id"] == IDLE_DAG_ID and 0 <= saving["in_minutes"] <= 10 and saving["cold_start_usd"] > 0


def _ran_on_celery(api, runs, pg: dict[str, Any]) -> None:
    """The tasks ran on the Celery workers: their results are in the Celery result backend's
    table. A worker stores a result after the task has reported its state to the API server, so
    the last one may land a moment after the run is marked done: read until they are all there."""
    import psycopg2

    succeeded = sum(ti["state"] == "success" for _, dag_id, run_id in runs for ti in api.task_instances(dag_id, run_id))
    deadline = time.monotonic() + 30
    with psycopg2.connect(host="127.0.0.1", port=pg["port"], user="airflow", password=pg["password"],
                          dbname="airflow") as connection, connection.cursor() as cursor:
        while True:
            cursor.execute("SELECT count(*) FROM celery_taskmeta WHERE status = 'SUCCESS'")
            stored = cursor.fetchone()[0]
            connection.commit()
            if stored >= succeeded or time.monotonic() > deadline:
                break
            time.sleep(0.5)
    assert stored >= succeeded

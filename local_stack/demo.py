"""scripts/demo: the whole product on this machine, the way a user meets it, before any AWS account.

Starts (or reuses) the local parts, starts Airflow 3 as separate processes on 127.0.0.1, creates
the connections of the ``local`` profile, then, as a platform team's Monday morning, triggers three
deploys at once as the UI's Trigger button does (real runs, not dry runs): Llama 4 Scout on GPU and
Llama 3 8B (``deploy_model``) onto one cluster that does not exist yet, and Scout on Trainium2
onto another; then the teardown of one of the first two while the other is deployed again. It
follows the runs step by step, checks in the local AWS's own listings that each cluster has
exactly one of what deployments share, and prints what a person wants to know at the end.
``scripts/demo-stop`` ends every process it started.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from llm_on_eks import naming
from local_stack import stack, team
from local_stack.airflow import USER, Api, LocalAirflow, connections
from local_stack.aws import AIRFLOW_ARN, AIRFLOW_USER, iam_user
from local_stack.eks_authenticator import map_identity
from local_stack.stack import ROOT, alive, http_ok, load_state, save_state, spawn, stop_pid, wait_until

STANDINS = """Local stand-ins (everything else is the real thing: Airflow 3's api-server, scheduler,
dag-processor and triggerer, the helm CLI, a Kubernetes API server, the vLLM server):
  - AWS is the moto server (local_stack/aws.py), with EKS add-ons and FSx data repository
    associations, which moto lacks, answered in front of it; no account, nothing billed.
  - Every EKS cluster of that AWS is served by a local Kubernetes control plane, reached as EKS is
    reached (EksHook's kubeconfig, a token from the AWS identity); its webhook checks the token
    against the local STS, as EKS's aws-iam-authenticator does (local_stack/eks_authenticator.py).
  - The cluster's nodes are kwok nodes: pods are scheduled and report Running, but no container runs.
  - So no weight Job really compiles or downloads: local_stack/job_markers.py writes the S3
    completion marker a succeeded Job would write, and marks it simulated.
  - The model is a tiny Llama 4 with random weights on vLLM's CPU build, served under the catalog
    name of Llama 4 Scout; the deploy's smoke test and benchmark reach it by `endpoint_url`."""

AIRFLOW_HOME = ROOT / ".airflow"  # scripts/env.sh's, so the CLI there sees the demo's runs
# The team stack's home: its PostgreSQL data, Redis's directory, logs, and the CLI's settings.
TEAM_HOME = ROOT / ".airflow-team"
DAG_ID = "deploy_llama4"
MODEL_DAG_ID = "deploy_model"
TEARDOWN_DAG_ID = "teardown_deployment"
IDLE_DAG_ID = "teardown_idle_deployments"
BATCH_DAG_ID = "llm_batch_example"
IDLE_SCHEDULE = "*/2 * * * *"  # the demo's; teams keep the default */10
NAMESPACE = "llm-demo"
CLUSTER = "llm-demo"
SCOUT = "meta-llama/Llama-4-Scout-17B-16E-Instruct"
LLAMA3 = "meta-llama/Meta-Llama-3-8B-Instruct"
# The deploys (run label -> DAG and params): regions whose instance offerings (moto's copy of
# AWS's) hold the instance type; gpu and llama3 share the us-west-2 cluster.
DEPLOYS = {
    "gpu": (DAG_ID, {"model": "llama4-scout", "accelerator": "gpu", "region": "us-west-2",
                     "deployment_name": "scout-gpu", "images_per_prompt": 0}),
    "llama3": (MODEL_DAG_ID, {"model": "llama-3-8b", "accelerator": "gpu", "region": "us-west-2",
                              "deployment_name": "llama3-gpu"}),
    "trn2": (DAG_ID, {"model": "llama4-scout", "accelerator": "neuron", "region": "us-east-2",
                      "deployment_name": "scout-trn2", "images_per_prompt": 0}),
}
# The tiny model answers under the catalog names of every model the demo deploys.
SERVED = [SCOUT, LLAMA3, "tiny-llama4"]
IDLE_TTL_MINUTES = 5  # the form's minimum
CLUSTER_QUIET_MINUTES = 5
RUN_TIMEOUT_S = 45 * 60
TERMINAL = {"success", "failed"}


class DemoFailed(Exception):
    """A run of the demo failed, or the local AWS holds other than it should."""


def say(message: str = "") -> None:
    print(message, flush=True)


# -- the local parts ----------------------------------------------------------------------------
def ensure_aws(state: dict, kubeconfig: str, holds: dict[str, float] | None = None,
               served_at: str | None = None) -> tuple[str, dict[str, str]]:
    """The local AWS, its EKS clusters served by the control plane, and the Airflow identity: an
    IAM user whose ARN the control plane maps to a cluster admin, as EKS maps a cluster's creator.
    ``holds``: how long each kind of resource stays CREATING (``local_stack.aws --hold``);
    ``served_at``: the kubeconfig of what stands in front of the control plane, whose address
    and CA the clusters give (a fault proxy), if not the control plane itself."""
    aws, holds, served_at = state.get("aws", {}), holds or {}, served_at or kubeconfig
    if (alive(aws.get("pid")) and http_ok(f"{aws['url']}/moto-api/") and aws.get("control_plane") == served_at
            and aws.get("holds", {}) == holds):
        say(f"  local AWS          reused   {aws['url']}")
        return aws["url"], aws["identity"]
    if alive(aws.get("pid")):
        stop_pid(aws["pid"])  # started for another control plane, or other holds
    port = stack.free_port(5055)
    pid = spawn("aws", [sys.executable, "-m", "local_stack.aws", "--port", str(port), "--control-plane", served_at,
                        *(f"--hold={kind}={seconds:g}" for kind, seconds in holds.items())], os.environ.copy())
    url = f"http://127.0.0.1:{port}"
    wait_until(lambda: http_ok(f"{url}/moto-api/"), 60, "local AWS", pid)
    key = iam_user(url, AIRFLOW_USER)
    map_identity(kubeconfig, AIRFLOW_ARN, AIRFLOW_USER, ["system:masters"])
    identity = {"access_key_id": key["AccessKeyId"], "secret_access_key": key["SecretAccessKey"]}
    state["aws"] = {"pid": pid, "url": url, "control_plane": served_at, "identity": identity, "holds": holds}
    save_state(state)
    say(f"  local AWS          started  {url} (moto server, pid {pid}); Airflow is IAM user {AIRFLOW_USER}")
    return url, identity


def helm_bin() -> str:
    """The helm CLI built with the control plane (scripts/sandbox-cluster builds what is missing)."""
    return stack.sandbox("bin", "helm").stdout.strip()


def ensure_control_plane(state: dict) -> str:
    """The control plane up (or reused); its kubeconfig."""
    if stack.sandbox("status", check=False).returncode != 0:
        started = time.monotonic()
        # Recorded first: scripts/demo-stop stops what an `up` that failed midway left running.
        state["control_plane"] = {"started_by_demo": True}
        save_state(state)
        stack.sandbox("up")
        say(f"  control plane      started  in {time.monotonic() - started:.0f} s (scripts/sandbox-cluster)")
    else:
        state.setdefault("control_plane", {"started_by_demo": False})
        say("  control plane      reused   (scripts/sandbox-cluster status: up)")
    return stack.sandbox("kubeconfig").stdout.strip()


def ensure_vllm(state: dict) -> tuple[str, Callable[[], None]]:
    """The local vLLM server's URL, at once, and what waits until it answers (raising when it
    exits or misses its start-up deadline)."""
    from local_stack.vllm import netns_unavailable_reason, spawn_server

    vllm = state.get("vllm", {})
    if alive(vllm.get("pid")) and http_ok(f"{vllm['url']}/health") and vllm.get("served") == SERVED:
        say(f"  vLLM (CPU)         reused   {vllm['url']}")
        return vllm["url"], lambda: None
    if alive(vllm.get("pid")):
        stop_vllm(vllm)  # started by an earlier demo, under other names
    say("  vLLM (CPU)         starting (1-2 minutes on 2 cores) ...")
    no_netns = netns_unavailable_reason()
    # On EKS the server has a node of its own; here it shares 2 cores with Airflow and the deploys
    # it serves, so it starts on what they leave idle (nice 10): it is needed at their smoke tests.
    server = spawn_server("tiny-llama4", SERVED, use_netns=no_netns is None, nice=10)
    netns = server.netns
    state["vllm"] = {"pid": server.process.pid, "url": server.base_url, "served": SERVED,
                     "netns": netns and {"name": netns.name, "host_veth": netns.host_veth,
                                         "inner_veth": netns.inner_veth}}
    save_state(state)
    where = f"in network namespace {netns.name}" if netns else f"on 127.0.0.1 ({no_netns})"

    def healthy() -> None:
        server.wait_healthy()
        say(f"  vLLM (CPU)         started  {server.base_url} in {server.startup_s:.0f} s, {where}")

    return server.base_url, healthy


@dataclass
class VllmStart:
    """The local vLLM server while it starts: its URL (known at once) and its start-up's end."""

    url: str
    healthy: Future

    def failed(self, *_: Any) -> None:
        """Raise what ended the server's start-up, if it failed: no run waits out its smoke test's
        start-up budget for a server that is not coming (an ``on_poll`` of ``follow``)."""
        if self.healthy.done():
            self.healthy.result()


@contextmanager
def vllm_beside(state: dict) -> Iterator[VllmStart]:
    """The local vLLM server started beside what the context starts and runs: its 1-2 minutes of
    start-up no longer come before them. Leaving the context waits for it too."""
    url, healthy = ensure_vllm(state)
    with ThreadPoolExecutor(1, thread_name_prefix="vllm") as pool:
        yield VllmStart(url, pool.submit(healthy))


def ensure_job_markers(state: dict, kubeconfig: str, aws_url: str) -> None:
    markers = state.get("job_markers", {})
    if alive(markers.get("pid")):
        say(f"  Job marker writer  reused   (pid {markers['pid']})")
        return
    pid = spawn("job_markers", [sys.executable, "-m", "local_stack.job_markers", "--kubeconfig", kubeconfig,
                                "--aws-url", aws_url], os.environ.copy())
    state["job_markers"] = {"pid": pid}
    save_state(state)
    say(f"  Job marker writer  started  (stand-in, pid {pid})")


def ensure_team(state: dict) -> dict[str, str]:
    """PostgreSQL and Redis (local_stack/team.py); the Airflow settings that point at them, also
    written to a private file for the CLI."""
    TEAM_HOME.mkdir(parents=True, exist_ok=True)
    settings = team.ensure_backends(TEAM_HOME, state.setdefault("team", {}), on_start=say)
    save_state(state)
    cli_env = TEAM_HOME / "airflow.env"
    cli_env.write_text("".join(f"export {k}='{v}'\n" for k, v in settings.items()))
    os.chmod(cli_env, 0o600)
    return settings


# -- Airflow ------------------------------------------------------------------------------------
# The local AWS reports what it creates ACTIVE some 10 s on (local_stack.aws.SETTLE_S, without a
# benchmark's holds), where AWS takes minutes, and kwok's Jobs and pods are done in seconds: the
# waits poll every 2 s, not every 30 s as against AWS ([llm_on_eks] waiter_delay_s, over the same
# window) nor 5 s as on a cluster ([llm_on_eks] kube_poll_s); a wait ends a second after its object.
LOCAL_POLL_S = 2


def stack_settings(helm: str) -> dict[str, str]:
    """What every Airflow process of a local stack gets beside Airflow's own settings (the demo's,
    the held benchmarks' and the tests' stacks)."""
    return {"HELM_BIN": helm, "AIRFLOW__LLM_ON_EKS__WAITER_DELAY_S": str(LOCAL_POLL_S),
            "AIRFLOW__LLM_ON_EKS__KUBE_POLL_S": str(LOCAL_POLL_S),
            # Where no network namespace can be made, the local vLLM server is on 127.0.0.1.
            "AIRFLOW__LLM_ON_EKS__ALLOW_LOOPBACK_ENDPOINT": "True"}


def launch_airflow(state: dict, helm: str, team_settings: dict[str, str] | None, idle_schedule: str = IDLE_SCHEDULE,
                   settings: dict[str, str] | None = None) -> LocalAirflow:
    """Airflow's processes started (or reused), not waited for: they start while the control plane
    and the local AWS do, and no run starts before ``connect_airflow``. ``settings``: more Airflow
    settings (environment variables) for every component."""
    extra_env = {"LLM_ON_EKS_IDLE_TEARDOWN_SCHEDULE": idle_schedule, **stack_settings(helm)}
    extra_env.update(team_settings or {})
    extra_env.update(settings or {})
    airflow = (LocalAirflow.from_state(state["airflow"], extra_env=extra_env) if "airflow" in state
               else LocalAirflow(home=TEAM_HOME if team_settings else AIRFLOW_HOME, extra_env=extra_env,
                                 workers=team.WORKERS if team_settings else 0))
    airflow.launch(on_start=say)
    state["airflow"] = airflow.to_state()
    save_state(state)
    return airflow


def connect_airflow(state: dict, airflow: LocalAirflow, aws_url: str, identity: dict[str, str]) -> None:
    """Until Airflow answers; then the ``local`` profile's connections saved and the scheduler started."""
    airflow.ready(connections(aws_url, identity), on_start=say)
    state["airflow"] = airflow.to_state()
    save_state(state)
    say("  connections           aws_default -> local AWS (the only way in to the cluster too), "
        "hf_default (a fake token)")


# -- the runs -----------------------------------------------------------------------------------
# A run: (label, DAG id, run id).
Run = tuple[str, str, str]


def deploy_conf(params: dict[str, Any], vllm_url: str, cluster: str = CLUSTER,
                namespace: str = NAMESPACE) -> dict[str, Any]:
    return {
        **params, "namespace": namespace,
        # As from an empty account: no roles or subnets given, provision makes them with the cluster;
        # the idle teardown removes the cluster too, once no deployment has used it for a while.
        "cluster_name": cluster, "create_cluster": True, "cluster_quiet_minutes": CLUSTER_QUIET_MINUTES,
        # kwok's pod IPs lead nowhere: the checks reach the local vLLM server by URL.
        "endpoint_url": vllm_url,
        "benchmark": True, "benchmark_num_prompts": 8, "benchmark_concurrency": 2, "benchmark_input_len": 64,
        "benchmark_output_len": 16,
        "idle_ttl_minutes": IDLE_TTL_MINUTES,
    }


def trigger(api: Api, label: str, dag_id: str, conf: dict[str, Any]) -> Run:
    """A run with ``conf``, through the REST API as the UI's Trigger button makes it, not with
    ``airflow dags trigger``, which imports Airflow anew: 6-7 s of CPU per call, while the runs
    start beside it (tests/ui/test_cli_trigger.py runs that CLI)."""
    run_id = f"demo-{label}-{datetime.now(UTC):%Y%m%dT%H%M%S}"
    shown = {k: conf[k] for k in ("model", "accelerator", "deployment_name", "region") if k in conf}
    say(f"  {dag_id}: run {run_id}, conf {json.dumps(shown)[:-1]}, ...}}")
    api.trigger(dag_id, run_id, conf)
    return label, dag_id, run_id


def _doing(ti: dict[str, Any]) -> str:
    if ti["state"] == "deferred" and ti.get("trigger"):
        # Every wait's trigger is wrapped (llm_on_eks.triggers.settled), and the API shows no
        # trigger's arguments, so what it polls is the step's to say.
        return "the triggerer polls"
    return {"queued": "waiting for a worker slot", "up_for_retry": "waiting to retry",
            "scheduled": "waiting for the executor", "running": "in a worker"}.get(ti["state"] or "", "")


def follow(api: Api, runs: list[Run], on_poll: Callable[[dict[str, list[dict[str, Any]]]], None] | None = None,
           poll_s: float = 3) -> dict[str, list[dict[str, Any]]]:
    """Print every task's state changes with the elapsed time, until every run ends. Runs of
    different deployments (each with its own Lease) go side by side, up to ``[llm_on_eks]
    max_active_runs`` per DAG. ``on_poll`` gets every run's task instances at each look."""
    start, seen, tis = time.monotonic(), {}, {}
    while True:
        states = {}
        for label, dag_id, run_id in runs:
            states[label] = api.run(dag_id, run_id)["state"]
            tis[label] = api.task_instances(dag_id, run_id)
            for ti in sorted(tis[label], key=lambda t: (t["start_date"] or "~", t["task_id"])):
                key = (label, ti["task_id"], ti["map_index"])
                if ti["state"] and seen.get(key) != ti["state"]:
                    seen[key] = ti["state"]
                    elapsed = int(time.monotonic() - start)
                    say(f"  [{elapsed // 60:02d}:{elapsed % 60:02d}] {label:<6} {ti['task_id']:<40} "
                        f"{ti['state']:<10} {_doing(ti)}".rstrip())
        if on_poll:
            on_poll(tis)
        if all(state in TERMINAL for state in states.values()):
            return tis
        if time.monotonic() - start > RUN_TIMEOUT_S:
            raise TimeoutError(f"runs not finished within {RUN_TIMEOUT_S // 60} min: {states}")
        time.sleep(poll_s)


def run_to_end(api: Api, label: str, dag_id: str, conf: dict[str, Any],
               on_poll: Callable[[dict[str, list[dict[str, Any]]]], None] | None = None,
               poll_s: float = 3) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """One run triggered as a user does and followed to its end: its record and its task instances."""
    run = trigger(api, label, dag_id, conf)
    tis = follow(api, [run], on_poll=on_poll, poll_s=poll_s)[label]
    return api.run(dag_id, run[2]), tis


def wall_s(dag_run: dict[str, Any]) -> float:
    """A finished run's wall time, from its own start to its end (Airflow's record)."""
    start, end = (datetime.fromisoformat(dag_run[k]) for k in ("start_date", "end_date"))
    return (end - start).total_seconds()


def report(api: Api, runs: list[Run], tis: dict[str, list[dict[str, Any]]]) -> bool:
    """Each run's task states, then its report (the register step's, or a teardown's removal and
    what still bills), or the plan when it failed."""
    ok = True
    for label, dag_id, run_id in runs:
        state = api.run(dag_id, run_id)["state"]
        ok &= state == "success"
        say(f"\n== {label}: {dag_id} run {run_id}: {state.upper()}")
        by_state: dict[str, set[str]] = {}
        for ti in tis[label]:
            by_state.setdefault(ti["state"] or "none", set()).add(ti["task_id"])
        for ti_state, tasks in sorted(by_state.items()):
            say(f"  {ti_state:<9} {len(tasks):>2}: {', '.join(sorted(tasks))}")
        if dag_id == TEARDOWN_DAG_ID:
            billing = api.xcom(dag_id, run_id, "still_billing")
            say("\n" + (billing["summary"] if billing else "what still bills: not read"))
            continue
        record = api.xcom(dag_id, run_id, "register")
        plan = api.xcom(dag_id, run_id, "plan_deployment")
        if record:
            say("\n" + record["report"])
        elif plan:
            say(f"  plan: {plan['profile']['nodes']}x {plan['profile']['instance_type']}, "
                f"${plan['sizing']['hourly_usd']:.2f}/hour; the failed step's log is in the UI")
    return ok


def consume(api: Api, vllm_url: str, aws_url: str, identity: dict[str, str],
            kubeconfig: str) -> bool:
    """Two runs of the example consumer DAG, one after the other; the second's changes counted
    from the servers' own logs (an adopted deployment: only the batch's answers are written)."""
    from local_stack import changes

    _, params = DEPLOYS["gpu"]
    where = {"model": params["model"], "accelerator": params["accelerator"], "region": params["region"],
             "cluster_name": CLUSTER, "namespace": NAMESPACE}
    more = {k: v for k, v in deploy_conf(params, vllm_url).items() if k not in where}
    conf = {**where, "deploy": more, "max_tokens": 16,
            "prompts": ["Summarize in one sentence what Amazon EKS is.", "Summarize in one sentence what FSx is."]}
    ok = True
    for n in (1, 2):
        with changes.counting(aws_url, kubeconfig, identity["access_key_id"]) as made:
            dag_run, tis = run_to_end(api, f"batch{n}", BATCH_DAG_ID, conf)
        states = {ti["task_id"]: ti["state"] for ti in tis}
        run_id = dag_run["dag_run_id"]
        hold = api.xcom(BATCH_DAG_ID, run_id, "llm_endpoint.hold") or {}
        written = api.xcom(BATCH_DAG_ID, run_id, "llm_endpoint.complete")
        ok &= dag_run["state"] == "success" and states.get("llm_endpoint.deploy") == ("success", "skipped")[n - 1]
        say(f"\n== batch{n}: {BATCH_DAG_ID} run {run_id}: {dag_run['state'].upper()} in {wall_s(dag_run):.0f} s")
        say(f"  hold: {hold.get('why', 'not read')}; deploy step {states.get('llm_endpoint.deploy')}; "
            f"release {states.get('llm_endpoint.release')}; answers in {written}")
        for line in made.lines():
            say(f"  {line}")
    return ok


def holdings(aws_url: str, identity: dict[str, str], region: str, cluster: str = CLUSTER) -> dict[str, list[str]]:
    """What the local AWS holds of ``cluster`` in ``region``, from its own listings (not from our
    code's view): the cluster itself, its node groups, FSx file systems tagged with it, its bucket."""
    import boto3

    session = boto3.session.Session(aws_access_key_id=identity["access_key_id"],
                                     aws_secret_access_key=identity["secret_access_key"], region_name=region)
    eks, fsx, s3 = (session.client(s, endpoint_url=aws_url) for s in ("eks", "fsx", "s3"))
    clusters = [c for c in eks.list_clusters()["clusters"] if c == cluster]
    groups = [g for c in clusters for g in eks.list_nodegroups(clusterName=c)["nodegroups"]]
    system = naming.system_nodegroup_name(cluster, region)
    return {"clusters": clusters,
            "system node groups": [g for g in groups if g == system],
            "deployment node groups": sorted(g for g in groups if g != system),
            "FSx file systems": [f["FileSystemId"] for f in fsx.describe_file_systems()["FileSystems"]
                                 if f["Lifecycle"] not in ("DELETING", "DELETED")
                                 and {"Key": naming.CLUSTER_KEY, "Value": cluster} in f.get("Tags", [])],
            "buckets": [b["Name"] for b in s3.list_buckets()["Buckets"]
                        if b["Name"] == naming.artifact_bucket(cluster, region)]}


def check_holdings(aws_url: str, identity: dict[str, str], expected: dict[str, set[str]], cluster: str = CLUSTER,
                   namespace: str = NAMESPACE) -> bool:
    """``cluster`` in each region holds one of each shared thing and exactly the expected
    deployments' node groups: what two runs made together ended as one of each."""
    ok = True
    for region, deployments in sorted(expected.items()):
        held = holdings(aws_url, identity, region, cluster)
        shared = {k: len(v) for k, v in held.items() if k != "deployment node groups"}
        # One FSx where a deployment staged weights on it (Scout on GPU), none where none did.
        fits = (shared["clusters"] == shared["system node groups"] == shared["buckets"] == 1
                and shared["FSx file systems"] <= 1
                and set(held["deployment node groups"])
                == {naming.nodegroup_name(cluster, region, namespace, d) for d in deployments})
        ok &= fits
        say(f"  {region}: {', '.join(f'{n} {k}' for k, n in shared.items())}; node groups of "
            f"{', '.join(sorted(deployments)) or 'no deployment'}: {'as expected' if fits else held}")
    return ok


def deploy_at_once(api: Api, aws_url: str, identity: dict[str, str],
                   confs: dict[str, dict[str, Any]], cluster: str = CLUSTER, namespace: str = NAMESPACE,
                   on_poll: Callable[[dict[str, list[dict[str, Any]]]], None] | None = None,
                   poll_s: float = 3) -> list[Run]:
    """The deploys of ``DEPLOYS`` that ``confs`` gives a conf (by label) at once, followed to their
    end (looking every ``poll_s``); then the local AWS's own listings checked. The runs; raises
    ``DemoFailed``."""
    say("\nDeploys at once (real runs on the local stand-ins): Llama 4 Scout on GPU and Llama 3 8B onto "
        f"cluster {cluster} in us-west-2, which does not exist yet (one run creates it and what the deployments "
        "share, the other adopts them), and Scout on Trainium2 onto its namesake in us-east-2; triggered as the UI's "
        "Trigger button does (POST /api/v2/dags/<dag>/dagRuns; `airflow dags trigger <dag> --conf '<json>'` "
        "makes the same runs):")
    runs = [trigger(api, label, dag_id, confs[label]) for label, (dag_id, _) in DEPLOYS.items() if label in confs]
    say("\nFollowing the runs (elapsed mm:ss, run, step, state, what it waits for):")
    _checked(report(api, runs, follow(api, runs, on_poll=on_poll, poll_s=poll_s)), aws_url, identity,
             _expected(confs), cluster, namespace)
    return runs


def teardown_beside_deploy(api: Api, aws_url: str, identity: dict[str, str],
                           conf: dict[str, Any], cluster: str = CLUSTER, namespace: str = NAMESPACE,
                           on_poll: Callable[[dict[str, list[dict[str, Any]]]], None] | None = None) -> list[Run]:
    """After ``deploy_at_once``: the teardown of scout-gpu while llama3-gpu (``conf``) is deployed
    again on the same cluster; then the local AWS's own listings checked. The runs; raises ``DemoFailed``."""
    say("\nOn the shared cluster, a teardown of one deployment while the other is deployed again (it serves "
        "already: the run adopts everything):")
    gone = DEPLOYS["gpu"][1]
    teardown = {"deployment_name": gone["deployment_name"], "cluster_name": cluster, "region": gone["region"],
                "namespace": namespace}
    runs = [trigger(api, "down", TEARDOWN_DAG_ID, teardown), trigger(api, "again", MODEL_DAG_ID, conf)]
    _checked(report(api, runs, follow(api, runs, on_poll=on_poll)), aws_url, identity,
             _expected(label for label in DEPLOYS if label != "gpu"), cluster, namespace)
    return runs


def _expected(labels: Iterable[str]) -> dict[str, set[str]]:
    """The deployments of these ``DEPLOYS`` labels, by region."""
    expected: dict[str, set[str]] = {}
    for label in labels:
        params = DEPLOYS[label][1]
        expected.setdefault(params["region"], set()).add(params["deployment_name"])
    return expected


def _checked(succeeded: bool, aws_url: str, identity: dict[str, str], expected: dict[str, set[str]], cluster: str,
             namespace: str) -> None:
    say("\nIn the local AWS's own listings:")
    if not (check_holdings(aws_url, identity, expected, cluster, namespace) and succeeded):
        raise DemoFailed("a run failed, or the local AWS holds other than one of each (above)")


# -- commands -----------------------------------------------------------------------------------
def up(team_stack: bool) -> int:
    say(STANDINS + "\n")
    state = load_state()
    if "airflow" in state and bool(state.get("team")) != team_stack:
        say(f"The demo runs {'on the team stack' if state.get('team') else 'without --team'} already: "
            "scripts/demo-stop first, then scripts/demo" + (" --team" if team_stack else ""))
        return 2
    say("Starting (or reusing) the local stack" + (" (team: PostgreSQL, Redis, CeleryExecutor):" if team_stack else ":"))
    with vllm_beside(state) as vllm:
        airflow = launch_airflow(state, helm_bin(), ensure_team(state) if team_stack else None)
        kubeconfig = ensure_control_plane(state)
        aws_url, identity = ensure_aws(state, kubeconfig)
        ensure_job_markers(state, kubeconfig, aws_url)
        connect_airflow(state, airflow, aws_url, identity)
        api = airflow.api()
        api.wait_for_dags(DAG_ID, MODEL_DAG_ID, TEARDOWN_DAG_ID, IDLE_DAG_ID, BATCH_DAG_ID)
        vllm_url = vllm.url
        confs = {label: deploy_conf(params, vllm_url) for label, (_, params) in DEPLOYS.items()}
        # The deploys start while vLLM still starts: nothing reaches it before a smoke test, which
        # waits for a server still warming up (SmokeTestOperator), as for a pod on EKS.
        try:
            deploy_at_once(api, aws_url, identity, confs, on_poll=vllm.failed)
            teardown_beside_deploy(api, aws_url, identity, confs["llama3"])
            ok = True
        except DemoFailed as failed:
            say(f"\n{failed}")
            ok = False
    say(f"\nA DAG of a team's own that needs Scout while it runs ({BATCH_DAG_ID}, through llm_endpoint): the first "
        "run holds scout-gpu and brings it back up through deploy_model, the second, right after, adopts it:")
    ok &= consume(api, vllm_url, aws_url, identity, kubeconfig)
    say("\nIn the local AWS's own listings:")
    ok &= check_holdings(aws_url, identity, {"us-west-2": {"llama3-gpu", "scout-gpu"}, "us-east-2": {"scout-trn2"}})
    cli_env = f"export AIRFLOW_HOME={TEAM_HOME}; source {TEAM_HOME}/airflow.env; " if team_stack else ""
    say(f"""
The Airflow UI: {airflow.base_url}   user {USER}, password {airflow.password}
  (the password is in {airflow.password_file}; each process logs to {stack.LOGS})
The CLI, on the same metadata DB: source scripts/env.sh; {cli_env}airflow dags list-runs {DAG_ID}

Idle teardown: {IDLE_DAG_ID} runs every 2 minutes here ({IDLE_SCHEDULE}; teams keep */10). The three
deployments left (no run holds them now) have an idle TTL of {IDLE_TTL_MINUTES} minutes: about {IDLE_TTL_MINUTES}-{IDLE_TTL_MINUTES + 2} minutes after their last request
it uninstalls their releases and deletes their node groups on its own; {CLUSTER_QUIET_MINUTES} minutes after that, the
clusters they leave unused (deployed with cluster_quiet_minutes={CLUSTER_QUIET_MINUTES}) go too, with their FSx, system
nodes, network and roles; the artifact buckets stay. Watch it in the UI (Dags ->
{IDLE_DAG_ID} -> the latest run -> summarize), or:
  source scripts/env.sh; {cli_env}airflow dags list-runs {IDLE_DAG_ID}
A second scripts/demo reuses what is up; scripts/demo-stop stops everything it started.""")
    return 0 if ok else 1


def stop_vllm(vllm: dict[str, Any]) -> None:
    from local_stack.vllm import NetNamespace

    stop_pid(vllm["pid"])
    if vllm.get("netns"):
        NetNamespace(host_ip="", ip="", **vllm["netns"]).delete()


def stop() -> int:
    state = load_state()
    if "airflow" in state:
        LocalAirflow.from_state(state["airflow"]).stop()
        say(f"  airflow                stopped (pids {sorted(state['airflow']['pids'].values())})")
    for name in ("job_markers", "aws"):
        if name in state:
            stop_pid(state[name]["pid"])
            say(f"  {name:<22} stopped (pid {state[name]['pid']})")
    for name, backend in state.get("team", {}).items():
        stop_pid(backend["pid"])
        say(f"  {name:<22} stopped (pid {backend['pid']})")
    vllm = state.get("vllm")
    if vllm:
        stop_vllm(vllm)
        say(f"  vLLM                   stopped (pid {vllm['pid']})")
    if state.get("control_plane", {}).get("started_by_demo"):
        stack.sandbox("down")
        say("  control plane          stopped (scripts/sandbox-cluster down)")
    elif "control_plane" in state:
        say("  control plane          left running (it was up before the demo)")
    ports = [state["airflow"]["port"]] if "airflow" in state else []
    ports += [int(state["aws"]["url"].rsplit(":", 1)[1])] if "aws" in state else []
    ports += [backend["port"] for backend in state.get("team", {}).values()]
    busy = [port for port in ports if stack.port_open(port)]
    stack.STATE.unlink(missing_ok=True)
    say(f"  ports still in use: {busy}" if busy else f"  ports free: {ports}")
    return 1 if busy else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["up", "stop"], nargs="?", default="up")
    parser.add_argument("--team", action="store_true", help="on PostgreSQL, Redis and the CeleryExecutor")
    args = parser.parse_args()
    sys.exit(up(args.team) if args.command == "up" else stop())


if __name__ == "__main__":
    main()

"""The idle teardown at fleet scale: one run of teardown_idle_deployments over 200 deployments on 10
EKS clusters, on the team stack (PostgreSQL, Redis, the CeleryExecutor with 2 workers), as
`scripts/demo --team` starts it.

What the run judges is made the way a deploy makes it, on the local parts: the clusters and each
deployment's node group in the moto server (the plan's names and tags), each release installed
with our chart by helm into the local control plane (one namespace per cluster: every EKS cluster
of the local AWS is served by that one control plane), on kwok nodes made for them (g5.48xlarge,
8 GPUs each), and each deployment's record as an event of the llm_deployments Asset (what
`register` emits), sent through the REST API. Their metrics endpoints are a stand-in: one local
server speaking vLLM's Prometheus format for all of them (``FleetMetrics``).

The mix, by deployment index: idle (TTL 0 and counters unchanged since an hour ago: removed),
busy (counters moved: kept), protected (kept), unreadable metrics (HTTP 503: kept) and young
(TTL 60: kept). The run's summary is checked against it, verdict by verdict.

    scripts/demo-stop      # if the non-team demo is up
    .venv/bin/python benchmarks/idle_teardown_fleet.py [--deployments 200] [--clusters 10]
    scripts/demo-stop      # stops what it started

It prints the run's wall time (from the trigger to the run's end), the task instances by task and
their seconds from start to end, the AWS requests per deployment (moto's request log)
and the Kubernetes requests per deployment (the API server's own counter; every client of it).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "plugins")]

from llm_on_eks.aws.api_calls import create_nodegroup_request  # noqa: E402
from llm_on_eks.kube.helm_values import helm_command, helm_values  # noqa: E402
from llm_on_eks.naming import CREATED_AT_KEY  # noqa: E402
from llm_on_eks.operators.register import deployment_record  # noqa: E402
from llm_on_eks.plan import build_plan  # noqa: E402
from llm_on_eks.serving.idleness import STATE_ANNOTATION  # noqa: E402
from local_stack import demo, request_log, stack  # noqa: E402
from local_stack.api_server_requests import request_totals, since  # noqa: E402

REGION = "us-west-2"
NEVER = "0 0 1 1 *"  # the idle teardown runs when triggered here, not on its schedule
KINDS = ("idle", "busy", "protected", "unreadable", "young")
# What the summary's reason says of each kind (llm_on_eks.serving.idleness.judge's words).
EXPECTED = {"idle": "min, TTL 0 min", "busy": "kept: served since the last check", "protected": "kept: protected",
            "unreadable": "kept: metrics unreadable", "young": "younger than its idle TTL of 60 min"}
COUNTERS = {"requests_succeeded": 40.0, "prompt_tokens": 4000.0, "generation_tokens": 2000.0}
GPUS_PER_NODE = 8
RUN_TIMEOUT_S = 3600


class FleetMetrics:
    """Stand-in for every deployment's vLLM /metrics: ``/<deployment>/metrics`` answers the
    counters its kind says (busy ones a little higher at every read; unreadable ones HTTP 503)."""

    def __init__(self, kinds: dict[str, str]) -> None:
        self.kinds, self.reads = kinds, Counter()
        fleet = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                name = self.path.strip("/").removesuffix("/metrics")
                kind = fleet.kinds.get(name)
                fleet.reads[name] += 1
                if kind is None or kind == "unreadable":
                    self.send_error(503 if kind else 404)
                    return
                bump = fleet.reads[name] if kind == "busy" else 0
                body = "".join(
                    f"# TYPE vllm:{metric} {'gauge' if metric.startswith('num_') else 'counter'}\n"
                    f'vllm:{metric}{{model_name="fleet"}} {value}\n'
                    for metric, value in (("num_requests_running", 0.0), ("num_requests_waiting", 0.0),
                                          ("request_success_total", COUNTERS["requests_succeeded"] + bump),
                                          ("prompt_tokens_total", COUNTERS["prompt_tokens"] + 100 * bump),
                                          ("generation_tokens_total", COUNTERS["generation_tokens"] + 50 * bump),
                                          ("kv_cache_usage_perc", 0.0))).encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}"


def fleet(deployments: int, clusters: int) -> list[dict]:
    """Each deployment's plan and kind, spread over the clusters."""
    made = []
    for i in range(deployments):
        kind, cluster = KINDS[i % len(KINDS)], f"fleet-{i % clusters:02d}"
        conf = {"model": "llama-3-8b", "accelerator": "gpu", "weights": "hub", "instance_type": "g5.48xlarge",
                "region": REGION, "cluster_name": cluster, "namespace": cluster, "deployment_name": f"d{i:03d}",
                "idle_ttl_minutes": 60 if kind == "young" else 0, "protected": kind == "protected",
                "endpoint_url": "http://127.0.0.1:0"}  # replaced once the metrics stand-in listens
        made.append({"kind": kind, "conf": conf})
    return made


def make_aws(aws_url: str, identity: dict, items: list[dict]) -> None:
    """The clusters and each deployment's node group, as the plan names and tags them."""
    import boto3

    eks = boto3.session.Session(aws_access_key_id=identity["access_key_id"],
                                aws_secret_access_key=identity["secret_access_key"],
                                region_name=REGION).client("eks", endpoint_url=aws_url)
    existing = set(eks.list_clusters()["clusters"])
    for name in sorted({i["plan"]["cluster"]["name"] for i in items} - existing):
        eks.create_cluster(name=name, roleArn="arn:aws:iam::123456789012:role/fleet",
                           resourcesVpcConfig={"subnetIds": ["subnet-fleet"]})
    created = {CREATED_AT_KEY: datetime.now(UTC).isoformat(timespec="seconds")}
    for item in items:
        eks.create_nodegroup(**create_nodegroup_request(item["plan"]["cluster"]["name"], item["plan"]["nodegroup"],
                                                        ["subnet-fleet"], created,
                                                        "arn:aws:iam::123456789012:role/fleet-nodes"))


def make_nodes(api, count: int) -> list[str]:
    """kwok nodes for the serving pods: the chart selects the instance type and tolerates the GPU taint."""
    from kubernetes import client

    core, names = client.CoreV1Api(api), []
    capacity = {"cpu": "192", "memory": "768Gi", "pods": "110", "nvidia.com/gpu": str(GPUS_PER_NODE)}
    for n in range(count):
        name = f"fleet-g5-48xlarge-{n}"
        core.create_node({"apiVersion": "v1", "kind": "Node", "metadata": {
            "name": name, "annotations": {"kwok.x-k8s.io/node": "fake"},
            "labels": {"type": "kwok", "kubernetes.io/hostname": name, "node.kubernetes.io/instance-type": "g5.48xlarge",
                       "topology.kubernetes.io/zone": f"{REGION}a"}},
            "spec": {"taints": [{"key": "nvidia.com/gpu", "value": "true", "effect": "NoSchedule"}]},
            "status": {"allocatable": capacity, "capacity": capacity}})
        names.append(name)
    return names


def install(helm: str, kubeconfig: str, item: dict, workdir: Path) -> None:
    """The release as a deploy installs it: our chart, the plan's values, helm upgrade --install."""
    release = item["plan"]["release"]
    values = workdir / f"{release['namespace']}-{release['name']}.json"
    values.write_text(json.dumps(helm_values(release)))
    command = [helm, "--kubeconfig", kubeconfig, *helm_command(release, str(values))[1:]]
    subprocess.run(command, check=True, capture_output=True, text=True, timeout=300)


def seed_state(api, item: dict, record: dict) -> None:
    """The idle clock as earlier runs of the judge left it on the Service: the counters read an
    hour ago (the metrics now say the same for idle ones, more for busy ones)."""
    from kubernetes import client

    if item["kind"] not in ("idle", "busy"):
        return
    an_hour_ago = (datetime.now(UTC) - timedelta(hours=1)).isoformat(timespec="seconds")
    state = {"counters": COUNTERS, "last_active": an_hour_ago, "deployed_at": record["deployed_at"]}
    release = item["plan"]["release"]
    client.CoreV1Api(api).patch_namespaced_service(release["name"], release["namespace"], {
        "metadata": {"annotations": {STATE_ANNOTATION: json.dumps(state, sort_keys=True)}}})


def wait_ready(api, items: list[dict], timeout_s: float = 600) -> None:
    from kubernetes import client

    apps, deadline = client.AppsV1Api(api), time.monotonic() + timeout_s
    namespaces = sorted({i["plan"]["release"]["namespace"] for i in items})
    while True:
        ready = sum(1 for ns in namespaces for d in apps.list_namespaced_deployment(ns).items
                    if (d.status.ready_replicas or 0) >= 1)
        if ready >= len(items):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{ready} of {len(items)} releases ready")
        time.sleep(3)


def all_task_instances(api, dag_id: str, run_id: str) -> list[dict]:
    found, offset = [], 0
    while True:
        page = api.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances?limit=100&offset={offset}")
        found += page["task_instances"]
        offset += 100
        if offset >= page["total_entries"]:
            return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deployments", type=int, default=200)
    parser.add_argument("--clusters", type=int, default=10)
    args = parser.parse_args()
    state = stack.load_state()
    if "airflow" in state and not state.get("team"):
        print("the demo runs without --team: scripts/demo-stop first", file=sys.stderr)
        return 2
    print(f"The team stack (scripts/demo --team's), {args.deployments} deployments on {args.clusters} clusters:")
    helm = demo.helm_bin()
    airflow = demo.launch_airflow(state, helm, demo.ensure_team(state), idle_schedule=NEVER)
    kubeconfig = demo.ensure_control_plane(state)
    aws_url, identity = demo.ensure_aws(state, kubeconfig)
    demo.connect_airflow(state, airflow, aws_url, identity)
    api = airflow.api()
    api.wait_for_dags(demo.IDLE_DAG_ID)

    # The plans name the metrics stand-in on 127.0.0.1, as the stack's Airflow allows (demo.stack_settings).
    os.environ["AIRFLOW__LLM_ON_EKS__ALLOW_LOOPBACK_ENDPOINT"] = "True"
    items = fleet(args.deployments, args.clusters)
    metrics = FleetMetrics({item["conf"]["deployment_name"]: item["kind"] for item in items})
    for item in items:
        item["conf"]["endpoint_url"] = f"{metrics.url}/{item['conf']['deployment_name']}"
        item["plan"] = build_plan(item["conf"])
    from kubernetes import config

    kube = config.new_client_from_config(config_file=kubeconfig)
    started = time.monotonic()
    make_aws(aws_url, identity, items)
    nodes = make_nodes(kube, -(-len(items) // GPUS_PER_NODE))
    with tempfile.TemporaryDirectory() as workdir, ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda item: install(helm, kubeconfig, item, Path(workdir)), items))
    wait_ready(kube, items)
    (asset,) = [a for a in api.get("/api/v2/assets?limit=100")["assets"] if a["name"] == "llm_deployments"]
    for item in items:
        record = deployment_record(item["plan"])
        seed_state(kube, item, record)
        api.post("/api/v2/assets/events", {"asset_id": asset["id"], "extra": record})
    print(f"  made in {time.monotonic() - started:.0f} s: {args.clusters} clusters and {len(items)} node groups "
          f"(moto), {len(nodes)} kwok nodes, {len(items)} releases (helm), {len(items)} Asset events; "
          f"kinds {dict(Counter(i['kind'] for i in items))}")

    request_log.reset(aws_url)
    request_log.start(aws_url)
    before = request_totals(kubeconfig)
    run_id = f"fleet-{datetime.now(UTC):%Y%m%dT%H%M%S}"
    started = time.monotonic()
    airflow.cli("dags", "trigger", demo.IDLE_DAG_ID, "--run-id", run_id)
    while (run_state := api.run(demo.IDLE_DAG_ID, run_id)["state"]) not in ("success", "failed"):
        if time.monotonic() - started > RUN_TIMEOUT_S:
            raise TimeoutError(f"{run_id} not done in {RUN_TIMEOUT_S // 60} min")
        time.sleep(5)
    wall = time.monotonic() - started
    request_log.stop(aws_url)
    kube_requests: Counter = Counter()
    for (verb, _, resource, _, _), count in since(before, request_totals(kubeconfig)).items():
        kube_requests[(verb, resource)] += count
    aws_calls = [c for c in request_log.calls(aws_url) if c.access_key_id == identity["access_key_id"]]

    tis = all_task_instances(api, demo.IDLE_DAG_ID, run_id)
    by_task: dict[str, list[float]] = {}
    for ti in tis:
        by_task.setdefault(ti["task_id"], []).append(ti.get("duration") or 0.0)
    print(f"\nrun {run_id}: {run_state} in {wall:.0f} s wall ({wall / 60:.1f} min; the schedule's interval is 10 min)")
    print(f"  {len(tis)} task instances, {sum(map(sum, by_task.values())):.0f} s from their starts to their ends "
          "(deferred waits included):")
    for task_id, durations in sorted(by_task.items(), key=lambda kv: -sum(kv[1])):
        print(f"    {task_id:<42} x{len(durations):<4} {sum(durations):7.0f} s, {max(durations):5.1f} s the longest")
    n = len(items)
    print(f"  AWS: {len(aws_calls)} requests, {len(aws_calls) / n:.1f} per deployment: "
          f"{dict(Counter(c.action for c in aws_calls).most_common(8))}")
    print(f"  Kubernetes (all clients): {sum(kube_requests.values()):.0f} requests, "
          f"{sum(kube_requests.values()) / n:.1f} per deployment; the most: "
          f"{ {f'{v} {r}': int(c) for (v, r), c in Counter(kube_requests).most_common(8)} }")
    summary = api.xcom(demo.IDLE_DAG_ID, run_id, "summarize") or {}
    reasons = {v["deployment"]: v["reason"] for v in summary.get("kept", []) + summary.get("removed", [])}
    wrong = {i["conf"]["deployment_name"]: (i["kind"], reasons.get(i["conf"]["deployment_name"])) for i in items
             if EXPECTED[i["kind"]] not in (reasons.get(i["conf"]["deployment_name"]) or "")}
    print(f"  verdicts: {summary.get('checked', 0)} checked, {len(summary.get('removed', []))} removed, "
          f"{len(wrong)} not as the mix says" + (f": {dict(list(wrong.items())[:10])}" if wrong else ""))
    remove_fleet(kube, items, nodes)
    return 0 if run_state == "success" and not wrong else 1


def remove_fleet(api, items: list[dict], nodes: list[str]) -> None:
    """What the run kept goes with its namespace; the kwok nodes made here go too (moto's part
    goes with the local AWS: scripts/demo-stop)."""
    from kubernetes import client

    core = client.CoreV1Api(api)
    for namespace in sorted({i["plan"]["release"]["namespace"] for i in items}):
        core.delete_namespace(namespace)
    for name in nodes:
        core.delete_node(name)


if __name__ == "__main__":
    raise SystemExit(main())

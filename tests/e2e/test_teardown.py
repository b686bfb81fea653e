"""teardown_deployment and teardown_idle_deployments end to end through dag.test(), on the same
real parts as the deploy test (moto server, local control plane with the helm CLI, the vLLM CPU
server): a deployment with traffic stays, the same one idle past its TTL goes with its node
group, protected and unreadable ones are kept with their reasons, and a teardown with every
switch on leaves nothing of the deployment, after a dry run that listed exactly that.

Time is simulated the way a clock would move it: the test shortens the TTL annotation on the
release's Service and moves the idle clock's last-active time back, instead of waiting an hour.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import httpx

from tests.aws.conftest import CREATE, client
from tests.aws.test_provision import inventory
from tests.dag_runs import load_dag, run_dag
from tests.integration.test_sandbox_cluster import wait_for
from tests.kube.marker_writer import marker_written_when_job_succeeds

REGION = "us-west-2"
STATE = "llm-on-eks.io/idle-state"


def _deploy(sandbox_cluster, aws_env, namespace, name, endpoint, **extra):
    from llm_on_eks.plan import build_plan

    conf = {"model": "llama4-scout", "accelerator": "gpu", "region": REGION, **CREATE, "deployment_name": name,
            "namespace": namespace, "kubernetes_conn_id": "sandbox_k8s", "endpoint_url": endpoint,
            "images_per_prompt": 0, **extra}
    dag = load_dag("dags/deploy_llama4.py", "deploy_llama4")
    for key, value in conf.items():
        dag.params[key] = value
    plan = build_plan(dag.params.validate())
    s3 = client(aws_env, "s3", REGION)
    with marker_written_when_job_succeeds(sandbox_cluster, s3, namespace, plan["storage"]["artifact_bucket"],
                                          plan["storage"]["fsx"]["marker_key"], deadline_s=600):
        result = run_dag(load_dag("dags/deploy_llama4.py", "deploy_llama4"), conf)
    assert result.failed() == [], result.states
    return result


def _judge():
    result = run_dag(load_dag("dags/teardown_idle_deployments.py", "teardown_idle_deployments"))
    assert result.failed() == [], result.states
    return result, {(k["deployment"]): k["reason"] for k in result.xcoms["summarize"]["kept"]}


def _annotate(sandbox_cluster, namespace, release, annotations):
    from kubernetes import client as k8s

    k8s.CoreV1Api(sandbox_cluster.api_client()).patch_namespaced_service(
        release, namespace, {"metadata": {"annotations": annotations}})


def _state(sandbox_cluster, namespace, release):
    from kubernetes import client as k8s

    service = k8s.CoreV1Api(sandbox_cluster.api_client()).read_namespaced_service(release, namespace)
    return json.loads(service.metadata.annotations[STATE])


def test_idle_deployment_goes_busy_protected_and_unreadable_ones_stay(aws_env, sandbox_cluster, sandbox_k8s_conn,
                                                                        namespace, vllm_server):
    _deploy(sandbox_cluster, aws_env, namespace, "scout", vllm_server.base_url)
    _deploy(sandbox_cluster, aws_env, namespace, "guarded", vllm_server.base_url, protected=True)

    first, kept = _judge()
    assert first.xcoms["summarize"]["checked"] == 2 and first.xcoms["summarize"]["removed"] == []
    assert kept["scout"].startswith("kept: ") and kept["scout"].endswith("younger than its idle TTL of 60 min")
    assert kept["guarded"] == "kept: protected"

    # The TTL has passed (as if an hour went by): the first reading starts the idle clock.
    _annotate(sandbox_cluster, namespace, "scout", {"llm-on-eks.io/idle-ttl-minutes": "1"})
    _, kept = _judge()
    assert kept["scout"] == "kept: first reading, the idle clock starts now"
    before = _state(sandbox_cluster, namespace, "scout")

    # Traffic moves the counters: still in use.
    httpx.post(f"{vllm_server.base_url}/v1/completions", timeout=120,
               json={"model": "tiny-llama4", "prompt": "hello", "max_tokens": 4}).raise_for_status()
    _, kept = _judge()
    assert kept["scout"] == "kept: served since the last check"
    assert _state(sandbox_cluster, namespace, "scout")["counters"] != before["counters"]

    # No traffic since, and the last activity was two minutes ago (TTL 1 min): it goes.
    state = _state(sandbox_cluster, namespace, "scout")
    state["last_active"] = (datetime.now(UTC) - timedelta(minutes=2)).isoformat(timespec="seconds")
    _annotate(sandbox_cluster, namespace, "scout", {STATE: json.dumps(state)})
    gone, kept = _judge()
    (removed,) = gone.xcoms["summarize"]["removed"]
    assert removed["deployment"] == "scout" and re.fullmatch(r"idle [2-5] min, TTL 1 min", removed["reason"])
    assert removed["hourly_usd"] > 50 and removed["idle_cost_usd"] > 0
    assert kept == {"guarded": "kept: protected"}
    held = inventory(aws_env, REGION)
    assert "scout-nodes" not in held["nodegroups"] and "guarded-nodes" in held["nodegroups"]
    assert sandbox_cluster.helm_run("status", "scout", "--namespace", namespace, check=False).returncode != 0
    # Shared things stay while another deployment uses them: the token Secret and the FSx claim.
    objects = {o["kind"]: o["result"] for o in gone.xcoms["teardown.teardown_kube.delete_cluster_objects"]["objects"]
               if o["kind"] in ("Secret", "PersistentVolumeClaim", "PersistentVolume")}
    assert objects == {"Secret": "kept: still used by ['guarded']",
                       "PersistentVolumeClaim": "kept: still used by ['guarded']",
                       "PersistentVolume": "kept: still used by ['guarded']"}

    # Removed deployments are not judged again; a server whose metrics cannot be read is kept.
    _deploy(sandbox_cluster, aws_env, namespace, "dark", "http://127.0.0.1:9", smoke_test=False)
    _annotate(sandbox_cluster, namespace, "dark", {"llm-on-eks.io/idle-ttl-minutes": "0"})
    last, kept = _judge()
    assert last.xcoms["summarize"]["checked"] == 2
    assert kept["dark"].startswith("kept: metrics unreadable") and kept["guarded"] == "kept: protected"


def test_teardown_with_every_switch_leaves_nothing_after_a_dry_run_that_said_so(aws_env, sandbox_cluster,
                                                                                sandbox_k8s_conn, namespace,
                                                                                vllm_server):
    from kubernetes import client as k8s

    _deploy(sandbox_cluster, aws_env, namespace, "scout", vllm_server.base_url)
    conf = {"deployment_name": "scout", "namespace": namespace, "region": REGION, "kubernetes_conn_id": "sandbox_k8s",
            "delete_fsx": True, "delete_cluster": True, "delete_artifacts": True}
    held = inventory(aws_env, REGION)

    dry = run_dag(load_dag("dags/teardown_deployment.py", "teardown_deployment"), {**conf, "dry_run": True})
    assert dry.failed() == [], dry.states
    assert inventory(aws_env, REGION) == held
    assert sandbox_cluster.helm_run("status", "scout", "--namespace", namespace).returncode == 0

    real = run_dag(load_dag("dags/teardown_deployment.py", "teardown_deployment"), conf)
    assert real.failed() == [], real.states
    steps = ("teardown_aws.delete_nodegroup", "teardown_aws.delete_fsx", "teardown_aws.delete_system_nodegroup",
             "teardown_aws.delete_cluster", "teardown_aws.delete_artifacts")
    would = {s: dry.xcoms[s]["would"]["action"] for s in steps}
    assert all(action.startswith("would delete: ") for action in would.values()), would
    assert {s: real.xcoms[s]["action"] for s in steps} == dict.fromkeys(steps, "deleted")
    assert dry.xcoms["teardown_kube.uninstall_release"]["would"]["action"].startswith("would delete: ")
    assert real.xcoms["teardown_kube.uninstall_release"]["action"] == "uninstalled"
    planned = {(o["kind"], o["name"]) for o in dry.xcoms["teardown_kube.delete_cluster_objects"]["would"]["objects"]
               if o["result"].startswith("would delete: ")}
    deleted = {(o["kind"], o["name"]) for o in real.xcoms["teardown_kube.delete_cluster_objects"]["objects"]
               if o["result"] == "deleted"}
    assert planned == deleted and {"Job", "Secret", "PersistentVolumeClaim", "PersistentVolume"} <= {
        kind for kind, _ in deleted}

    left = inventory(aws_env, REGION)
    assert (left["clusters"], left["nodegroups"], left["file_systems"], left["buckets"]) == ([], [], [], [])
    core = k8s.CoreV1Api(sandbox_cluster.api_client())
    wait_for(lambda: not core.list_namespaced_pod(namespace).items, what="the Job's pods collected")
    assert core.list_namespaced_secret(namespace, label_selector="llm-on-eks.io/managed-by=llm-on-eks").items == []
    assert k8s.BatchV1Api(sandbox_cluster.api_client()).list_namespaced_job(namespace).items == []

    again = run_dag(load_dag("dags/teardown_deployment.py", "teardown_deployment"), conf)
    assert again.failed() == [], again.states
    assert again.xcoms["teardown_kube.uninstall_release"]["action"] == "already gone"
    assert again.xcoms["teardown_aws.delete_nodegroup"]["action"] == "already gone"

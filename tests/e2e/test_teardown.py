"""The teardown DAGs end to end through dag.test(), on the real parts the deploy test uses (moto
server, local control plane with the helm CLI, the vLLM CPU server), from two real deploys:
Scout (p5, weights staged on FSx) and a protected Llama 3 8B.

- teardown_idle_deployments: a deployment with traffic inside its TTL stays; the same one idle
  past its TTL goes with its node group, while the namespace's shared Secret and FSx claim and
  the GPU device plugin stay for the other deployment; a deployment whose Lease a deploy run
  holds is kept with that reason.
- teardown_deployment: while a deploy run holds the Lease it fails naming that run and changes
  nothing; then its dry run changes nothing and lists exactly what the real run removes; with
  every switch on, nothing of the deployment is left in moto or the cluster.

The DAGs are those of dags/, built with one-second AWS polls (tests/dags/lifecycle/lifecycle.py), so the
whole module fits the CI budget. Time is moved the way a clock would move it: the test shortens
the TTL annotation on the release's Service and moves the idle clock's last-active time back.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from local_stack import job_markers
from tests.aws.conftest import CREATE, client
from tests.aws.test_empty_account import holdings
from tests.aws.test_provision import inventory
from tests.dag_runs import load_dag, run_dag
from tests.integration.test_sandbox_cluster import wait_for

REGION = "us-west-2"
DAGS = "tests/dags/lifecycle/lifecycle.py"
STATE = "llm-on-eks.io/idle-state"
TTL = "llm-on-eks.io/idle-ttl-minutes"
RACING = "deploy_model/manual__racing"


def _deploy(sandbox_cluster, aws_env, namespace, name, endpoint, **extra):
    """Scout on a p5 node (weights staged on FSx), or, with ``model``, another catalog model."""
    conf = {"model": "llama4-scout", "accelerator": "gpu", "region": REGION, **CREATE, "deployment_name": name,
            "namespace": namespace, "endpoint_url": endpoint, **extra}
    if conf["model"] == "llama4-scout":
        conf["images_per_prompt"] = 0
    with job_markers.while_running(sandbox_cluster.api_client(), client(aws_env, "s3", REGION), namespace,
                                   deadline_s=600):
        result = run_dag(load_dag(DAGS, "lifecycle_deploy"), conf)
    assert result.failed() == [], result.states
    assert result.xcoms["release_lease"]["action"] == "released"
    return result


def _judge(namespace: str):
    """One idle-teardown run; what it kept in this test's namespace (the metadata DB also holds
    the deployments of earlier tests, whose namespaces are gone)."""
    result = run_dag(load_dag(DAGS, "lifecycle_idle_teardown"))
    assert result.failed() == [], result.states
    return result, {k["deployment"]: k["reason"] for k in result.xcoms["summarize"]["kept"]
                    if k["namespace"] == namespace}


def _service(sandbox_cluster, namespace, release, annotations=None):
    from kubernetes import client as k8s

    core = k8s.CoreV1Api(sandbox_cluster.api_client())
    if annotations:
        core.patch_namespaced_service(release, namespace, {"metadata": {"annotations": annotations}})
    return core.read_namespaced_service(release, namespace).metadata.annotations


def test_idle_and_manual_teardown(aws_env, sandbox_cluster, eks_access, namespace, vllm_server, capfd,
                                  monkeypatch):
    from kubernetes import client as k8s

    from llm_on_eks.kube.lease import read, release, try_acquire

    monkeypatch.setenv("AIRFLOW__LLM_ON_EKS__LEASE_WAIT_S", "0")  # the loser fails at once, naming the holder
    api = sandbox_cluster.api_client()
    _deploy(sandbox_cluster, aws_env, namespace, "scout", vllm_server.base_url)
    # On the sandbox's g5.2xlarge, a GPU deployment beside Scout.
    _deploy(sandbox_cluster, aws_env, namespace, "guarded", vllm_server.base_url, model="llama-3-8b",
            protected=True, smoke_test=False)
    # A deploy run of "guarded" is under way (it holds the Lease, renewed just now).
    assert try_acquire(api, namespace, "guarded", RACING, "deploy", 600)[0].step == "create"

    # Past its TTL (0 min: minutes old already), the first reading starts the idle clock; the
    # deployment a deploy run is working on is kept.
    _service(sandbox_cluster, namespace, "scout", {TTL: "0"})
    _, kept = _judge(namespace)
    assert kept == {"scout": "kept: first reading, the idle clock starts now",
                    "guarded": f"kept: deploy in progress (run {RACING})"}
    before = json.loads(_service(sandbox_cluster, namespace, "scout")[STATE])

    # Traffic inside the TTL moves the counters: still in use.
    httpx.post(f"{vllm_server.base_url}/v1/completions", timeout=120,
               json={"model": vllm_server.model, "prompt": "hello", "max_tokens": 4}).raise_for_status()
    _, kept = _judge(namespace)
    assert kept["scout"] == "kept: served since the last check"
    assert json.loads(_service(sandbox_cluster, namespace, "scout")[STATE])["counters"] != before["counters"]

    # No traffic since, and the last activity two minutes back: it goes (the deployment itself is
    # a TTL old: a deploy restarts the clocks, and that cannot be moved back).
    state = json.loads(_service(sandbox_cluster, namespace, "scout")[STATE])
    state["last_active"] = (datetime.now(UTC) - timedelta(minutes=2)).isoformat(timespec="seconds")
    _service(sandbox_cluster, namespace, "scout", {STATE: json.dumps(state)})
    gone, kept = _judge(namespace)
    (removed,) = [r for r in gone.xcoms["summarize"]["removed"] if r["namespace"] == namespace]
    assert removed["deployment"] == "scout" and re.fullmatch(r"idle [2-5] min, TTL 0 min", removed["reason"])
    assert removed["hourly_usd"] > 50 and removed["idle_cost_usd"] > 0
    assert kept == {"guarded": f"kept: deploy in progress (run {RACING})"}
    # What still bills on the cluster afterwards: guarded's node group, its own; the file system
    # only scout used (its used-by tag went with it), now used by no deployment.
    (billing,) = [b for b in gone.xcoms["summarize"]["still_billing"] if b["cluster"] == "llm-inference"]
    used = {(i["kind"], i["name"]): i["used_by"] for i in billing["items"]}
    assert used[("node group", f"{namespace}_guarded-nodes")] == [f"{namespace}/guarded"]
    assert [u for (kind, _), u in used.items() if kind == "FSx file system"] == [[]]
    held = inventory(aws_env, REGION)
    assert f"{namespace}_scout-nodes" not in held["nodegroups"] and f"{namespace}_guarded-nodes" in held["nodegroups"]
    assert sandbox_cluster.helm_run("status", "scout", "--namespace", namespace, check=False).returncode != 0
    objects = {o.get("accelerator", o["kind"]): o["result"]
               for o in gone.xcoms["teardown.teardown_kube.delete_cluster_objects"]["objects"]}
    # What the namespace's deployments share stays while another is left; so does the GPU plugin
    # (the sandbox's GPU nodes carry no deployment label: all count as other deployments').
    assert {k: objects[k] for k in ("Secret", "PersistentVolumeClaim", "PersistentVolume")} == dict.fromkeys(
        ("Secret", "PersistentVolumeClaim", "PersistentVolume"), "kept: still used by ['guarded']")
    assert objects["Job"] == "deleted" and objects["gpu"].startswith("kept: gpu nodes of other deployments")
    assert read(api, namespace, "scout") is None  # released

    # teardown_deployment while the deploy run holds the Lease: fails naming it, touches nothing.
    # The deploy run renews it as each of its steps starts, as here.
    assert try_acquire(api, namespace, "guarded", RACING, "deploy", 600)[0].step == "renew"
    conf = {"deployment_name": "guarded", "namespace": namespace, "region": REGION,
            "delete_fsx": True, "delete_cluster": True, "delete_artifacts": True}
    held = inventory(aws_env, REGION)
    capfd.readouterr()
    refused = run_dag(load_dag(DAGS, "lifecycle_teardown"), conf)
    assert refused.states["take_lease"] == "failed" and refused.states["teardown_kube.uninstall_release"] \
        == "upstream_failed", refused.states
    assert f"guarded: lease {namespace}/llm-on-eks-guarded is held by run {RACING} (deploy)" in capfd.readouterr().out
    assert inventory(aws_env, REGION) == held and read(api, namespace, "guarded").holder == RACING
    assert release(api, namespace, "guarded", RACING) == "released"  # that deploy run has finished

    dry = run_dag(load_dag(DAGS, "lifecycle_teardown"), {**conf, "dry_run": True})
    assert dry.failed() == [], dry.states
    assert inventory(aws_env, REGION) == held
    assert sandbox_cluster.helm_run("status", "guarded", "--namespace", namespace).returncode == 0
    real = run_dag(load_dag(DAGS, "lifecycle_teardown"), conf)
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
    assert planned == deleted and {"Secret", "PersistentVolumeClaim", "PersistentVolume"} <= {k for k, _ in deleted}

    # Nothing of ours is left in moto's own listings: the network and roles made with the cluster went with it.
    left = holdings(aws_env, REGION)
    assert {k: left[k] for k in ("clusters", "nodegroups", "file_systems", "buckets", "vpcs", "subnets", "roles")} \
        == dict.fromkeys(("clusters", "nodegroups", "file_systems", "buckets", "vpcs", "subnets", "roles"), [])
    assert (left["internet_gateways"], left["nat_gateways"], left["addresses"], left["route_tables"]) == (0, 0, 0, 0)
    core = k8s.CoreV1Api(api)
    wait_for(lambda: not core.list_namespaced_pod(namespace).items, what="the release's pods gone")
    managed = "llm-on-eks.io/managed-by=llm-on-eks"
    assert core.list_namespaced_secret(namespace, label_selector=managed).items == []
    assert core.list_namespaced_persistent_volume_claim(namespace).items == []
    # The cluster went last, and on EKS its Lease with it; the local control plane outlives moto's
    # cluster, so this teardown run's own Lease is all that is left there.
    assert real.xcoms["release_lease"]["action"] == "gone with the cluster"
    (lease,) = k8s.CoordinationV1Api(api).list_namespaced_lease(namespace).items
    assert lease.spec.holder_identity.startswith("lifecycle_teardown/")
    assert sandbox_cluster.helm_run("list", "--namespace", namespace, "--short").stdout.strip() == ""


def test_the_policy_grants_only_what_the_runs_needed(used_actions):
    """After the covering runs (deploys from nothing and again, on GPU and Trainium2, the idle and
    the manual teardown with everything opted in), every action the policy grants was needed."""
    from botocore import xform_name

    from tests.e2e.conftest import COVERING, POLICY, SOME_PATHS, policy_actions

    if not COVERING <= used_actions.keys():
        pytest.skip(f"needs the runs of {sorted(COVERING - used_actions.keys())} in this session")
    unused = sorted(policy_actions() - policy_actions(SOME_PATHS) - set().union(*used_actions.values()))
    assert not unused, f"{POLICY.name} grants actions no run needed: {unused}"
    # What only other paths call is called by the code: its client method (boto3's snake_case name).
    source = "\n".join(p.read_text() for p in Path("plugins/llm_on_eks").rglob("*.py"))
    uncalled = [a for a in sorted(policy_actions(SOME_PATHS))
                if not re.search(rf"\.{xform_name(a.split(':')[1])}\b", source)]
    assert not uncalled, f"{POLICY.name}'s {SOME_PATHS} grants actions no code calls: {uncalled}"

"""deploy_llama4 itself, end to end through dag.test(): AWS steps against the moto server, the
cluster-side steps on the local control plane with the helm CLI, the smoke test against the real
vLLM CPU server, for Scout on GPU (FP8-free FSx staging path) and on Trainium2 (Neuron compile).
A deploy of what serves already adopts everything: tests/ui/test_parallel_deploys.py, under the
real scheduler (each step's adoption: tests/aws/test_provision.py, tests/kube).

The Kubernetes steps reach the cluster the way a user's run reaches EKS, with the AWS connection
only: moto's EKS cluster is served by the local control plane, whose webhook authenticates the
token EksHook's kubeconfig mints (local_stack/eks_authenticator.py, a stand-in for EKS's
aws-iam-authenticator). Stand-ins, each because nothing else can run here: kwok runs no containers, so a thread writes the S3 completion marker once
the staging or compile Job has succeeded, where the Job's last command would; the smoke test
reaches vLLM by the `endpoint_url` param (the service-proxy path is tested in tests/serving).
"""

from __future__ import annotations

import json

import pytest

from local_stack import job_markers
from tests.aws.conftest import CREATE, HF_TOKEN, client
from tests.dag_runs import load_dag, run_dag
from tests.serving.vllm_fixture import SCOUT

# conf, the weight step, the node it runs on (downloading needs no GPU; compiling needs the
# Neuron devices), the serving instance type. Regions are ones whose instance offerings (moto's
# data, as AWS's) hold the instance type.
TARGETS = {
    "gpu": ({"accelerator": "gpu", "region": "us-west-2"}, "prepare_weights.stage_to_fsx", "m6i-2xlarge-0",
            "p5.48xlarge"),
    "neuron": ({"accelerator": "neuron", "region": "us-east-2"}, "prepare_weights.neuron_compile", "trn2-48xlarge-0",
               "trn2.48xlarge"),
}


@pytest.fixture
def deploy_llama4(aws_env, eks_access):
    def load():  # a fresh DAG object per run: dag.test() leaves a run's conf in its params
        return load_dag("dags/deploy_llama4.py", "deploy_llama4")

    return load


@pytest.mark.parametrize("target", ["gpu", "neuron"])
def test_scout_from_nothing_to_a_tested_endpoint(aws_env, deploy_llama4, namespace, vllm_server,
                                                           sandbox_cluster, capfd, target):
    from kubernetes import client as k8s

    from llm_on_eks.plan import build_plan

    place, weights_task, weights_node, instance_type = TARGETS[target]
    conf = {"model": "llama4-scout", **place, **CREATE, "deployment_name": "scout", "namespace": namespace,
            "endpoint_url": vllm_server.base_url, "images_per_prompt": 0}
    if target == "neuron":  # the token as a team keeps it, in Secrets Manager; the GPU run reads the connection
        client(aws_env, "secretsmanager", place["region"]).create_secret(
            Name="llm-on-eks/hf-token", SecretString=json.dumps({"token": HF_TOKEN}))
        conf["hf_token_secret_id"] = "llm-on-eks/hf-token"
    params = deploy_llama4().params
    for name, value in conf.items():
        params[name] = value
    plan = build_plan(params.validate())
    bucket = plan["storage"]["artifact_bucket"]
    key = plan["neuron"]["marker_key"] if target == "neuron" else plan["storage"]["fsx"]["marker_key"]
    s3 = client(aws_env, "s3", place["region"])
    with job_markers.while_running(sandbox_cluster.api_client(), s3, namespace, deadline_s=600) as written:
        first = run_dag(deploy_llama4(), conf)
    assert first.failed() == [], first.states
    # The Job's annotation names the marker the pipeline waits for: the stand-in wrote just that one.
    assert written == [f"s3://{bucket}/{key}"]
    skipped = {t for t, s in first.states.items() if s == "skipped"}
    # Nothing failed: mark_failed and the teardown-on-failure groups after it are skipped too
    # (release, its objects, node group and FSx use; no steps for what deployments share).
    on_failure = {t for t in first.states if t == "mark_failed" or t.startswith(("teardown_kube.", "teardown_aws."))}
    assert len(on_failure) == 5
    assert skipped == {"prepare_weights.weights_from_hub", "prepare_weights.stage_to_s3", "benchmark", *on_failure, *(
        {"prepare_weights.stage_to_fsx"} if target == "neuron" else {"prepare_weights.neuron_compile"})}

    api = sandbox_cluster.api_client()
    assert len(k8s.BatchV1Api(api).list_namespaced_job(namespace).items) == 1
    assert first.xcoms[weights_task]["nodes"] == [weights_node]
    # The accelerator's device plugin (ours, or one an earlier test left) runs and the nodes advertise.
    assert first.xcoms["device_plugin"]["daemonset"].startswith("kube-system/llm-on-eks-")
    assert all(n.startswith(instance_type.replace(".", "-")) for n in first.xcoms["device_plugin"]["nodes"])
    (pod,) = k8s.CoreV1Api(api).list_namespaced_pod(namespace, label_selector="app.kubernetes.io/instance=scout,app.kubernetes.io/name=vllm-serving").items
    assert pod.status.phase == "Running" and pod.spec.node_name.startswith(instance_type.replace(".", "-"))
    smoke = first.xcoms["smoke_test"]
    assert smoke["model"] == SCOUT and set(smoke["checks"]) == {"models", "chat", "stream"}, smoke
    held = client(aws_env, "eks", place["region"])
    assert held.list_clusters()["clusters"] == ["llm-inference"]
    # The tainted accelerator node group and the cluster's untainted system node group.
    assert set(held.list_nodegroups(clusterName="llm-inference")["nodegroups"]) == {"llm-inference-system",
                                                                                     f"{namespace}_scout-nodes"}

    # The cold start as the work recorded it, beside the prediction: the cluster, node group and
    # Job this run made; kwok's pods pull no image and log nothing, which the report says.
    cold = {row["phase"]: row for row in first.xcoms["cold_start"]["phases"]}
    assert all(cold[p]["measured_s"] is not None for p in ("cluster", "nodegroup", "weights")), cold
    assert {cold[p]["note"] for p in ("image_pull", "weight_load", "engine_start")} == {
        "not recorded (no kubelet event or vLLM log line says)"}
    assert first.xcoms["cold_start"]["measured_ttft_s"] > 0

    values = sandbox_cluster.helm_run("get", "values", "scout", "--namespace", namespace, "--all").stdout
    manifest = sandbox_cluster.helm_run("get", "manifest", "scout", "--namespace", namespace).stdout
    logs = capfd.readouterr()
    for text in (json.dumps(first.xcoms), values, manifest, logs.out, logs.err):
        assert HF_TOKEN not in text

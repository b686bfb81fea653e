"""Values for our vLLM serving chart (include/charts/vllm-serving), built from the plan.

The values name the HF token secret and key, never the token: a release's values are stored
in the cluster and shown by `helm get values` to anyone who can read the release.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from llm_on_eks.catalog import INCLUDE_DIR
from llm_on_eks.plan import Plan

CHART_NAME = "vllm-serving"
CHART_DIR: Path = INCLUDE_DIR / "charts" / CHART_NAME
PROBE_PERIOD_S = 10
# helm's own limit on each operation (its --timeout); llm_on_eks.kube.helm kills only well after.
HELM_TIMEOUT_S = 300


def _image(reference: str) -> dict[str, str]:
    repository, _, tag = reference.rpartition(":")
    if "/" in tag or not repository:
        return {"repository": reference, "tag": "latest"}
    return {"repository": repository, "tag": tag}


def model_source(plan: Plan) -> str:
    """Where vLLM loads weights from: the FSx claim path for staged weights, else the hub."""
    if plan["profile"]["weights"] == "fsx":
        fsx = plan["storage"]["fsx"]
        return f"pvc://{fsx['pvc_name']}{fsx['model_path'].removeprefix(fsx['mount_path'])}"
    return f"hf://{plan['model']['hf_repo']}@{plan['model']['revision']}"


def server_args(plan: Plan) -> dict[str, Any]:
    """vLLM flags for the serving pods and the Neuron compile Job alike: the Job must compile
    with exactly the flags (and NxD Inference's neuron config) the server will look up, or the
    server recompiles. (The vllm-neuron plugin takes the neuron config as
    additional_config.override_neuron_config.)"""
    args = dict(plan["profile"]["vllm_args"])
    neuron = plan["neuron"]
    if neuron and neuron["framework"] == "nxdi":
        args["additional-config"] = json.dumps({"override_neuron_config": neuron["config"]}, sort_keys=True)
    return args


def resources(plan: Plan) -> dict[str, dict[str, str]]:
    """Requests and limits of a serving (or compile) pod: the accelerators per node, requests equal
    to limits (extended resources are never overcommitted), and a Neuron pod's host memory: the
    ai-on-eks Trainium2 values request 384Gi for Scout and 1024Gi for Maverick, because sharding
    loads the whole model into host RAM (awslabs/ai-on-eks-charts PR #12)."""
    profile, kube = plan["profile"], plan["kubernetes"]
    count = str(profile["accelerators_per_node"])
    result = {kind: {kube["accelerator_resource"]: count} for kind in ("requests", "limits")}
    memory = profile.get("host_memory")
    if memory:
        result["requests"]["memory"], result["limits"]["memory"] = memory["request"], memory["limit"]
    return result


def neuron_values(plan: Plan) -> dict[str, str]:
    """The chart's `neuron` values: the framework and where its compiled output lives (a compile
    cache URL for optimum, traced artifacts for NxD Inference); empty off Neuron."""
    neuron = plan["neuron"]
    if not neuron:
        return {"framework": "", "compiledArtifacts": "", "compileCacheUrl": ""}
    uri = neuron["artifacts_uri"]
    return {"framework": neuron["framework"],
            "compiledArtifacts": uri if neuron["cache_env"] == "NEURON_COMPILED_ARTIFACTS" else "",
            "compileCacheUrl": uri if neuron["cache_env"] == "NEURON_COMPILE_CACHE_URL" else ""}


def helm_values(plan: Plan) -> dict[str, Any]:
    profile, kube, lifecycle = plan["profile"], plan["kubernetes"], plan["lifecycle"]
    return {
        "deploymentName": plan["deployment"],
        "model": {"name": plan["serving"]["served_model_name"], "source": model_source(plan)},
        "image": _image(profile["image"]),
        "nodes": profile["nodes"],
        "accelerator": {"type": profile["accelerator"]},
        "resources": resources(plan),
        "nodeSelector": dict(kube["node_selector"]),
        "tolerations": [dict(t) for t in kube["tolerations"]],
        "vllm": {"args": server_args(plan)},
        # The S3 compile cache or artifacts are read with boto3 in the bucket's region.
        "env": {**profile["env"], **({"AWS_DEFAULT_REGION": plan["aws"]["region"]} if plan["neuron"] else {})},
        "hfToken": {"secretName": plan["hf_token"]["k8s_secret"]["name"], "secretKey": plan["hf_token"]["k8s_secret"]["key"]},
        "neuron": neuron_values(plan),
        "startup": {"budgetSeconds": profile["startup_budget_s"], "periodSeconds": PROBE_PERIOD_S},
        "service": {"port": plan["serving"]["port"]},
        "lifecycle": {"idleTtlMinutes": lifecycle["idle_ttl_minutes"], "protected": lifecycle["protected"]},
        "labels": dict(kube["labels"]),
    }


def helm_command(plan: Plan, values_file: str = "<values.yaml>") -> list[str]:
    kube = plan["kubernetes"]
    return ["helm", "upgrade", "--install", kube["release"], str(CHART_DIR), "--namespace", kube["namespace"],
            "--create-namespace", "--values", values_file, "--history-max", "10", "--timeout", f"{HELM_TIMEOUT_S}s"]

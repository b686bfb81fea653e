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

CHART_DIR: Path = INCLUDE_DIR / "charts" / "vllm-serving"
PROBE_PERIOD_S = 10


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
    """vLLM flags for the serving pods and the NxD Inference compile Job alike: the Job must
    trace with exactly the Neuron config the server will load, or the server recompiles.
    (The vllm-neuron plugin takes it as additional_config.override_neuron_config.)"""
    args = dict(plan["profile"]["vllm_args"])
    neuron = plan["neuron"]
    if neuron and neuron["framework"] == "nxdi":
        args["additional-config"] = json.dumps({"override_neuron_config": neuron["config"]}, sort_keys=True)
    return args


def helm_values(plan: Plan) -> dict[str, Any]:
    profile, kube, lifecycle = plan["profile"], plan["kubernetes"], plan["lifecycle"]
    neuron = plan["neuron"]
    return {
        "deploymentName": plan["deployment"],
        "model": {"name": plan["serving"]["served_model_name"], "source": model_source(plan)},
        "image": _image(profile["image"]),
        "nodes": profile["nodes"],
        "accelerator": {"type": profile["accelerator"]},
        # The accelerators per node, requests equal to limits (extended resources are never overcommitted).
        "resources": {kind: {kube["accelerator_resource"]: str(profile["accelerators_per_node"])}
                      for kind in ("requests", "limits")},
        "nodeSelector": dict(kube["node_selector"]),
        "tolerations": [dict(t) for t in kube["tolerations"]],
        "vllm": {"args": server_args(plan)},
        "env": dict(profile["env"]),
        "hfToken": {"secretName": plan["hf_token"]["k8s_secret"]["name"], "secretKey": plan["hf_token"]["k8s_secret"]["key"]},
        "neuron": {"compiledArtifacts": neuron["artifacts_uri"] if neuron else ""},
        "startup": {"budgetSeconds": profile["startup_budget_s"], "periodSeconds": PROBE_PERIOD_S},
        "service": {"port": plan["serving"]["port"]},
        "lifecycle": {"idleTtlMinutes": lifecycle["idle_ttl_minutes"], "protected": lifecycle["protected"]},
        "labels": dict(kube["labels"]),
    }


def helm_command(plan: Plan, values_file: str = "<values.yaml>") -> list[str]:
    kube = plan["kubernetes"]
    return ["helm", "upgrade", "--install", kube["release"], str(CHART_DIR), "--namespace", kube["namespace"],
            "--create-namespace", "--values", values_file, "--history-max", "10"]

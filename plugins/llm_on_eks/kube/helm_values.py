"""Values for our vLLM serving chart (include/charts/vllm-serving): the plan's ``release``
section renamed to the chart's keys (what it holds is decided in ``llm_on_eks.plan.sections``).

The values name the HF token secret and key, never the token: a release's values are stored
in the cluster and shown by `helm get values` to anyone who can read the release.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from llm_on_eks.catalog import INCLUDE_DIR
from llm_on_eks.plan.types import ReleaseSpec

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


def helm_values(release: ReleaseSpec) -> dict[str, Any]:
    return {
        "deploymentName": release["deployment"],
        "model": {"name": release["served_model_name"], "source": release["model_source"]},
        "image": _image(release["image"]),
        "nodes": release["nodes"],
        "accelerator": {"type": release["accelerator"]},
        "resources": release["resources"],
        "nodeSelector": release["node_selector"],
        "tolerations": release["tolerations"],
        "vllm": {"args": release["server_args"]},
        "env": release["env"],
        "hfToken": {"secretName": release["hf_token_secret"]["name"], "secretKey": release["hf_token_secret"]["key"]},
        "neuron": release["neuron"],
        "startup": {"budgetSeconds": release["startup_budget_s"], "periodSeconds": PROBE_PERIOD_S},
        "service": {"port": release["port"]},
        "lifecycle": {"idleTtlMinutes": release["idle_ttl_minutes"], "protected": release["protected"]},
        "labels": release["labels"],
    }


def helm_command(release: ReleaseSpec, values_file: str = "<values.yaml>") -> list[str]:
    return ["helm", "upgrade", "--install", release["name"], str(CHART_DIR), "--namespace", release["namespace"],
            "--create-namespace", "--values", values_file, "--history-max", "10", "--timeout", f"{HELM_TIMEOUT_S}s"]

"""kwok's pod stages with holds: a delaying layer standing in for the time a weight Job's work and
a serving pod's start take on EKS (kwok runs no container, so both are instant otherwise).

The stages are kwok's own default ones (``kustomize/stage/pod/fast`` of the kwok module the local
control plane is built from) with kwok's Stage ``delay``: a Job's pod completes ``job_s`` after it
runs, and a serving pod (our chart's, ``app.kubernetes.io/name=vllm-serving``) is Running and Ready
``rollout_s`` after it is scheduled; every other pod (device plugins, the LWS controller's) as
before. ``scripts/sandbox-cluster up`` takes them from ``SANDBOX_KWOK_STAGES`` for a new cluster.
"""

from __future__ import annotations

import copy
import subprocess
from pathlib import Path
from typing import Any

import yaml

from llm_on_eks.kube.helm_values import CHART_NAME

ROOT = Path(__file__).resolve().parents[1]
APP_LABEL = '.metadata.labels["app.kubernetes.io/name"]'


def fast_stage_dir() -> Path:
    """kwok's default pod stages, in the Go module cache the control plane was built from."""
    versions = dict(line.split("=", 1) for line in (ROOT / "scripts/sandbox/versions.env").read_text().splitlines()
                    if "=" in line and not line.startswith("#"))
    cache = subprocess.run(["go", "env", "GOMODCACHE"], capture_output=True, text=True, check=True).stdout.strip()
    return Path(cache) / "sigs.k8s.io" / f"kwok@{versions['KWOK_VERSION']}" / "kustomize/stage/pod/fast"


def held_stages(job_s: float, rollout_s: float) -> list[dict[str, Any]]:
    fast = {path.stem: yaml.safe_load(path.read_text()) for path in sorted(fast_stage_dir().glob("pod-*.yaml"))}
    others, serving = fast["pod-ready"], copy.deepcopy(fast["pod-ready"])
    others["spec"]["selector"]["matchExpressions"].append({"key": APP_LABEL, "operator": "NotIn",
                                                           "values": [CHART_NAME]})
    serving["metadata"]["name"] = "pod-ready-serving"
    serving["spec"]["selector"]["matchExpressions"].append({"key": APP_LABEL, "operator": "In", "values": [CHART_NAME]})
    serving["spec"]["delay"] = {"durationMilliseconds": round(rollout_s * 1000)}
    fast["pod-complete"]["spec"]["delay"] = {"durationMilliseconds": round(job_s * 1000)}
    return [others, serving, fast["pod-complete"], fast["pod-delete"]]


def write_held_stages(path: Path, job_s: float, rollout_s: float) -> Path:
    path.write_text(yaml.safe_dump_all(held_stages(job_s, rollout_s), sort_keys=False))
    return path

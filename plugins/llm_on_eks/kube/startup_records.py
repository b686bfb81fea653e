"""What the cluster recorded of a release's start, for the cold_start step: the kubelet's image
pull (its Pulled event), vLLM's own start-up log lines for the weight load and the engine start,
and the pod's time from being placed on its node to Ready."""

from __future__ import annotations

import re
from typing import Any

from llm_on_eks.kube.readiness import serving_selector

# The kubelet's Pulled event (pkg/kubelet/images/image_manager.go): `Successfully pulled image
# "vllm/vllm-openai:v0.32.0" in 3m21.4s (3m21.4s including waiting). Image size: ...`, or
# `Container image "..." already present on machine` (no pull).
PULLED = re.compile(r'Successfully pulled image "[^"]*" in ([0-9.hms]+)')
PRESENT = "already present on machine"
# vLLM 0.32's start-up lines: the GPU model runner's "Model loading took 48.87 GiB memory and
# 117.5 seconds" (vllm/v1/worker/gpu_model_runner.py), else the loader's "Loading weights took 12.34
# seconds" (model_executor/model_loader/default_loader.py); the engine core's "init engine
# (profile, create kv cache, warmup model) took 34.11 s" (vllm/v1/engine/core.py).
WEIGHT_LOAD = (re.compile(r"Model loading took [0-9.]+ GiB(?: memory)? and ([0-9.]+) seconds"),
               re.compile(r"Loading weights took ([0-9.]+) seconds"))
ENGINE_START = re.compile(r"init engine \(profile, create kv cache, warmup model\) took ([0-9.]+) s")
# The start-up lines come first; what follows (request logs) is not read.
LOG_HEAD_BYTES = 4 * 2**20
GO_DURATION = re.compile(r"([0-9.]+)(h|ms|m|s)")
UNITS = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}


def go_duration_s(text: str) -> float:
    """A Go duration ("3m21.4s", "850ms") in seconds."""
    return sum(float(n) * UNITS[unit] for n, unit in GO_DURATION.findall(text))


def image_pull_s(messages: list[str]) -> float | None:
    """Seconds the kubelet spent pulling images, from its events' messages; 0 when every image was
    on the node already; None when no event says."""
    pulls = [go_duration_s(m.group(1)) for m in map(PULLED.search, messages) if m]
    if pulls:
        return sum(pulls)
    return 0.0 if any(PRESENT in message for message in messages) else None


def log_seconds(log: str) -> dict[str, float | None]:
    """The weight load and the engine start, as vLLM logged them."""
    load = next((float(m.group(1)) for pattern in WEIGHT_LOAD for m in [pattern.search(log)] if m), None)
    engine = ENGINE_START.search(log)
    return {"weight_load": load, "engine_start": float(engine.group(1)) if engine else None}


def _condition_time(pod: Any, kind: str) -> Any:
    return next((c.last_transition_time for c in pod.status.conditions or [] if c.type == kind and c.status == "True"),
                None)


def serving_start(api: Any, namespace: str, release: str) -> dict[str, Any]:
    """The first ready serving pod's start (a multi-node group's leader comes first by name):
    its image pull, weight load and engine start, and placed-to-Ready; None where nothing says."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    core = client.CoreV1Api(api)
    pods = sorted((p for p in core.list_namespaced_pod(namespace, label_selector=serving_selector(release)).items
                   if _condition_time(p, "Ready")), key=lambda p: p.metadata.name)
    if not pods:
        return {"pod": None, "image_pull": None, "weight_load": None, "engine_start": None, "placed_to_ready": None}
    pod = pods[0]
    events = core.list_namespaced_event(namespace, field_selector=f"involvedObject.name={pod.metadata.name}").items
    try:
        log = core.read_namespaced_pod_log(pod.metadata.name, namespace, limit_bytes=LOG_HEAD_BYTES)
    except ApiException:  # no log to read (the local stack's kwok pods run no containers)
        log = ""
    placed, ready = _condition_time(pod, "PodScheduled"), _condition_time(pod, "Ready")
    return {"pod": pod.metadata.name, "image_pull": image_pull_s([e.message or "" for e in events]),
            **log_seconds(log), "placed_to_ready": (ready - placed).total_seconds() if placed and ready else None}

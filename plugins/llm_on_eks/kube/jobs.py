"""Run a one-off Kubernetes Job to completion, once: adopt a Job already created by an earlier
try, wait for it within a budget, and on failure report the tail of its pod log and its events."""

from __future__ import annotations

import time
from typing import Any

POLL_S = 5
LOG_TAIL_LINES = 40


class JobFailed(RuntimeError):
    """The Job failed or ran out of time; the message carries its pods' log tails and events."""


def ensure_job(api, manifest: dict[str, Any]) -> str:
    """Create the Job unless a Job of that name exists (a retry adopts it); returns 'created' or 'adopted'."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    try:
        client.BatchV1Api(api).create_namespaced_job(manifest["metadata"]["namespace"], manifest)
        return "created"
    except ApiException as exc:
        if exc.status != 409:
            raise
        return "adopted"


def _diagnose(api, namespace: str, name: str) -> str:
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    core = client.CoreV1Api(api)
    lines = []
    for pod in core.list_namespaced_pod(namespace, label_selector=f"job-name={name}").items:
        try:
            log = core.read_namespaced_pod_log(pod.metadata.name, namespace, tail_lines=LOG_TAIL_LINES)
        except ApiException as exc:
            log = f"(no log: {exc.reason})"
        events = core.list_namespaced_event(namespace, field_selector=f"involvedObject.name={pod.metadata.name}").items
        lines.append(f"pod {pod.metadata.name} ({pod.status.phase}) on {pod.spec.node_name or 'no node'}")
        lines += [f"  event {e.reason}: {e.message}" for e in events[-5:]]
        lines += [f"  log | {line}" for line in (log or "").splitlines()[-LOG_TAIL_LINES:]]
    return "\n".join(lines) or "no pods"


def wait_for_job(api, namespace: str, name: str, budget_s: int) -> dict[str, Any]:
    """Block until the Job succeeds; raise JobFailed on failure or when the budget runs out."""
    from kubernetes import client

    batch = client.BatchV1Api(api)
    deadline = time.monotonic() + budget_s
    while True:
        job = batch.read_namespaced_job(name, namespace)
        conditions = {c.type: c for c in job.status.conditions or [] if c.status == "True"}
        if "Complete" in conditions:
            pods = client.CoreV1Api(api).list_namespaced_pod(namespace, label_selector=f"job-name={name}").items
            return {"job": name, "succeeded": job.status.succeeded, "nodes": sorted({p.spec.node_name for p in pods})}
        if "Failed" in conditions:
            reason = conditions["Failed"].message or conditions["Failed"].reason
            raise JobFailed(f"job {namespace}/{name} failed: {reason}\n{_diagnose(api, namespace, name)}")
        if time.monotonic() > deadline:
            raise JobFailed(f"job {namespace}/{name} did not finish within {budget_s} s\n{_diagnose(api, namespace, name)}")
        time.sleep(POLL_S)

"""Run a one-off Kubernetes Job to completion, once: adopt a Job already created by an earlier
try, wait for it within a budget, and on failure report the tail of its pod log and its events."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from llm_on_eks.kube.readiness import last_events, unschedulable

LOG_TAIL_LINES = 40
# A failed Job is deleted before its replacement is created; deletion is quick (Background).
REPLACE_WAIT_S = 60


class JobFailed(RuntimeError):
    """The Job failed or ran out of time; the message carries its pods' log tails and events."""


def ensure_job(api, manifest: dict[str, Any]) -> str:
    """Create the Job, adopt a running or finished one of that name (a retry after the worker
    died), or replace one that failed (a re-run after fixing the cause); returns what it did."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    batch = client.BatchV1Api(api)
    namespace, name = manifest["metadata"]["namespace"], manifest["metadata"]["name"]
    try:
        existing = batch.read_namespaced_job(name, namespace)
    except ApiException as exc:
        if exc.status != 404:
            raise
        existing = None
    action = "created"
    if existing is not None:
        if not any(c.type == "Failed" and c.status == "True" for c in existing.status.conditions or []):
            return "adopted"
        batch.delete_namespaced_job(name, namespace, propagation_policy="Background")
        _wait_gone(batch, namespace, name)
        action = "replaced a failed job"
    try:
        batch.create_namespaced_job(namespace, manifest)
    except ApiException as exc:
        # Made meanwhile: by another run, or by this create, resent by the client after its answer
        # was lost (kube.access.RETRIES). The Job's name is its inputs' digest: the same Job.
        if exc.status != 409:
            raise
        return "adopted"
    return action


def _wait_gone(batch, namespace: str, name: str) -> None:
    from kubernetes.client.exceptions import ApiException

    deadline = time.monotonic() + REPLACE_WAIT_S
    while time.monotonic() < deadline:
        try:
            batch.read_namespaced_job(name, namespace)
        except ApiException as exc:
            if exc.status == 404:
                return
            raise
        time.sleep(1)
    raise JobFailed(f"failed job {namespace}/{name} still not deleted after {REPLACE_WAIT_S} s")


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
        lines.append(f"pod {pod.metadata.name} ({pod.status.phase}) on {pod.spec.node_name or 'no node'}")
        lines += [f"  event {event}" for event in last_events(core, namespace, pod.metadata.name, 5)]
        lines += [f"  log | {line}" for line in (log or "").splitlines()[-LOG_TAIL_LINES:]]
    return "\n".join(lines) or "no pods"


def job_status(api, namespace: str, name: str) -> tuple[str, dict[str, Any] | str | None]:
    """("complete", result) / ("failed", diagnosis) / ("running", None): one look at the Job.

    A pod the scheduler keeps refusing fails the Job at once: on fixed-size node groups it would
    otherwise wait out the whole budget (hours for a Neuron compile) for nothing.
    """
    from kubernetes import client

    job = client.BatchV1Api(api).read_namespaced_job(name, namespace)
    conditions = {c.type: c for c in job.status.conditions or [] if c.status == "True"}
    core = client.CoreV1Api(api)
    pods = core.list_namespaced_pod(namespace, label_selector=f"job-name={name}").items
    if "Complete" in conditions:
        return "complete", {"job": name, "succeeded": job.status.succeeded,
                            "nodes": sorted({p.spec.node_name for p in pods}),
                            # The Job's own record (startTime to completionTime): the cold_start step's measure.
                            "took_s": round((job.status.completion_time - job.status.start_time).total_seconds())}
    if "Failed" in conditions:
        reason = conditions["Failed"].message or conditions["Failed"].reason
        return "failed", f"job {namespace}/{name} failed: {reason}\n{_diagnose(api, namespace, name)}"
    stuck = unschedulable(core, namespace, pods, datetime.now(UTC))
    if stuck:
        return "failed", (f"job {namespace}/{name}: pods cannot be scheduled: {', '.join(stuck)}\n"
                          f"{_diagnose(api, namespace, name)}")
    return "running", None


def timed_out(api, namespace: str, name: str, budget_s: int) -> str:
    return f"job {namespace}/{name} did not finish within {budget_s} s\n{_diagnose(api, namespace, name)}"


def wait_for_job(api, namespace: str, name: str, budget_s: int, poll_s: float) -> dict[str, Any]:
    """Block until the Job succeeds (looking every ``poll_s``); raise JobFailed on failure or when
    the budget runs out."""
    deadline = time.monotonic() + budget_s
    while True:
        state, detail = job_status(api, namespace, name)
        if state == "complete":
            return detail
        if state == "failed":
            raise JobFailed(detail)
        if time.monotonic() > deadline:
            raise JobFailed(timed_out(api, namespace, name, budget_s))
        time.sleep(poll_s)


def stop_unfinished(api, namespace: str, name: str) -> bool:
    """Delete the Job if it is still pending or running: once we have given up on it, a pod
    left waiting would take the node group later with nobody watching. Finished Jobs stay for
    inspection (ttlSecondsAfterFinished removes them)."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    batch = client.BatchV1Api(api)
    try:
        job = batch.read_namespaced_job(name, namespace)
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise
    if any(c.type in ("Complete", "Failed") and c.status == "True" for c in job.status.conditions or []):
        return False
    batch.delete_namespaced_job(name, namespace, propagation_policy="Background")
    return True

"""Is the release serving? And when it is not, why: which pods, in which phase, with which events."""

from __future__ import annotations

from dataclasses import dataclass

from llm_on_eks.kube.lws import read_lws

# A pod the scheduler cannot place for this long will not be placed: node groups have a fixed
# size and scaling them is the provision step's business, not the scheduler's. A pod a node
# autoscaler is launching a node for (EKS Auto Mode's Karpenter) is waiting, not refused.
UNSCHEDULABLE_GRACE_S = 20
UNBOUND_CLAIM_GRACE_S = 180


@dataclass
class Readiness:
    ready: bool
    unschedulable: list[str]
    detail: str


def serving_selector(release: str) -> str:
    """The release's serving pods (the chart's selector labels), never its Jobs' pods."""
    return f"app.kubernetes.io/name=vllm-serving,app.kubernetes.io/instance={release}"


def _pods(core, namespace: str, release: str):
    return core.list_namespaced_pod(namespace, label_selector=serving_selector(release)).items


def last_events(core, namespace: str, pod_name: str, count: int) -> list[str]:
    """The pod's ``count`` most recent events as "Reason: message"."""
    events = core.list_namespaced_event(namespace, field_selector=f"involvedObject.name={pod_name}").items
    events.sort(key=lambda e: e.last_timestamp or e.event_time or e.metadata.creation_timestamp)
    return [f"{e.reason}: {e.message}" for e in events[-count:]]


def describe_pods(core, namespace: str, release: str) -> str:
    """Pods, their phase and their last events: what an operator needs to see on failure."""
    lines = []
    for pod in _pods(core, namespace, release):
        last = "; ".join(last_events(core, namespace, pod.metadata.name, 3)) or "no events"
        lines.append(f"  pod {pod.metadata.name}: {pod.status.phase} ({last})")
    return "\n".join(lines) or "  no pods"


def unschedulable(core, namespace: str, pods, now) -> list[str]:
    """Names of the pods the scheduler has refused for longer than the grace period, and for
    which no node is being launched."""
    refused = [
        pod.metadata.name
        for pod in pods
        for condition in pod.status.conditions or []
        if condition.type == "PodScheduled" and condition.status == "False" and condition.reason == "Unschedulable"
        and (now - condition.last_transition_time).total_seconds() > _grace_s(condition.message or "")
    ]
    return [name for name in refused if not nominated(core, namespace, name)]


def nominated(core, namespace: str, pod_name: str) -> bool:
    """Whether Karpenter (EKS Auto Mode, or self-managed) is launching a node for the pod: it
    records a Nominated event on it, "Pod should schedule on: nodeclaim/..." (Karpenter docs,
    "Troubleshooting"), and again while the launch goes on."""
    events = core.list_namespaced_event(namespace, field_selector=f"involvedObject.name={pod_name},reason=Nominated")
    return bool(events.items)


def _grace_s(message: str) -> int:
    """A claim not bound yet is the PV controller's next sync away (seconds, more under load),
    not a lack of capacity: it gets longer before the pod counts as unschedulable."""
    return UNBOUND_CLAIM_GRACE_S if "unbound immediate PersistentVolumeClaims" in message else UNSCHEDULABLE_GRACE_S


def _pod_ready(pod) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])


def check(api, namespace: str, release: str, multi_node: bool, now) -> Readiness:
    """The release's Deployment (one node) or LeaderWorkerSet (several) and its pods."""
    from kubernetes import client

    core = client.CoreV1Api(api)
    pods = _pods(core, namespace, release)
    stuck = unschedulable(core, namespace, pods, now)
    if multi_node:
        lws = read_lws(api, namespace, release)
        status, wanted = lws.get("status", {}), lws["spec"]["replicas"]
        # LWS status has no observedGeneration: an update in flight shows as a condition.
        updating = any(c["type"] == "UpdateInProgress" and c["status"] == "True" for c in status.get("conditions", []))
        # LWS counts a group ready once its leader is, even with a worker still Pending: every
        # pod of every group must be Ready too, or a half-placed group would pass.
        ready = (not updating and status.get("updatedReplicas", 0) == wanted
                 and status.get("readyReplicas", 0) >= wanted
                 and len(pods) == wanted * lws["spec"]["leaderWorkerTemplate"]["size"]
                 and all(_pod_ready(pod) for pod in pods))
    else:
        deployment = client.AppsV1Api(api).read_namespaced_deployment(release, namespace)
        status = deployment.status
        ready = (status.observed_generation == deployment.metadata.generation
                 and (status.updated_replicas or 0) == deployment.spec.replicas
                 and (status.available_replicas or 0) == deployment.spec.replicas
                 and not (status.unavailable_replicas or 0))
    return Readiness(ready=ready, unschedulable=stuck, detail=describe_pods(core, namespace, release) if not ready else "")

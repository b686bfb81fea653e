"""A stand-in for the Karpenter that EKS Auto Mode runs for a cluster (in AWS's control plane, not
in the cluster: there is nothing of it to run here), enough to place a deployment's pods through
its NodePool on the local control plane.

One pass: for each pod the scheduler refuses (PodScheduled False, Unschedulable) whose node
selector and tolerations a NodePool's template meets, within the NodePool's limits, it records
Karpenter's ``Nominated`` event on the pod ("Pod should schedule on: nodeclaim/...") and adds a
kwok node as the NodePool would launch: its template's labels and taints, the labels Karpenter
and Auto Mode put on their nodes, and the instance type's capacity (that of the matching node in
scripts/sandbox/nodes.yaml). Each node is owned by its NodePool, so the garbage collector removes
the nodes with it, as Karpenter terminates a deleted NodePool's nodes. Not modelled: NodeClaims,
launch delays and failures, consolidation.
"""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from llm_on_eks.kube.nodepool import GROUP, INSTANCE_TYPE_KEY, PLURAL, VERSION
from local_stack.repeating import repeating

NODES = Path(__file__).resolve().parents[1] / "scripts" / "sandbox" / "nodes.yaml"
NODEPOOL_KEY = "karpenter.sh/nodepool"
ZONE = "us-west-2a"
_names = itertools.count(1)


def capacities() -> dict[str, dict[str, str]]:
    """Each instance type's allocatable resources, as the local control plane's static nodes have them."""
    found = {}
    for node in yaml.safe_load_all(NODES.read_text()):
        found.setdefault(node["metadata"]["labels"][INSTANCE_TYPE_KEY], node["status"]["allocatable"])
    return found


def _refused(pod) -> bool:
    return pod.status.phase == "Pending" and not pod.spec.node_name and any(
        c.type == "PodScheduled" and c.status == "False" and c.reason == "Unschedulable"
        for c in pod.status.conditions or [])


def _tolerated(taint: dict[str, Any], tolerations) -> bool:
    return any(t.key == taint["key"] and (t.operator == "Exists" or t.value == taint.get("value"))
               and (not t.effect or t.effect == taint.get("effect")) for t in tolerations or [])


def _instance_type(nodepool: dict[str, Any], pod) -> str | None:
    """The instance type this NodePool would launch for the pod, or None when it cannot serve it:
    a label the pod selects that its template sets otherwise or its requirements leave out, or a
    taint of its template the pod does not tolerate."""
    template = nodepool["spec"]["template"]
    labels = template.get("metadata", {}).get("labels") or {}
    requirements = {r["key"]: r for r in template["spec"].get("requirements") or []}
    for key, value in (pod.spec.node_selector or {}).items():
        if key in labels and labels[key] != value:
            return None
        if key in requirements and requirements[key]["operator"] == "In" and value not in requirements[key]["values"]:
            return None
    if not all(_tolerated(t, pod.spec.tolerations) for t in template["spec"].get("taints") or []):
        return None
    chosen = (pod.spec.node_selector or {}).get(INSTANCE_TYPE_KEY)
    return chosen or (requirements.get(INSTANCE_TYPE_KEY) or {}).get("values", [None])[0]


def _within_limits(nodepool: dict[str, Any], nodes: list, capacity: dict[str, str]) -> bool:
    from kubernetes.utils import parse_quantity

    for resource, limit in (nodepool["spec"].get("limits") or {}).items():
        used = sum(parse_quantity((n.status.capacity or {}).get(resource, "0")) for n in nodes)
        if used + parse_quantity(capacity.get(resource, "0")) > parse_quantity(limit):
            return False
    return True


def node(nodepool: dict[str, Any], instance_type: str, capacity: dict[str, str]) -> dict[str, Any]:
    """The kwok node the NodePool launches."""
    name = f"{nodepool['metadata']['name']}-{next(_names)}".replace(".", "-")
    template = nodepool["spec"]["template"]
    labels = {**(template.get("metadata", {}).get("labels") or {}), "type": "kwok", "kubernetes.io/arch": "amd64",
              "kubernetes.io/os": "linux", "kubernetes.io/hostname": name, INSTANCE_TYPE_KEY: instance_type,
              NODEPOOL_KEY: nodepool["metadata"]["name"], "karpenter.sh/capacity-type": "on-demand",
              "eks.amazonaws.com/compute-type": "auto", "topology.kubernetes.io/zone": ZONE}
    owner = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "NodePool", "name": nodepool["metadata"]["name"],
             "uid": nodepool["metadata"]["uid"]}
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": labels, "annotations": {"kwok.x-k8s.io/node": "fake"},
                         "ownerReferences": [owner]},
            "spec": {"taints": template["spec"].get("taints") or []},
            "status": {"allocatable": capacity, "capacity": capacity}}


def _nominate(core, pod, node_name: str) -> None:
    now = datetime.now(UTC)
    core.create_namespaced_event(pod.metadata.namespace, {
        "metadata": {"name": f"{pod.metadata.name}.{uuid.uuid4().hex[:12]}"},
        "involvedObject": {"kind": "Pod", "apiVersion": "v1", "name": pod.metadata.name,
                           "namespace": pod.metadata.namespace, "uid": pod.metadata.uid},
        "reason": "Nominated", "message": f"Pod should schedule on: nodeclaim/{node_name}", "type": "Normal",
        "source": {"component": "karpenter"}, "firstTimestamp": now, "lastTimestamp": now, "count": 1})


def launch_for_refused_pods(api: Any, sizes: dict[str, dict[str, str]], launched: dict[str, str]) -> list[str]:
    """One pass; the nodes launched. ``sizes``: ``capacities()``; ``launched`` (pod uid -> node)
    keeps a pod from getting a second node while the scheduler has not yet placed it on its first."""
    from kubernetes import client

    core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
    made = []
    for pod in core.list_pod_for_all_namespaces(field_selector="status.phase=Pending").items:
        if not _refused(pod) or pod.metadata.uid in launched:
            continue
        for nodepool in custom.list_cluster_custom_object(GROUP, VERSION, PLURAL)["items"]:
            instance_type = _instance_type(nodepool, pod)
            if instance_type not in sizes:
                continue
            own = core.list_node(label_selector=f"{NODEPOOL_KEY}={nodepool['metadata']['name']}").items
            if not _within_limits(nodepool, own, sizes[instance_type]):
                continue
            created = core.create_node(node(nodepool, instance_type, sizes[instance_type]))
            launched[pod.metadata.uid] = created.metadata.name
            _nominate(core, pod, created.metadata.name)
            made.append(created.metadata.name)
            break
    return made


def while_running(api: Any, deadline_s: float):
    """Launch nodes for refused pods from a thread while the block runs, at most ``deadline_s``;
    yields the names of the nodes launched so far."""
    sizes, launched = capacities(), {}
    return repeating(lambda: launch_for_refused_pods(api, sizes, launched), deadline_s)

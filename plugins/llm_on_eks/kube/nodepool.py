"""The Karpenter NodePool a deployment's accelerator nodes come from on an EKS Auto Mode cluster.

Auto Mode launches nodes for pending pods through NodePools (karpenter.sh/v1) and brings the
NVIDIA and Neuron drivers and device plugins itself (EKS user guide, "Deploy an accelerated
workload"). A managed node group of ours would sit beside it unused by Auto Mode's own
scheduling, so on such a cluster the deployment gets a NodePool instead: one made for it (the
instance type, labels and taint its node group would have, limited to its nodes' devices), or
one the params name, which is checked and used as it is. Only a NodePool made for the deployment
(its labels say so) is ever changed or removed.
"""

from __future__ import annotations

from typing import Any

from llm_on_eks.naming import DEPLOYMENT_KEY, MANAGED_BY_KEY, NAMESPACE_KEY, PROJECT, is_managed
from llm_on_eks.plan.types import NodePoolSpec

GROUP, VERSION, PLURAL = "karpenter.sh", "v1", "nodepools"
NODE_CLASS = {"group": "eks.amazonaws.com", "version": "v1", "plural": "nodeclasses", "kind": "NodeClass"}
APPLY = "application/apply-patch+yaml"
INSTANCE_TYPE_KEY = "node.kubernetes.io/instance-type"
# Requirement keys that name an instance family, Auto Mode's and self-managed Karpenter's
# (EKS user guide, "Create a Node Pool for EKS Auto Mode"; Karpenter docs, "Well-Known Labels").
FAMILY_KEYS = ("eks.amazonaws.com/instance-family", "karpenter.k8s.aws/instance-family")
# Empty nodes go after this long: the release's own pods are gone by then (Karpenter docs, "Disruption").
CONSOLIDATE_AFTER = "5m"


class NodePoolError(RuntimeError):
    """The NodePool the deployment needs is missing or does not fit it; the message says why."""


def _custom(api: Any):
    from kubernetes import client

    return client.CustomObjectsApi(api)


def _read(api: Any, group: str, version: str, plural: str, name: str) -> dict[str, Any] | None:
    """A cluster-scoped custom object; None when it, or its CRD, is not there."""
    from kubernetes.client.exceptions import ApiException

    try:
        return _custom(api).get_cluster_custom_object(group, version, plural, name)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def read_nodepool(api: Any, name: str) -> dict[str, Any] | None:
    return _read(api, GROUP, VERSION, PLURAL, name)


def owner_labels(spec: NodePoolSpec) -> dict[str, str]:
    """The NodePool object's own labels: made by us, for this deployment."""
    return {MANAGED_BY_KEY: PROJECT, DEPLOYMENT_KEY: spec["labels"][DEPLOYMENT_KEY],
            NAMESPACE_KEY: spec["labels"][NAMESPACE_KEY]}


def is_ours(nodepool: dict[str, Any], namespace: str, deployment: str) -> bool:
    labels = nodepool["metadata"].get("labels") or {}
    return is_managed(labels) and labels.get(DEPLOYMENT_KEY) == deployment and labels.get(NAMESPACE_KEY) == namespace


def manifest(spec: NodePoolSpec) -> dict[str, Any]:
    """The NodePool made for a deployment: on-demand nodes of its instance type, labelled and
    tainted as its node group's, from Auto Mode's NodeClass; empty nodes consolidated away."""
    return {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "NodePool",
        "metadata": {"name": spec["name"], "labels": owner_labels(spec)},
        "spec": {
            "template": {
                "metadata": {"labels": dict(spec["labels"])},
                "spec": {
                    "nodeClassRef": {"group": NODE_CLASS["group"], "kind": NODE_CLASS["kind"],
                                     "name": spec["node_class"]},
                    "requirements": [
                        {"key": INSTANCE_TYPE_KEY, "operator": "In", "values": [spec["instance_type"]]},
                        {"key": "karpenter.sh/capacity-type", "operator": "In", "values": ["on-demand"]},
                    ],
                    "taints": [dict(t) for t in spec["taints"]],
                },
            },
            "limits": dict(spec["limits"]),
            "disruption": {"consolidationPolicy": "WhenEmpty", "consolidateAfter": CONSOLIDATE_AFTER},
        },
    }


def _allows(requirement: dict[str, Any], value: str) -> bool:
    values, operator = requirement.get("values") or [], requirement.get("operator")
    return {"In": value in values, "NotIn": value not in values, "DoesNotExist": False}.get(operator, True)


def fit_problems(nodepool: dict[str, Any], spec: NodePoolSpec) -> list[str]:
    """Why pods of this deployment could not get nodes from a NodePool someone else made: its
    requirements leave out the instance type, it taints nodes with what the pods do not
    tolerate, or its limits are below the deployment's devices. Empty: it fits."""
    instance = spec["instance_type"]
    template = nodepool["spec"].get("template", {}).get("spec", {})
    problems = []
    for requirement in template.get("requirements") or []:
        key = requirement.get("key")
        value = instance if key == INSTANCE_TYPE_KEY else instance.split(".")[0] if key in FAMILY_KEYS else None
        if value and not _allows(requirement, value):
            problems.append(f"its requirement {key} {requirement.get('operator')} {requirement.get('values') or ''} "
                            f"leaves out {value}")
    tolerated = {t["key"] for t in spec["taints"]}
    foreign = [f"{t['key']}:{t.get('effect')}" for t in template.get("taints") or []
               if t.get("effect") in ("NoSchedule", "NoExecute") and t["key"] not in tolerated]
    if foreign:
        problems.append(f"it taints its nodes with {', '.join(foreign)}, which the serving pods do not tolerate")
    limits = nodepool["spec"].get("limits") or {}
    for resource, wanted in spec["limits"].items():
        if resource in limits and _quantity(limits[resource]) < _quantity(wanted):
            problems.append(f"its limit of {limits[resource]} {resource} is below the {wanted} the deployment's "
                            "nodes have")
    return problems


def _quantity(value: Any) -> float:
    from kubernetes.utils import parse_quantity

    return float(parse_quantity(str(value)))


def ensure_nodepool(api: Any, spec: NodePoolSpec) -> dict[str, Any]:
    """Check the named NodePool, or apply the deployment's own; what was done, for the XCom."""
    name, found = spec["name"], read_nodepool(api, spec["name"])
    if spec["given"]:
        if found is None:
            raise NodePoolError(f"nodepool: NodePool {name} does not exist on the cluster")
        problems = fit_problems(found, spec)
        if problems:
            raise NodePoolError(f"nodepool: NodePool {name} cannot take the deployment's {spec['instance_type']} "
                                f"nodes: {'; '.join(problems)}")
        return {"nodepool": name, "action": "given: used as it is"}
    labels = owner_labels(spec)
    if found is not None and not is_ours(found, labels[NAMESPACE_KEY], labels[DEPLOYMENT_KEY]):
        raise NodePoolError(f"NodePool {name} exists and was not made by {PROJECT} for this deployment: name a "
                            "NodePool in the nodepool param, or remove that one")
    node_class = spec["node_class"]
    if _read(api, NODE_CLASS["group"], NODE_CLASS["version"], NODE_CLASS["plural"], node_class) is None:
        raise NodePoolError(
            f"EKS Auto Mode NodeClass {node_class} does not exist: enable the cluster's built-in node pools (which "
            f"make it) or create a NodeClass named {node_class}; or name a NodePool in the nodepool param")
    applied = _custom(api).patch_cluster_custom_object(GROUP, VERSION, PLURAL, name, manifest(spec),
                                                       field_manager=PROJECT, force=True, _content_type=APPLY)
    changed = found is None or found["metadata"].get("generation") != applied["metadata"].get("generation")
    return {"nodepool": name, "action": "created" if found is None else "updated" if changed else "unchanged"}


def delete_nodepool(api: Any, name: str) -> None:
    """Remove a NodePool; Karpenter drains and terminates its nodes (Karpenter docs, "NodePools")."""
    from kubernetes.client.exceptions import ApiException

    try:
        _custom(api).delete_cluster_custom_object(GROUP, VERSION, PLURAL, name)
    except ApiException as exc:
        if exc.status != 404:
            raise

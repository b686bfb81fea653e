"""What the Kubernetes half of a teardown may remove, decided from what the cluster shows.

- The Helm release: only one made from our chart whose values carry our managed-by label.
- Its Jobs (compile, staging): by the deployment's labels.
- The HF token Secret and the FSx claim and volume, which a namespace's deployments share: only
  ours (managed-by label), and only when no other managed serving workload is left in the
  namespace.
- Our device-plugin DaemonSet: only ours, and only when no node of another deployment with that
  accelerator is left on the cluster (the plugin serves whole node groups, not one release).
- The deployment's NodePool on an EKS Auto Mode cluster: only one made for it (its labels name
  the deployment); one named in the params is someone else's and stays.

Each decision is a plain function over what was read, so a dry run shows exactly what a real
run would remove and why each kept thing is kept.
"""

from __future__ import annotations

import time
from typing import Any

from llm_on_eks.kube.device_plugins import NAMESPACE as PLUGIN_NAMESPACE
from llm_on_eks.kube.device_plugins import PLUGINS, plugin_name, plugin_objects
from llm_on_eks.kube.helm import foreign_release
from llm_on_eks.kube.lws import list_lws
from llm_on_eks.kube.nodepool import delete_nodepool, is_ours, read_nodepool
from llm_on_eks.kube.readiness import serving_selector
from llm_on_eks.naming import (
    ACCELERATOR_KEY,
    DEPLOYMENT_KEY,
    MANAGED_BY_KEY,
    NAMESPACE_KEY,
    PROJECT,
    fsx_pv_name,
    is_managed,
)

POLL_S = 2


def release_decision(found: dict[str, Any] | None, values: dict[str, Any] | None) -> tuple[bool, str]:
    """(uninstall?, why) for the release ``helm list`` found, with its values."""
    if found is None:
        return False, "already gone"
    foreign = foreign_release(found, values)
    if foreign:
        return False, f"kept: {foreign}"
    return True, f"release of chart {found['chart']} ({found.get('status')})"


def _node_owner(labels: dict[str, str], namespace: str) -> tuple[str, str | None]:
    """(namespace, deployment) of a node; nodes labelled before namespaces were part of the
    identity count as the namespace being torn down."""
    return labels.get(NAMESPACE_KEY, namespace), labels.get(DEPLOYMENT_KEY)


def _others(items: list[Any], deployment: str) -> list[str]:
    return sorted({(i.metadata.labels or {}).get(DEPLOYMENT_KEY) for i in items} - {deployment, None})


def other_deployments(api: Any, namespace: str, deployment: str) -> list[str]:
    """Managed serving workloads (Deployments, LeaderWorkerSets) of other deployments here."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    selector = f"{MANAGED_BY_KEY}={PROJECT}"
    found = _others(client.AppsV1Api(api).list_namespaced_deployment(namespace, label_selector=selector).items,
                    deployment)
    try:
        sets = list_lws(api, namespace, selector)
    except ApiException as exc:
        if exc.status != 404:  # no LeaderWorkerSet CRD: no multi-node deployments
            raise
        sets = []
    lws = {(s["metadata"].get("labels") or {}).get(DEPLOYMENT_KEY) for s in sets} - {deployment, None}
    return sorted(set(found) | lws)


def shared_decision(labels: dict[str, str] | None, others: list[str]) -> tuple[bool, str]:
    """For what a namespace's deployments share (token Secret, FSx claim)."""
    if labels is None:
        return False, "already gone"
    if not is_managed(labels):
        return False, "kept: not made by llm-on-eks"
    if others:
        return False, f"kept: still used by {others}"
    return True, "no other llm-on-eks deployment in the namespace"


def plugin_decision(labels: dict[str, str] | None, other_nodes: list[str], accelerator: str) -> tuple[bool, str]:
    if labels is None:
        return False, "not installed"
    if not is_managed(labels):
        return False, "kept: not installed by llm-on-eks"
    if other_nodes:
        return False, f"kept: {accelerator} nodes of other deployments remain ({', '.join(other_nodes[:3])})"
    return True, f"no {accelerator} node of another deployment is left"


def nodepool_decision(nodepool: dict[str, Any] | None, namespace: str, deployment: str) -> tuple[bool, str]:
    if nodepool is None:
        return False, "not present (not an EKS Auto Mode deployment, or gone)"
    if not is_ours(nodepool, namespace, deployment):
        return False, "kept: not made by llm-on-eks for this deployment"
    return True, "made for this deployment; its nodes go with it"


def _labels(read: Any, *args: Any) -> dict[str, str] | None:
    from kubernetes.client.exceptions import ApiException

    try:
        return read(*args).metadata.labels or {}
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def plan_cleanup(api: Any, namespace: str, deployment: str, secret: str, claim: str,
                 nodepool: str) -> list[dict[str, Any]]:
    """Every object the teardown would remove or keep, with the reason: read-only."""
    from kubernetes import client

    core, apps, batch = client.CoreV1Api(api), client.AppsV1Api(api), client.BatchV1Api(api)
    actions: list[dict[str, Any]] = []
    jobs = batch.list_namespaced_job(namespace, label_selector=f"{MANAGED_BY_KEY}={PROJECT},"
                                                               f"{DEPLOYMENT_KEY}={deployment}").items
    actions += [{"kind": "Job", "name": j.metadata.name, "delete": True, "why": f"a Job of {deployment}"}
                for j in jobs]
    others = other_deployments(api, namespace, deployment)
    for kind, name, read in (("Secret", secret, core.read_namespaced_secret),
                             ("PersistentVolumeClaim", claim, core.read_namespaced_persistent_volume_claim)):
        delete, why = shared_decision(_labels(read, name, namespace), others)
        actions.append({"kind": kind, "name": name, "delete": delete, "why": why})
    volume = fsx_pv_name(claim, namespace)
    delete, why = shared_decision(_labels(core.read_persistent_volume, volume), others)
    actions.append({"kind": "PersistentVolume", "name": volume, "delete": delete, "why": why})
    for accelerator in PLUGINS:
        name = plugin_name(accelerator)
        nodes = core.list_node(label_selector=f"{ACCELERATOR_KEY}={accelerator}").items
        other_nodes = [n.metadata.name for n in nodes
                       if _node_owner(n.metadata.labels or {}, namespace) != (namespace, deployment)]
        delete, why = plugin_decision(_labels(apps.read_namespaced_daemon_set, name, PLUGIN_NAMESPACE), other_nodes,
                                      accelerator)
        actions.append({"kind": "DaemonSet", "name": f"{PLUGIN_NAMESPACE}/{name}", "accelerator": accelerator,
                        "delete": delete, "why": why})
    delete, why = nodepool_decision(read_nodepool(api, nodepool), namespace, deployment)
    actions.append({"kind": "NodePool", "name": nodepool, "delete": delete, "why": why})
    return actions


def _deletes(api: Any, namespace: str, action: dict[str, Any]) -> list[tuple[Any, tuple, dict]]:
    """The delete calls (function, arguments, keywords) that remove what ``action`` names."""
    from kubernetes import client

    core, kind, name = client.CoreV1Api(api), action["kind"], action["name"]
    if kind == "Job":
        return [(client.BatchV1Api(api).delete_namespaced_job, (name, namespace), {"propagation_policy": "Background"})]
    if kind == "Secret":
        return [(core.delete_namespaced_secret, (name, namespace), {})]
    if kind == "PersistentVolumeClaim":
        return [(core.delete_namespaced_persistent_volume_claim, (name, namespace), {})]
    if kind == "PersistentVolume":
        return [(core.delete_persistent_volume, (name,), {})]
    if kind == "NodePool":
        return [(delete_nodepool, (api, name), {})]
    # Our device plugin: the DaemonSet and, for Neuron, its RBAC.
    rbac = client.RbacAuthorizationV1Api(api)
    objects = {o["kind"]: o["metadata"]["name"] for o in plugin_objects(action["accelerator"])}
    calls = [(client.AppsV1Api(api).delete_namespaced_daemon_set, (objects["DaemonSet"], PLUGIN_NAMESPACE), {})]
    if "ClusterRole" in objects:
        calls += [(rbac.delete_cluster_role_binding, (objects["ClusterRoleBinding"],), {}),
                  (rbac.delete_cluster_role, (objects["ClusterRole"],), {}),
                  (core.delete_namespaced_service_account, (objects["ServiceAccount"], PLUGIN_NAMESPACE), {})]
    return calls


def carry_out(api: Any, namespace: str, actions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Remove what ``plan_cleanup`` marked; an object already gone is a success."""
    from kubernetes.client.exceptions import ApiException

    done = []
    for action in actions:
        if not action["delete"]:
            done.append({**action, "result": action["why"]})
            continue
        for call, args, kwargs in _deletes(api, namespace, action):
            try:
                call(*args, **kwargs)
            except ApiException as exc:
                if exc.status != 404:
                    raise
        done.append({**action, "result": "deleted"})
    return done


def wait_pods_gone(api: Any, namespace: str, release: str, budget_s: float) -> list[str]:
    """The release's pods still there after ``budget_s`` (none: all gone)."""
    from kubernetes import client

    selector = serving_selector(release)
    deadline = time.monotonic() + budget_s
    while True:
        pods = [p.metadata.name for p in client.CoreV1Api(api).list_namespaced_pod(namespace,
                                                                                    label_selector=selector).items]
        if not pods or time.monotonic() > deadline:
            return pods
        time.sleep(POLL_S)

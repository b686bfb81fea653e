"""The accelerator's Kubernetes device plugin, without which no node advertises
``nvidia.com/gpu`` or ``aws.amazon.com/neuron`` and every serving pod stays Pending.

EKS's AL2023 NVIDIA and Neuron AMIs carry the drivers but not the device plugin (EKS user
guide, "Install Kubernetes device plugin for GPUs"; the ai-on-eks Trainium2 Llama 4 guide
applies the Neuron one by hand).
One DaemonSet per accelerator per cluster, in kube-system, shared by every deployment on the
cluster like the system node group, and placed only on node groups we label
(``llm-on-eks.io/accelerator``): nodes someone else runs, Bottlerocket or EKS Auto Mode nodes
whose image brings its own plugin among them, are left alone. A plugin someone else already
runs (the GPU operator, the vendor's Helm chart) is found by its image and used as it is: two
plugins on one node would both register the resource.

The Neuron scheduler extension is not installed: our pods take all of a node's devices, so
contiguous core placement does not arise, and a pod naming a scheduler that is not running
stays Pending forever (Kubernetes docs, "Configure Multiple Schedulers"; the ai-on-eks-charts
Neuron values hard-code ``schedulerName: my-scheduler``).
"""

from __future__ import annotations

import json
import time
from typing import Any

from llm_on_eks.kube.readiness import last_events
from llm_on_eks.naming import ACCELERATOR_KEY, MANAGED_BY_KEY, PROJECT, is_managed
from llm_on_eks.plan.defaults import ACCELERATORS
from llm_on_eks.plan.types import KubernetesSection, ProfileSection

NAMESPACE = "kube-system"
FIELD_MANAGER = PROJECT
APPLY = "application/apply-patch+yaml"
KUBELET_PLUGINS_DIR = "/var/lib/kubelet/device-plugins"
# Pinned like every image we run; the image repository's last path part is how a plugin
# installed by other means is recognised.
PLUGINS = {
    "gpu": {"name": "nvidia-device-plugin", "image": "nvcr.io/nvidia/k8s-device-plugin:v0.17.4"},
    "neuron": {"name": "neuron-device-plugin", "image": "public.ecr.aws/neuron/neuron-device-plugin:2.26.7.0"},
}
# What the Neuron plugin reads and writes (aws-neuron-sdk's k8s-neuron-device-plugin-rbac):
# it annotates pods with the devices it allocated and patches node status.
NEURON_RULES = [
    {"apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "list", "watch"]},
    {"apiGroups": [""], "resources": ["events"], "verbs": ["create", "patch"]},
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch", "update", "patch"]},
    {"apiGroups": [""], "resources": ["nodes/status"], "verbs": ["patch", "update"]},
]


class DevicesMissing(RuntimeError):
    """The deployment's nodes do not advertise the accelerator within the budget."""


def plugin_name(accelerator: str) -> str:
    return f"{PROJECT}-{PLUGINS[accelerator]['name']}"


def image_repo(accelerator: str) -> str:
    return _repository(PLUGINS[accelerator]["image"])


def _repository(image: str) -> str:
    """An image reference's last path part without tag or digest: "k8s-device-plugin"."""
    return image.rsplit("/", 1)[-1].split("@")[0].split(":")[0]


def _meta(accelerator: str, namespaced: bool = True) -> dict[str, Any]:
    meta = {"name": plugin_name(accelerator),
            "labels": {MANAGED_BY_KEY: PROJECT, "app.kubernetes.io/name": PLUGINS[accelerator]["name"],
                       "app.kubernetes.io/managed-by": PROJECT}}
    return {**meta, "namespace": NAMESPACE} if namespaced else meta


def plugin_objects(accelerator: str) -> list[dict[str, Any]]:
    """Everything applied for ``accelerator``, in apply order: RBAC first, the DaemonSet last."""
    plugin, meta = PLUGINS[accelerator], _meta(accelerator)
    name, selector = meta["name"], {"app.kubernetes.io/name": meta["labels"]["app.kubernetes.io/name"]}
    container: dict[str, Any] = {
        "name": "device-plugin",
        "image": plugin["image"],
        "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
        "volumeMounts": [{"name": "device-plugins", "mountPath": KUBELET_PLUGINS_DIR}],
    }
    volumes: list[dict[str, Any]] = [{"name": "device-plugins", "hostPath": {"path": KUBELET_PLUGINS_DIR}}]
    pod: dict[str, Any] = {
        "nodeSelector": {ACCELERATOR_KEY: accelerator},
        "tolerations": [{"key": ACCELERATORS[accelerator]["taint_key"], "operator": "Exists", "effect": "NoSchedule"},
                        {"key": "CriticalAddonsOnly", "operator": "Exists"}],
        "priorityClassName": "system-node-critical",
        "containers": [container],
        "volumes": volumes,
    }
    objects: list[dict[str, Any]] = []
    if accelerator == "gpu":
        # Without a GPU yet (driver still loading) the plugin waits instead of crash-looping.
        container["env"] = [{"name": "FAIL_ON_INIT_ERROR", "value": "false"}]
    else:
        container["env"] = [{"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}]
        container["volumeMounts"].append({"name": "run", "mountPath": "/run"})
        volumes.append({"name": "run", "hostPath": {"path": "/run"}})
        pod["serviceAccountName"] = name
        role_ref = {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name}
        objects = [
            {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta(accelerator)},
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
             "metadata": _meta(accelerator, namespaced=False), "rules": NEURON_RULES},
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
             "metadata": _meta(accelerator, namespaced=False), "roleRef": role_ref,
             "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": NAMESPACE}]},
        ]
    daemonset = {
        "apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": _meta(accelerator),
        "spec": {"selector": {"matchLabels": selector}, "updateStrategy": {"type": "RollingUpdate"},
                 "template": {"metadata": {"labels": _meta(accelerator)["labels"]}, "spec": pod}},
    }
    return [*objects, daemonset]


def foreign_plugin(api, accelerator: str) -> str | None:
    """``namespace/name`` of a DaemonSet not ours that runs this accelerator's plugin image."""
    from kubernetes import client

    repo = image_repo(accelerator)
    for ds in client.AppsV1Api(api).list_daemon_set_for_all_namespaces().items:
        if is_managed(ds.metadata.labels):
            continue
        if any(_repository(c.image) == repo for c in ds.spec.template.spec.containers):
            return f"{ds.metadata.namespace}/{ds.metadata.name}"
    return None


def _version(meta) -> Any:
    """What changes when we change an object: its generation and labels where it has a
    generation (a DaemonSet's resourceVersion also moves with every status write by its
    controller), else its resourceVersion."""
    return (meta.generation, meta.labels) if meta.generation else meta.resource_version


def _apply(api, obj: dict[str, Any]) -> str:
    """Server-side apply one object; "created", "updated" or "unchanged"."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    name, namespace = obj["metadata"]["name"], obj["metadata"].get("namespace")
    calls = {
        "ServiceAccount": (client.CoreV1Api(api), "namespaced_service_account"),
        "ClusterRole": (client.RbacAuthorizationV1Api(api), "cluster_role"),
        "ClusterRoleBinding": (client.RbacAuthorizationV1Api(api), "cluster_role_binding"),
        "DaemonSet": (client.AppsV1Api(api), "namespaced_daemon_set"),
    }
    target, suffix = calls[obj["kind"]]
    where = (name, namespace) if namespace else (name,)
    try:
        before = _version(getattr(target, f"read_{suffix}")(*where).metadata)
    except ApiException as exc:
        if exc.status != 404:
            raise
        before = None
    after = _version(getattr(target, f"patch_{suffix}")(*where, obj, field_manager=FIELD_MANAGER, force=True,
                                                          _content_type=APPLY).metadata)
    return "created" if before is None else "unchanged" if before == after else "updated"


def ensure_device_plugin(api, accelerator: str) -> dict[str, Any]:
    """Use a plugin someone else runs, else apply ours; what was done, for the task's XCom.

    Credentials limited to the deployment's namespace (a shared cluster's admins run the
    plugin) may neither look for DaemonSets nor apply one: then the nodes' advertised devices
    decide, as they do in every case."""
    from kubernetes.client.exceptions import ApiException

    try:
        other = foreign_plugin(api, accelerator)
        if other:
            return {"daemonset": other, "action": "installed by someone else: used as it is"}
        actions = [_apply(api, obj) for obj in plugin_objects(accelerator)]
    except ApiException as exc:
        if exc.status != 403:
            raise
        return {"daemonset": None, "action": f"not allowed to look for or install a device plugin ({denied_message(exc)})"}
    action = "created" if actions[-1] == "created" else "updated" if "updated" in actions else "unchanged"
    return {"daemonset": f"{NAMESPACE}/{plugin_name(accelerator)}", "action": action}


def _node_selector(profile: ProfileSection, kubernetes: KubernetesSection) -> str:
    labels = {**kubernetes["node_selector"], ACCELERATOR_KEY: profile["accelerator"]}
    return ",".join(f"{key}={value}" for key, value in sorted(labels.items()))


def advertising(api, profile: ProfileSection, kubernetes: KubernetesSection) -> tuple[list[str], list[str]]:
    """Nodes of the deployment's kind that advertise all the devices a pod asks for, and a line
    per node for the error message."""
    from kubernetes import client

    resource, wanted = kubernetes["accelerator_resource"], int(profile["accelerators_per_node"])
    ready, lines = [], []
    for node in client.CoreV1Api(api).list_node(label_selector=_node_selector(profile, kubernetes)).items:
        count = int((node.status.allocatable or {}).get(resource, "0"))
        if count >= wanted:
            ready.append(node.metadata.name)
        lines.append(f"  node {node.metadata.name}: {count} {resource} allocatable, {wanted} wanted")
    return ready, lines


def denied_message(exc) -> str:
    """The API server's own words for a 403, which name the user, verb and resource."""

    try:
        return json.loads(exc.body)["message"]
    except (TypeError, ValueError, KeyError):
        return str(exc.reason)


def _plugin_pods(api, accelerator: str) -> list[str]:
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    core = client.CoreV1Api(api)
    selector = f"app.kubernetes.io/name={PLUGINS[accelerator]['name']}"
    try:
        pods = core.list_namespaced_pod(NAMESPACE, label_selector=selector).items
    except ApiException as exc:
        if exc.status != 403:
            raise
        return [f"  plugin pods not visible: {denied_message(exc)}"]
    return [f"  pod {NAMESPACE}/{pod.metadata.name} on {pod.spec.node_name}: {pod.status.phase} "
            f"({'; '.join(last_events(core, NAMESPACE, pod.metadata.name, 2)) or 'no events'})"
            for pod in pods]


def wait_for_devices(api, profile: ProfileSection, kubernetes: KubernetesSection, budget_s: float,
                     poll_s: float) -> list[str]:
    """Wait until as many nodes as the profile needs advertise their devices (looking every
    ``poll_s``); their names.

    The node group is ACTIVE by now, so this is the plugin's image pull and registration:
    minutes, waited for in the worker. Credentials that may not list nodes get the API
    server's 403, for the caller to report as unknown."""
    needed, deadline = profile["nodes"], time.monotonic() + budget_s
    while True:
        ready, lines = advertising(api, profile, kubernetes)
        if len(ready) >= needed:
            return sorted(ready)
        if time.monotonic() > deadline:
            break
        time.sleep(poll_s)
    nodes = "\n".join(lines) or (f"  no node is labelled {_node_selector(profile, kubernetes)}: have the node "
                                 "group's nodes joined?")
    pods = "\n".join(_plugin_pods(api, profile["accelerator"])) or "  no pods of our device plugin (another plugin may be in use)"
    raise DevicesMissing(
        f"{len(ready)} of {needed} node(s) advertise {kubernetes['accelerator_resource']} after {budget_s:.0f} s;"
        f" serving pods would stay Pending.\n{nodes}\n{pods}")

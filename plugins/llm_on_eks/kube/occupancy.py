"""Whether the names a deployment's chart takes in its namespace are free, or already its own.

The chart names its Deployment (or LeaderWorkerSet) and its Service after the release. Helm
refuses to take over an object another tool made ("invalid ownership metadata"), but only at
helm_deploy, after the node group and weights exist. Asked at take_lease instead, before anything
billable, the answer names each object in the way.
"""

from __future__ import annotations

from typing import Any

from llm_on_eks.kube.lws import read_lws
from llm_on_eks.naming import is_managed

# Helm writes this annotation on every object of a release (Helm docs, "Adopting existing resources").
HELM_RELEASE_ANNOTATION = "meta.helm.sh/release-name"


def _metadata(api, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
    """The object's labels and annotations, or None when there is none (or no such API)."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    try:
        if kind == "Deployment":
            meta = client.AppsV1Api(api).read_namespaced_deployment(name, namespace).metadata
        elif kind == "Service":
            meta = client.CoreV1Api(api).read_namespaced_service(name, namespace).metadata
        else:
            return read_lws(api, namespace, name).get("metadata") or {}
    except ApiException as exc:
        if exc.status == 404:  # no such object, or a cluster without the LeaderWorkerSet CRD
            return None
        raise
    return {"labels": meta.labels, "annotations": meta.annotations}


def foreign_occupants(api, namespace: str, release: str) -> list[str]:
    """The objects named like the release that are not that release of ours, e.g.
    ``["Deployment serving/scout"]``; empty when the names are free or ours."""
    foreign = []
    for kind in ("Deployment", "LeaderWorkerSet", "Service"):
        meta = _metadata(api, kind, namespace, release)
        if meta is None:
            continue
        ours = is_managed(meta.get("labels")) and (meta.get("annotations") or {}).get(HELM_RELEASE_ANNOTATION) == release
        if not ours:
            foreign.append(f"{kind} {namespace}/{release}")
    return foreign

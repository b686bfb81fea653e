"""The LeaderWorkerSet API a multi-node release is made of (``naming.LWS_*``), called from here
only: readiness reads a release's set, cleanup lists the namespace's, occupancy looks one up."""

from __future__ import annotations

from typing import Any

from llm_on_eks.naming import LWS_GROUP, LWS_PLURAL, LWS_VERSION


def read_lws(api: Any, namespace: str, name: str) -> dict[str, Any]:
    """The LeaderWorkerSet ``name``; ApiException 404 when there is none (or no such CRD)."""
    from kubernetes import client

    return client.CustomObjectsApi(api).get_namespaced_custom_object(LWS_GROUP, LWS_VERSION, namespace, LWS_PLURAL,
                                                                     name)


def list_lws(api: Any, namespace: str, label_selector: str) -> list[dict[str, Any]]:
    """The namespace's LeaderWorkerSets with these labels; ApiException 404 without the CRD."""
    from kubernetes import client

    return client.CustomObjectsApi(api).list_namespaced_custom_object(
        LWS_GROUP, LWS_VERSION, namespace, LWS_PLURAL, label_selector=label_selector)["items"]

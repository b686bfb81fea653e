"""The deployment's namespace, created on first use by whichever step needs it first.

A namespace this project creates is labelled managed-by only, not with the deployment that
happened to come first: the namespace is shared by every deployment in it. A namespace that
already exists (made by a person, or by another tool) is used as it is and never relabelled."""

from __future__ import annotations

from llm_on_eks.naming import MANAGED_BY_KEY, PROJECT


def ensure_namespace(api, namespace: str) -> None:
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    body = client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace,
                                                           labels={MANAGED_BY_KEY: PROJECT}))
    try:
        client.CoreV1Api(api).create_namespace(body)
    except ApiException as exc:
        if exc.status != 409:
            raise

"""The deployment's namespace, created on first use by whichever step needs it first."""

from __future__ import annotations

from llm_on_eks.plan import Plan


def ensure_namespace(api, plan: Plan) -> None:
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    body = client.V1Namespace(metadata=client.V1ObjectMeta(name=plan["kubernetes"]["namespace"],
                                                           labels=dict(plan["kubernetes"]["labels"])))
    try:
        client.CoreV1Api(api).create_namespace(body)
    except ApiException as exc:
        if exc.status != 409:
            raise

"""The HF token Secret, kept equal to the token source without ever showing the value.

One key (``plan["hf_token"]["k8s_secret"]["key"]``, "token" by default, as the public chart
reads it), written through ``stringData`` so the API server encodes it exactly once (the ai-on-eks
Trainium2 Llama 4 guide's command encoded it twice). Unchanged values are left alone, so a re-run makes no
write and no new resourceVersion.
"""

from __future__ import annotations

import base64

from llm_on_eks.kube.manifests import hf_token_secret
from llm_on_eks.plan import Plan


def ensure_secret(api, plan: Plan, token: str) -> str:
    """Create, update or leave the Secret; returns "created", "updated" or "unchanged"."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    core = client.CoreV1Api(api)
    secret, namespace = plan["hf_token"]["k8s_secret"], plan["kubernetes"]["namespace"]
    body = hf_token_secret(plan, token)
    try:
        current = core.read_namespaced_secret(secret["name"], namespace)
    except ApiException as exc:
        if exc.status != 404:
            raise
        core.create_namespaced_secret(namespace, body)
        return "created"
    if (current.data or {}) == {secret["key"]: base64.b64encode(token.encode()).decode()}:
        return "unchanged"
    core.replace_namespaced_secret(secret["name"], namespace, body)
    return "updated"

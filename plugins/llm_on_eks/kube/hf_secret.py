"""The HF token Secret, kept equal to the token source without ever showing the value.

One key (the plan's ``hf_token["k8s_secret"]["key"]``, "token" by default, as the public chart
reads it), written through ``stringData`` so the API server encodes it exactly once (the ai-on-eks
Trainium2 Llama 4 guide's command encoded it twice). Unchanged values are left alone, so a re-run makes no
write and no new resourceVersion. A Secret of that name that llm-on-eks did not make is refused,
never replaced. The Secret is the namespace's, shared by its deployments: when another one's run
creates it between this run's read and create, it is judged as found.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterator
from contextlib import contextmanager

from llm_on_eks.kube.manifests import hf_token_secret
from llm_on_eks.naming import MANAGED_BY_KEY, PROJECT, is_managed
from llm_on_eks.plan.types import SecretRef, Target

# The kubernetes client logs every response body at DEBUG ("response body: ..."), and urllib3
# logs requests: a Secret read carries the token base64-encoded, which masking the raw token
# does not catch.
BODY_LOGGERS = ("kubernetes.client.rest", "urllib3")


class ForeignSecret(RuntimeError):
    """A Secret of the token's name exists and is not ours."""


@contextmanager
def quiet_bodies() -> Iterator[None]:
    """Hold the loggers that print request and response bodies at INFO or above meanwhile."""
    loggers = [logging.getLogger(name) for name in BODY_LOGGERS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(max(logger.getEffectiveLevel(), logging.INFO))
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def ensure_secret(api, target: Target, secret: SecretRef, token: str) -> str:
    """Create, update or leave the Secret ``secret`` names in ``target``'s namespace; returns
    "created", "updated" or "unchanged"."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    core = client.CoreV1Api(api)
    namespace = target["access"]["namespace"]
    body = hf_token_secret(target, secret, token)
    with quiet_bodies():
        try:
            current = core.read_namespaced_secret(secret["name"], namespace)
        except ApiException as exc:
            if exc.status != 404:
                raise
            try:
                core.create_namespaced_secret(namespace, body)
                return "created"
            except ApiException as conflict:
                # 409 AlreadyExists: another deployment's run in the namespace made it meanwhile;
                # judged as if it had been found.
                if conflict.status != 409:
                    raise
            current = core.read_namespaced_secret(secret["name"], namespace)
        if not is_managed(current.metadata.labels):
            raise ForeignSecret(f"Secret {namespace}/{secret['name']} exists without the label {MANAGED_BY_KEY}="
                                f"{PROJECT}: someone else's, so it is not replaced. Deploy into another namespace, "
                                f"or hand it over by adding that label")
        if (current.data or {}) == {secret["key"]: base64.b64encode(token.encode()).decode()}:
            return "unchanged"
        core.replace_namespaced_secret(secret["name"], namespace, body)
        return "updated"

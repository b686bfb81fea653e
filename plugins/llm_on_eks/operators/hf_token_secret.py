"""The ``hf_token_secret`` step: the Hugging Face token into the deployment's namespace.

The token is read from its source (``llm_on_eks.aws.hf_token``) inside this task and handed
straight to the Kubernetes API; it is never returned, logged, templated or put in Helm values.
"""

from __future__ import annotations

from typing import Any

from llm_on_eks.operators.base import PlanStepOperator
from llm_on_eks.plan import Plan


class HfTokenSecretOperator(PlanStepOperator):
    """Create or update the HF token Secret from the token source; the value is never shown."""

    def describe(self, plan: Plan) -> Any:
        from llm_on_eks.aws.hf_token import token_origin
        from llm_on_eks.kube.manifests import hf_token_secret

        return {"token_from": token_origin(plan), "apply": hf_token_secret(plan)}

    def run(self, plan: Plan, context: Any) -> Any:
        from airflow.sdk.exceptions import AirflowFailException

        from llm_on_eks.aws.hf_token import read_hf_token
        from llm_on_eks.kube.access import api_client, cluster_access
        from llm_on_eks.kube.hf_secret import ForeignSecret, ensure_secret
        from llm_on_eks.kube.namespace import ensure_namespace

        secret, namespace = plan["hf_token"]["k8s_secret"], plan["kubernetes"]["namespace"]
        with api_client(cluster_access(plan)) as api:
            ensure_namespace(api, plan)
            try:
                action = ensure_secret(api, plan, read_hf_token(plan))
            except ForeignSecret as exc:
                raise AirflowFailException(str(exc)) from None
        self.log.info("secret %s/%s (key %s) %s", namespace, secret["name"], secret["key"], action)
        return {"namespace": namespace, "secret": secret["name"], "key": secret["key"], "action": action}

"""The ``hf_token_secret`` step: the Hugging Face token into the deployment's namespace.

The token is read from its source (``llm_on_eks.aws.hf_token``) inside this task and handed
straight to the Kubernetes API; it is never returned, logged, templated or put in Helm values.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk.exceptions import AirflowFailException

from llm_on_eks.aws.hf_token import read_hf_token, token_origin
from llm_on_eks.kube.access import api_client
from llm_on_eks.kube.hf_secret import ForeignSecret, ensure_secret
from llm_on_eks.kube.manifests import hf_token_secret
from llm_on_eks.kube.namespace import ensure_namespace
from llm_on_eks.operators.base import DeploymentStepOperator
from llm_on_eks.plan.types import AwsSection, HfTokenSection


class HfTokenSecretOperator(DeploymentStepOperator):
    """Create or update the HF token Secret from the token source; the value is never shown.

    :param aws: the AWS connection and region a Secrets Manager token source is read with
    :param hf_token: where the token comes from, and the Secret name and key it goes to
    """

    template_fields = (*DeploymentStepOperator.template_fields, "aws", "hf_token")

    def __init__(self, *, aws: AwsSection, hf_token: HfTokenSection, **kwargs) -> None:
        super().__init__(**kwargs)
        self.aws = aws
        self.hf_token = hf_token

    def describe(self) -> Any:
        return {"token_from": token_origin(self.hf_token),
                "apply": hf_token_secret(self.target, self.hf_token["k8s_secret"])}

    def run(self, context: Any) -> Any:
        secret, namespace = self.hf_token["k8s_secret"], self.access["namespace"]
        with api_client(self.access) as api:
            ensure_namespace(api, namespace)
            try:
                action = ensure_secret(api, self.target, secret, read_hf_token(self.aws, self.hf_token))
            except ForeignSecret as exc:
                raise AirflowFailException(str(exc)) from None
        self.log.info("secret %s/%s (key %s) %s", namespace, secret["name"], secret["key"], action)
        return {"namespace": namespace, "secret": secret["name"], "key": secret["key"], "action": action}

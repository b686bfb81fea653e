"""The ``provision.check_access`` step: before the first Kubernetes call of a deploy (take_lease),
the API server says whether the Airflow identity may do what the steps do
(``llm_on_eks.kube.access_review``). A cluster this project creates makes its creator an admin
through an access entry (``accessConfig`` in ``aws.api_calls.create_cluster_request``); an adopted
one may not know the identity at all, and the refusal then says which access entry and policy to add.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import Context
from airflow.sdk.exceptions import AirflowFailException

from llm_on_eks.kube import access_review
from llm_on_eks.kube.access import api_client
from llm_on_eks.operators.base import DeploymentStepOperator


class CheckClusterAccessOperator(DeploymentStepOperator):
    """Ask the cluster, one SelfSubjectAccessReview per verb and resource, whether the identity
    the steps act as may do their work in the deployment's namespace and cluster-wide."""

    def describe(self) -> Any:
        access = self.target["access"]
        return {"reviews": access_review.reviews(access["namespace"]), "cluster": access["cluster"],
                "refuse_if": "any is denied, naming the access entry and policy to add"}

    def run(self, context: Context) -> Any:
        from kubernetes.client.exceptions import ApiException

        access = self.target["access"]
        try:
            with api_client(access) as api:
                refused = access_review.denied(api, access["namespace"])
        except ApiException as exc:
            if exc.status != 401:
                raise
            refused = None
        if refused == []:
            self.log.info("cluster %s: the identity may do every step's work", access["cluster"])
            return {"cluster": access["cluster"], "allowed": len(access_review.reviews(access["namespace"]))}
        raise AirflowFailException(self.refusal(access, refused))

    def refusal(self, access: dict[str, Any], refused: list[str] | None) -> str:
        what = ("does not know the Airflow identity (401 Unauthorized)" if refused is None
                else f"does not let the Airflow identity {', '.join(refused)}")
        if access["kubernetes_conn_id"]:
            return f"cluster {access['cluster']} {what}: bind the Kubernetes connection's user to cluster-admin"
        principal = access_review.principal_arn(self.caller_arn(access))
        return (f"EKS cluster {access['cluster']} {what}; nothing was created on it. Give {principal} an access "
                f"entry with {access_review.ADMIN_POLICY.rsplit('/', 1)[1]}: "
                + access_review.grant_hint(access["cluster"], principal))

    @staticmethod
    def caller_arn(access: dict[str, Any]) -> str:
        from airflow.providers.amazon.aws.hooks.sts import StsHook

        return StsHook(aws_conn_id=access["aws_conn_id"], region_name=access["region"]).conn.get_caller_identity()["Arn"]

"""The ``provision.check_access`` step: before the first Kubernetes call of a deploy (take_lease),
the API server says whether the Airflow identity may do what the steps do
(``llm_on_eks.kube.access_review``). A cluster this project creates makes its creator an admin
through an access entry (``accessConfig`` in ``aws.api_calls.create_cluster_request``); an adopted
one may not know the identity at all. Then the step adds the access entry when the plan says so
(``grant_cluster_access``), and otherwise fails saying which entry and policy to add.
"""

from __future__ import annotations

import time
from typing import Any

from airflow.sdk import Context
from airflow.sdk.exceptions import AirflowFailException

from llm_on_eks.kube import access_review
from llm_on_eks.kube.access import api_client
from llm_on_eks.operators.base import DeploymentStepOperator
from llm_on_eks.plan.types import ClusterAccess, ClusterSection

# After an access entry is added, how long its effect may take to reach the API server: the
# authenticator's answers are cached (EKS documents no figure; the local webhook caches 10 s).
GRANT_SETTLE_S, GRANT_POLL_S = 90, 5


class CheckClusterAccessOperator(DeploymentStepOperator):
    """Ask the cluster, one SelfSubjectAccessReview per verb and resource, whether the identity
    the steps act as may do their work in the deployment's namespace and cluster-wide.

    :param cluster: the cluster: whether to add an access entry for the identity when it lacks access
    """

    template_fields = (*DeploymentStepOperator.template_fields, "cluster")

    def __init__(self, *, cluster: ClusterSection, **kwargs) -> None:
        super().__init__(**kwargs)
        self.cluster = cluster

    def describe(self) -> Any:
        access = self.target["access"]
        return {"reviews": access_review.reviews(access["namespace"]), "cluster": access["cluster"],
                "if_denied": ("add an access entry with AmazonEKSClusterAdminPolicy, then ask again"
                              if self.cluster["grant_access"] else "fail, naming the access entry and policy to add")}

    def run(self, context: Context) -> Any:
        access = self.target["access"]
        refused = self.refused(access)
        if refused == []:
            self.log.info("cluster %s: the identity may do every step's work", access["cluster"])
            return {"cluster": access["cluster"], "allowed": len(access_review.reviews(access["namespace"]))}
        if not (self.cluster["grant_access"] and not access["kubernetes_conn_id"]):
            raise AirflowFailException(self.refusal(access, refused))
        principal = self.grant(access)
        deadline = time.monotonic() + GRANT_SETTLE_S
        while (refused := self.refused(access)) and time.monotonic() < deadline:
            time.sleep(GRANT_POLL_S)
        if refused:
            raise AirflowFailException(f"{self.refusal(access, refused)} (an access entry was added and is still "
                                       f"not in effect after {GRANT_SETTLE_S} s)")
        return {"cluster": access["cluster"], "allowed": len(access_review.reviews(access["namespace"])),
                "granted": principal}

    @staticmethod
    def refused(access: ClusterAccess) -> list[str] | None:
        """What the identity may not do; None when the cluster does not know it (401)."""
        from kubernetes.client.exceptions import ApiException

        try:
            with api_client(access) as api:
                return access_review.denied(api, access["namespace"])
        except ApiException as exc:
            if exc.status != 401:
                raise
            return None

    def grant(self, access: ClusterAccess) -> str:
        """Add the identity's access entry with the cluster-admin access policy (the cluster must
        take access entries: authentication mode API or API_AND_CONFIG_MAP)."""
        from airflow.providers.amazon.aws.hooks.eks import EksHook

        eks = EksHook(aws_conn_id=access["aws_conn_id"], region_name=access["region"]).conn
        name, principal = access["cluster"], access_review.principal_arn(self.caller_arn(access))
        try:
            eks.create_access_entry(clusterName=name, principalArn=principal)
        except eks.exceptions.ResourceInUseException:
            self.log.info("EKS cluster %s: %s has an access entry already", name, principal)
        except eks.exceptions.InvalidRequestException as exc:
            # EKS's answer for a cluster in authentication mode CONFIG_MAP (EKS API, CreateAccessEntry).
            raise AirflowFailException(f"EKS cluster {name} takes no access entries ({exc}): map {principal} in "
                                       "kube-system/aws-auth to system:masters") from exc
        eks.associate_access_policy(clusterName=name, principalArn=principal, policyArn=access_review.ADMIN_POLICY,
                                    accessScope={"type": "cluster"})
        self.log.warning("EKS cluster %s: added an access entry for %s with %s, as grant_cluster_access asks", name,
                         principal, access_review.ADMIN_POLICY)
        return principal

    def refusal(self, access: ClusterAccess, refused: list[str] | None) -> str:
        what = ("does not know the Airflow identity (401 Unauthorized)" if refused is None
                else f"does not let the Airflow identity {', '.join(refused)}")
        if access["kubernetes_conn_id"]:
            return f"cluster {access['cluster']} {what}: bind the Kubernetes connection's user to cluster-admin"
        principal = access_review.principal_arn(self.caller_arn(access))
        return (f"EKS cluster {access['cluster']} {what}; nothing was created on it. Give {principal} an access "
                f"entry with {access_review.ADMIN_POLICY.rsplit('/', 1)[1]} (or trigger with "
                "grant_cluster_access=true): " + access_review.grant_hint(access["cluster"], principal))

    @staticmethod
    def caller_arn(access: ClusterAccess) -> str:
        from airflow.providers.amazon.aws.hooks.sts import StsHook

        return StsHook(aws_conn_id=access["aws_conn_id"], region_name=access["region"]).conn.get_caller_identity()["Arn"]

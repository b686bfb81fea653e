"""The cluster-access check's questions and its refusal: one SelfSubjectAccessReview per verb and
resource, in the deployment's namespace or kube-system or cluster-wide, and the access entry an
assumed role needs named by its role (tests/local_stack/test_eks_authenticator.py asks a real API
server)."""

from __future__ import annotations

from llm_on_eks.kube.access_review import describe, grant_hint, principal_arn, reviews


def test_each_verb_is_asked_where_the_steps_use_it():
    asked = {describe(r) for r in reviews("llm-serving")}
    assert {"create coordination.k8s.io/leases in llm-serving", "get pods/log in llm-serving",
            "create persistentvolumes", "patch apps/daemonsets in kube-system", "list apps/daemonsets",
            "create rbac.authorization.k8s.io/clusterroles"} <= asked
    assert len(asked) == len(reviews("llm-serving"))  # no question asked twice


def test_the_access_entry_names_an_assumed_roles_role():
    assert principal_arn("arn:aws:sts::123456789012:assumed-role/airflow-workers/i-0abc") == \
        "arn:aws:iam::123456789012:role/airflow-workers"
    assert principal_arn("arn:aws-cn:sts::123456789012:assumed-role/r/s") == "arn:aws-cn:iam::123456789012:role/r"
    assert principal_arn("arn:aws:iam::123456789012:user/airflow") == "arn:aws:iam::123456789012:user/airflow"
    assert grant_hint("c", "arn:aws:iam::1:user/a") == (
        "aws eks create-access-entry --cluster-name c --principal-arn arn:aws:iam::1:user/a; "
        "aws eks associate-access-policy --cluster-name c --principal-arn arn:aws:iam::1:user/a --policy-arn "
        "arn:aws:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy --access-scope type=cluster")

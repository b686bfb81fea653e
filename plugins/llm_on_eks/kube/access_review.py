"""Whether the Airflow identity may do on a cluster what the steps do, asked of the API server
itself (SelfSubjectAccessReview, one per verb and resource) before anything else touches it.

On EKS an identity gets in through an access entry (or the aws-auth ConfigMap); one the cluster
does not know is answered 401, one it knows without the right bindings 403, in the middle of a
deploy. Checked first, a refusal names the access entry and access policy to add (EKS user guide,
"Grant IAM users access to Kubernetes with EKS access entries"; the cluster-admin policy because
the steps make cluster-wide objects: PersistentVolumes, the device plugin's DaemonSet and RBAC).
"""

from __future__ import annotations

from typing import Any

# (API group, resource, verbs, namespaced): what the steps and the chart's objects need. The
# deployment's namespace for namespaced resources, kube-system for the device plugin's DaemonSet
# and ServiceAccount.
NEEDED: tuple[tuple[str, str, tuple[str, ...], str | None], ...] = (
    ("", "namespaces", ("get", "create"), None),
    ("coordination.k8s.io", "leases", ("get", "create", "update", "delete"), "deployment"),
    ("", "secrets", ("get", "list", "create", "update", "delete"), "deployment"),  # the token; helm's release records
    ("", "persistentvolumeclaims", ("get", "create", "delete"), "deployment"),
    ("", "persistentvolumes", ("get", "create", "patch", "delete"), None),
    ("batch", "jobs", ("get", "list", "create", "delete"), "deployment"),
    ("", "pods", ("list",), "deployment"),
    ("", "pods/log", ("get",), "deployment"),
    ("", "events", ("list",), "deployment"),
    ("", "services", ("get", "create", "patch", "delete"), "deployment"),
    ("apps", "deployments", ("get", "list", "create", "patch", "delete"), "deployment"),
    # The device plugin, server-side applied: patch, and create for an object not there yet
    # (Kubernetes docs, "Server-Side Apply"); its DaemonSets are looked for in every namespace.
    ("apps", "daemonsets", ("list",), None),
    ("apps", "daemonsets", ("get", "patch", "create", "delete"), "kube-system"),
    ("", "serviceaccounts", ("patch", "create", "delete"), "kube-system"),
    ("rbac.authorization.k8s.io", "clusterroles", ("patch", "create", "delete"), None),
    ("rbac.authorization.k8s.io", "clusterrolebindings", ("patch", "create", "delete"), None),
    ("", "nodes", ("list",), None),
    # The deployment's NodePool on an EKS Auto Mode cluster, and the NodeClass it launches from.
    ("karpenter.sh", "nodepools", ("get", "patch", "create", "delete"), None),
    ("eks.amazonaws.com", "nodeclasses", ("get",), None),
)
ADMIN_POLICY = "arn:aws:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy"


def reviews(namespace: str) -> list[dict[str, Any]]:
    """The SelfSubjectAccessReview specs' resourceAttributes, one per verb and resource."""
    found = []
    for group, resource, verbs, where in NEEDED:
        name, _, sub = resource.partition("/")
        scope = {"deployment": namespace, None: None}.get(where, where)
        for verb in verbs:
            found.append({"group": group, "resource": name, "verb": verb,
                          **({"subresource": sub} if sub else {}), **({"namespace": scope} if scope else {})})
    return found


def describe(attributes: dict[str, Any]) -> str:
    resource = "/".join(p for p in (attributes["resource"], attributes.get("subresource")) if p)
    group = f"{attributes['group']}/" if attributes["group"] else ""
    where = f" in {attributes['namespace']}" if attributes.get("namespace") else ""
    return f"{attributes['verb']} {group}{resource}{where}"


def denied(api_client: Any, namespace: str) -> list[str]:
    """What the identity may not do, as "verb group/resource in namespace"; empty when all is allowed."""
    from kubernetes import client

    authorization = client.AuthorizationV1Api(api_client)
    refused = []
    for attributes in reviews(namespace):
        review = authorization.create_self_subject_access_review(
            {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
             "spec": {"resourceAttributes": attributes}})
        if not review.status.allowed:
            refused.append(describe(attributes))
    return refused


def principal_arn(caller_arn: str) -> str:
    """The ARN an access entry names for the caller: an assumed role's role (STS answers
    ``arn:aws:sts::<account>:assumed-role/<role>/<session>``; the role's path, if any, is not in
    it and must be added by hand), else the caller's own."""
    prefix, _, rest = caller_arn.partition(":assumed-role/")
    if not rest:
        return caller_arn
    partition, account = prefix.split(":")[1], prefix.split(":")[4]
    return f"arn:{partition}:iam::{account}:role/{rest.split('/')[0]}"


def grant_hint(cluster: str, principal: str) -> str:
    """The two AWS CLI commands that give the identity the access the steps need."""
    return (f"aws eks create-access-entry --cluster-name {cluster} --principal-arn {principal}; "
            f"aws eks associate-access-policy --cluster-name {cluster} --principal-arn {principal} "
            f"--policy-arn {ADMIN_POLICY} --access-scope type=cluster")

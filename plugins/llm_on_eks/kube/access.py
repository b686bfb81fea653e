"""One way into the cluster for every cluster-side step and trigger, API client and helm CLI alike.

An Airflow Kubernetes connection (local control plane, existing clusters) when the plan names
one; otherwise the EKS cluster through a kubeconfig from the Amazon provider's EksHook, whose
exec plugin fetches a fresh IAM token on every request, so long steps never hold an expired one
(apache/airflow#63020). ``ClusterAccess`` is the few ids that takes: what a trigger serializes
instead of the plan.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TypedDict

from llm_on_eks.plan import Plan


class ClusterAccess(TypedDict):
    kubernetes_conn_id: str | None
    aws_conn_id: str
    region: str
    cluster: str
    namespace: str


def cluster_access(plan: Plan) -> ClusterAccess:
    return {"kubernetes_conn_id": plan["kubernetes"]["conn_id"], "aws_conn_id": plan["aws"]["conn_id"],
            "region": plan["aws"]["region"], "cluster": plan["cluster"]["name"],
            "namespace": plan["kubernetes"]["namespace"]}


@contextmanager
def kubeconfig_path(access: ClusterAccess) -> Iterator[str]:
    """A kubeconfig file for the cluster, valid while the context lasts."""
    conn_id = access["kubernetes_conn_id"]
    if conn_id:
        from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook

        hook = KubernetesHook(conn_id=conn_id)
        path = hook._get_field("kube_config_path")
        if path:
            yield path
            return
        inline = hook._get_field("kube_config")
        if not inline:
            raise ValueError(f"Kubernetes connection {conn_id!r} has neither kube_config_path nor kube_config")
        with tempfile.NamedTemporaryFile("w", suffix=".kubeconfig") as handle:
            handle.write(inline if isinstance(inline, str) else json.dumps(inline))
            handle.flush()
            yield handle.name
        return
    from airflow.providers.amazon.aws.hooks.eks import EksHook

    hook = EksHook(aws_conn_id=access["aws_conn_id"], region_name=access["region"])
    with hook.generate_config_file(eks_cluster_name=access["cluster"], pod_namespace=access["namespace"]) as path:
        yield path


@contextmanager
def api_client(access: ClusterAccess) -> Iterator[Any]:
    """A kubernetes ApiClient for the cluster."""
    from kubernetes import client, config

    with kubeconfig_path(access) as path:
        api = config.new_client_from_config(config_file=path, client_configuration=client.Configuration())
        try:
            yield api
        finally:
            api.close()

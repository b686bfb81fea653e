"""The names a deployment's chart takes, on the local control plane: free, ours (made by our
Helm release), or someone else's, which the deploy refuses at take_lease, naming each object."""

from __future__ import annotations

from llm_on_eks.kube.occupancy import HELM_RELEASE_ANNOTATION, foreign_occupants
from llm_on_eks.naming import MANAGED_BY_KEY, PROJECT


def _service(name: str, labels: dict | None = None, annotations: dict | None = None):
    from kubernetes import client

    return client.V1Service(metadata=client.V1ObjectMeta(name=name, labels=labels, annotations=annotations),
                            spec=client.V1ServiceSpec(ports=[client.V1ServicePort(port=8000)]))


def _deployment(name: str):
    from kubernetes import client

    labels = {"app": name}
    container = client.V1Container(name="web", image="nginx")
    return client.V1Deployment(
        metadata=client.V1ObjectMeta(name=name),
        spec=client.V1DeploymentSpec(selector=client.V1LabelSelector(match_labels=labels), template=client.V1PodTemplateSpec(
            metadata=client.V1ObjectMeta(labels=labels), spec=client.V1PodSpec(containers=[container]))))


def test_free_ours_and_someone_elses(sandbox_cluster, namespace):
    from kubernetes import client

    api = sandbox_cluster.api_client()
    assert foreign_occupants(api, namespace, "scout") == []
    # What our chart, installed by helm as release "scout", leaves on its objects.
    client.CoreV1Api(api).create_namespaced_service(namespace, _service(
        "scout", {MANAGED_BY_KEY: PROJECT}, {HELM_RELEASE_ANNOTATION: "scout"}))
    assert foreign_occupants(api, namespace, "scout") == []
    # Someone's own Deployment named like the release, and a Service another release of ours made.
    client.AppsV1Api(api).create_namespaced_deployment(namespace, _deployment("scout"))
    client.CoreV1Api(api).create_namespaced_service(namespace, _service(
        "maverick", {MANAGED_BY_KEY: PROJECT}, {HELM_RELEASE_ANNOTATION: "other"}))
    assert foreign_occupants(api, namespace, "scout") == [f"Deployment {namespace}/scout"]
    assert foreign_occupants(api, namespace, "maverick") == [f"Service {namespace}/maverick"]

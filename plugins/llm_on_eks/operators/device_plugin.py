"""The ``device_plugin`` step: the accelerator nodes advertise their devices before anything is
scheduled on them (``llm_on_eks.kube.device_plugins`` says why and how)."""

from __future__ import annotations

from typing import Any

from airflow.sdk.exceptions import AirflowFailException

from llm_on_eks.kube.access import api_client
from llm_on_eks.kube.device_plugins import (
    DevicesMissing,
    denied_message,
    ensure_device_plugin,
    image_repo,
    plugin_objects,
    wait_for_devices,
)
from llm_on_eks.operators.base import DeploymentStepOperator, kube_poll_s
from llm_on_eks.plan.types import KubernetesSection, ProfileSection

# The node group is ACTIVE before this step: what is left is pulling the plugin and registering.
DEVICE_WAIT_S = 600


class DevicePluginOperator(DeploymentStepOperator):
    """Make the accelerator nodes advertise their devices (llm_on_eks.kube.device_plugins), and
    fail here, naming the nodes and plugin pods, rather than leave serving pods Pending later.

    :param profile: the accelerator, how many nodes and how many devices each must advertise
    :param kubernetes: the nodes' selector and the extended resource they advertise
    :param wait_s: how long the nodes may take to advertise their devices
    :param nodepool: provision.ensure_nodepool's result: on EKS Auto Mode there is nothing to do
        here, the platform runs the plugin and launches the nodes when the serving pods ask
    """

    template_fields = (*DeploymentStepOperator.template_fields, "profile", "kubernetes", "nodepool")

    def __init__(self, *, profile: ProfileSection, kubernetes: KubernetesSection, wait_s: float = DEVICE_WAIT_S,
                 nodepool: Any = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.profile = profile
        self.kubernetes = kubernetes
        self.wait_s = wait_s
        self.nodepool = nodepool

    def describe(self) -> Any:
        accelerator = self.profile["accelerator"]
        return {"unless_a_daemonset_runs_image": image_repo(accelerator), "apply": plugin_objects(accelerator),
                "then_wait_up_to_s": self.wait_s,
                "until": f"{self.profile['nodes']} node(s) advertise {self.profile['accelerators_per_node']} "
                         f"{self.kubernetes['accelerator_resource']}"}

    def run(self, context: Any) -> Any:
        from kubernetes.client.exceptions import ApiException

        if (self.nodepool or {}).get("auto_mode"):
            # EKS user guide, "Deploy an accelerated workload": Auto Mode includes the NVIDIA and
            # Neuron device plugins; its nodes exist only once pods ask for them.
            return {"daemonset": None, "nodes": [], "action": f"none: EKS Auto Mode runs the device plugin on "
                                                              f"NodePool {self.nodepool['nodepool']}'s nodes"}

        with api_client(self.access) as api:
            result = ensure_device_plugin(api, self.profile["accelerator"])
            self.log.info("device plugin %s: %s", result["daemonset"] or "unknown", result["action"])
            try:
                nodes = wait_for_devices(api, self.profile, self.kubernetes, self.wait_s, kube_poll_s())
            except DevicesMissing as exc:
                raise AirflowFailException(str(exc)) from None
            except ApiException as exc:
                if exc.status != 403:
                    raise
                self.log.warning("whether the nodes advertise %s is unknown (%s); wait_ready will name "
                                 "pods that cannot be scheduled", self.kubernetes["accelerator_resource"],
                                 denied_message(exc))
                nodes = "unknown"
        return {**result, "nodes": nodes}

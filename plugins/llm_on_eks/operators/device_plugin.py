"""The ``device_plugin`` step: the accelerator nodes advertise their devices before anything is
scheduled on them (``llm_on_eks.kube.device_plugins`` says why and how)."""

from __future__ import annotations

from typing import Any

from llm_on_eks.operators.base import PlanStepOperator
from llm_on_eks.plan import Plan

# The node group is ACTIVE before this step: what is left is pulling the plugin and registering.
DEVICE_WAIT_S = 600


class DevicePluginOperator(PlanStepOperator):
    """Make the accelerator nodes advertise their devices (llm_on_eks.kube.device_plugins), and
    fail here, naming the nodes and plugin pods, rather than leave serving pods Pending later."""

    def __init__(self, *, wait_s: float = DEVICE_WAIT_S, **kwargs) -> None:
        super().__init__(**kwargs)
        self.wait_s = wait_s

    def describe(self, plan: Plan) -> Any:
        from llm_on_eks.kube.device_plugins import image_repo, plugin_objects

        accelerator = plan["profile"]["accelerator"]
        return {"unless_a_daemonset_runs_image": image_repo(accelerator), "apply": plugin_objects(accelerator),
                "then_wait_up_to_s": self.wait_s,
                "until": f"{plan['profile']['nodes']} node(s) advertise {plan['profile']['accelerators_per_node']} "
                         f"{plan['kubernetes']['accelerator_resource']}"}

    def run(self, plan: Plan, context: Any) -> Any:
        from airflow.sdk.exceptions import AirflowFailException
        from kubernetes.client.exceptions import ApiException

        from llm_on_eks.kube.access import api_client, cluster_access
        from llm_on_eks.kube.device_plugins import (
            DevicesMissing,
            denied_message,
            ensure_device_plugin,
            wait_for_devices,
        )

        with api_client(cluster_access(plan)) as api:
            result = ensure_device_plugin(api, plan["profile"]["accelerator"])
            self.log.info("device plugin %s: %s", result["daemonset"] or "unknown", result["action"])
            try:
                nodes = wait_for_devices(api, plan, self.wait_s)
            except DevicesMissing as exc:
                raise AirflowFailException(str(exc)) from None
            except ApiException as exc:
                if exc.status != 403:
                    raise
                self.log.warning("whether the nodes advertise %s is unknown (%s); wait_ready will name "
                                 "pods that cannot be scheduled", plan["kubernetes"]["accelerator_resource"],
                                 denied_message(exc))
                nodes = "unknown"
        return {**result, "nodes": nodes}

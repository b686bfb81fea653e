"""Cluster-side steps of a deployment: HF token secret, weight preparation, Helm, readiness."""

from __future__ import annotations

import time
from datetime import UTC
from typing import Any

from airflow.configuration import conf

from llm_on_eks.operators.base import PlanStepOperator

DEFAULT_DEFERRABLE = conf.getboolean("operators", "default_deferrable", fallback=False)
READY_POLL_S = 5
STAGING_BUDGET_S = 6 * 3600
# The marker is written by the Job's last command; through FSx's data repository association it
# reaches S3 only after the export, which can lag the Job's completion.
MARKER_WAIT_S = 300
MARKER_POLL_S = 2
# The node group is ACTIVE before this step: what is left is pulling the plugin and registering.
DEVICE_WAIT_S = 600


class HfTokenSecretOperator(PlanStepOperator):
    """Create or update the HF token Secret from the token source; the value is never shown."""

    def describe(self, plan: dict[str, Any]) -> Any:
        from llm_on_eks.kube.manifests import hf_token_secret

        source = plan["hf_token"]
        origin = (f"Secrets Manager secret {source['secrets_manager_id']}" if source["secrets_manager_id"]
                  else f"Airflow connection {source['conn_id']} (password)")
        return {"token_from": origin, "apply": hf_token_secret(plan)}

    def run(self, plan: dict[str, Any], context: Any) -> Any:
        from llm_on_eks.aws.hf_token import read_hf_token
        from llm_on_eks.kube.access import api_client
        from llm_on_eks.kube.hf_secret import ensure_secret
        from llm_on_eks.kube.namespace import ensure_namespace

        secret, namespace = plan["hf_token"]["k8s_secret"], plan["kubernetes"]["namespace"]
        with api_client(plan) as api:
            ensure_namespace(api, plan)
            action = ensure_secret(api, plan, read_hf_token(plan))
        self.log.info("secret %s/%s (key %s) %s", namespace, secret["name"], secret["key"], action)
        return {"namespace": namespace, "secret": secret["name"], "key": secret["key"], "action": action}


class DevicePluginOperator(PlanStepOperator):
    """Make the accelerator nodes advertise their devices (llm_on_eks.kube.device_plugins), and
    fail here, naming the nodes and plugin pods, rather than leave serving pods Pending later."""

    def __init__(self, *, wait_s: float = DEVICE_WAIT_S, **kwargs) -> None:
        super().__init__(**kwargs)
        self.wait_s = wait_s

    def describe(self, plan: dict[str, Any]) -> Any:
        from llm_on_eks.kube.device_plugins import image_repo, plugin_objects

        accelerator = plan["profile"]["accelerator"]
        return {"unless_a_daemonset_runs_image": image_repo(accelerator), "apply": plugin_objects(accelerator),
                "then_wait_up_to_s": self.wait_s,
                "until": f"{plan['profile']['nodes']} node(s) advertise {plan['profile']['accelerators_per_node']} "
                         f"{plan['kubernetes']['accelerator_resource']}"}

    def run(self, plan: dict[str, Any], context: Any) -> Any:
        from airflow.sdk.exceptions import AirflowFailException
        from kubernetes.client.exceptions import ApiException

        from llm_on_eks.kube.access import api_client
        from llm_on_eks.kube.device_plugins import (
            DevicesMissing,
            denied_message,
            ensure_device_plugin,
            wait_for_devices,
        )

        with api_client(plan) as api:
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


class _MarkedJobOperator(PlanStepOperator):
    """A Job whose completion marker in S3 makes it a no-op: skip when the marker exists, else run
    the Job (adopting one an earlier try created), wait (deferred or in the worker) and require
    the marker the Job writes last."""

    def __init__(self, *, deferrable: bool = DEFAULT_DEFERRABLE, **kwargs) -> None:
        super().__init__(**kwargs)
        self.deferrable = deferrable

    def job(self, plan: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    def marker_key(self, plan: dict[str, Any]) -> str:
        raise NotImplementedError

    def budget_s(self, plan: dict[str, Any]) -> int:
        raise NotImplementedError

    def prepare(self, api: Any, plan: dict[str, Any]) -> None:
        """Objects the Job needs besides its namespace."""

    def _s3(self, plan: dict[str, Any]) -> Any:
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook

        return S3Hook(aws_conn_id=plan["aws"]["conn_id"], region_name=plan["aws"]["region"])

    def run(self, plan: dict[str, Any], context: Any) -> Any:
        from llm_on_eks.kube.access import api_client
        from llm_on_eks.kube.jobs import JobFailed, ensure_job, wait_for_job
        from llm_on_eks.kube.namespace import ensure_namespace
        from llm_on_eks.triggers.kube import KubeWaitTrigger

        bucket, key = plan["storage"]["artifact_bucket"], self.marker_key(plan)
        if self._s3(plan).check_for_key(key, bucket):
            self.log.info("s3://%s/%s exists: nothing to do", bucket, key)
            return {"skipped": True, "marker": f"s3://{bucket}/{key}"}
        job, budget = self.job(plan), self.budget_s(plan)
        namespace, name = job["metadata"]["namespace"], job["metadata"]["name"]
        with api_client(plan) as api:
            ensure_namespace(api, plan)
            self.prepare(api, plan)
            action = ensure_job(api, job)
            self.log.info("job %s/%s %s; waiting up to %s s", namespace, name, action, budget)
            if self.deferrable:
                self.defer(trigger=KubeWaitTrigger(plan=plan, deadline=time.time() + budget, budget_s=budget,
                                                   job_name=name),
                           method_name="execute_complete")
            try:
                result = wait_for_job(api, namespace, name, budget)
            except JobFailed as exc:
                self._give_up(plan, name, str(exc))
        return self._finish(plan, result)

    def execute_complete(self, context: Any, event: dict[str, Any]) -> Any:
        if event["status"] != "success":
            self._give_up(self.plan, self.job(self.plan)["metadata"]["name"], event["message"])
        return self._finish(self.plan, event["result"])

    def _give_up(self, plan: dict[str, Any], name: str, why: str) -> None:
        """Fail the task, stopping a Job still pending or running: nobody would watch it."""
        from airflow.sdk.exceptions import AirflowFailException

        from llm_on_eks.kube.access import api_client
        from llm_on_eks.kube.jobs import stop_unfinished

        with api_client(plan) as api:
            if stop_unfinished(api, plan["kubernetes"]["namespace"], name):
                why += "\n(the unfinished job was deleted)"
        raise AirflowFailException(why)

    def _finish(self, plan: dict[str, Any], result: dict[str, Any]) -> dict[str, Any]:
        from airflow.sdk.exceptions import AirflowFailException

        bucket, key = plan["storage"]["artifact_bucket"], self.marker_key(plan)
        s3, deadline = self._s3(plan), time.monotonic() + MARKER_WAIT_S
        while not s3.check_for_key(key, bucket):
            if time.monotonic() > deadline:
                raise AirflowFailException(f"job {result['job']} succeeded but s3://{bucket}/{key} never appeared")
            time.sleep(MARKER_POLL_S)
        return {"skipped": False, "marker": f"s3://{bucket}/{key}", **result}


class NeuronCompileOperator(_MarkedJobOperator):
    """Compile for Neuron once per content hash (model, revision, Neuron config, image)."""

    def enabled(self, plan: dict[str, Any]) -> bool:
        return plan["neuron"] is not None

    def describe(self, plan: dict[str, Any]) -> Any:
        return {"skip_if_exists": f"s3://{plan['storage']['artifact_bucket']}/{self.marker_key(plan)}",
                "create": self.job(plan), "wait_up_to_s": self.budget_s(plan), "deferrable": self.deferrable}

    def job(self, plan: dict[str, Any]) -> dict[str, Any]:
        from llm_on_eks.kube.manifests import neuron_compile_job

        return neuron_compile_job(plan)

    def marker_key(self, plan: dict[str, Any]) -> str:
        return plan["neuron"]["marker_key"]

    def budget_s(self, plan: dict[str, Any]) -> int:
        return plan["neuron"]["budget_s"]


class StageWeightsToFsxOperator(_MarkedJobOperator):
    """Download the weights onto FSx once per repo and revision, through a static PV/PVC."""

    template_fields = ("plan", "fsx")

    def __init__(self, *, fsx: Any = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.fsx = fsx

    def enabled(self, plan: dict[str, Any]) -> bool:
        return plan["storage"]["fsx"] is not None

    def describe(self, plan: dict[str, Any]) -> Any:
        from llm_on_eks.kube.manifests import fsx_volume

        handles = {"file_system_id": "<from storage.ensure_fsx>", "dns_name": "<from storage.ensure_fsx>",
                   "mount_name": "<from storage.ensure_fsx>"}
        return {"skip_if_exists": f"s3://{plan['storage']['artifact_bucket']}/{self.marker_key(plan)}",
                "apply": fsx_volume(plan, handles), "create": self.job(plan), "deferrable": self.deferrable}

    def job(self, plan: dict[str, Any]) -> dict[str, Any]:
        from llm_on_eks.kube.manifests import stage_weights_job

        return stage_weights_job(plan)

    def marker_key(self, plan: dict[str, Any]) -> str:
        return plan["storage"]["fsx"]["marker_key"]

    def budget_s(self, plan: dict[str, Any]) -> int:
        return STAGING_BUDGET_S

    def prepare(self, api: Any, plan: dict[str, Any]) -> None:
        from llm_on_eks.kube.manifests import fsx_volume
        from llm_on_eks.kube.volumes import ensure_static_volume

        pv, pvc = fsx_volume(plan, self.fsx)
        self.log.info("FSx volume: %s", ensure_static_volume(api, pv, pvc))


class HelmDeployOperator(PlanStepOperator):
    """`helm upgrade --install` of the release named after the deployment."""

    def describe(self, plan: dict[str, Any]) -> Any:
        from llm_on_eks.kube.helm_values import helm_command, helm_values

        return {"command": helm_command(plan), "values": helm_values(plan),
                "on_failure": "roll back to the last revision that became ready"}

    def run(self, plan: dict[str, Any], context: Any) -> Any:
        """Upgrade only when the values differ: a re-run of a finished deployment changes nothing."""
        from llm_on_eks.kube.access import kubeconfig_path
        from llm_on_eks.kube.helm import Helm
        from llm_on_eks.kube.helm_values import helm_values

        release = plan["kubernetes"]["release"]
        values = helm_values(plan)
        with kubeconfig_path(plan) as kubeconfig:
            helm = Helm(kubeconfig, plan["kubernetes"]["namespace"])
            history = helm.history(release)
            deployed = [h["revision"] for h in history if h["status"] == "deployed"]
            if deployed and helm.deployed_values(release) == values:
                self.log.info("release %s revision %s already has these values", release, deployed[-1])
                return {"release": release, "revision": deployed[-1], "previous": deployed[-1], "changed": False}
            helm.upgrade_install(plan, values)
            revision = helm.history(release)[-1]["revision"]
        self.log.info("release %s: revision %s installed", release, revision)
        return {"release": release, "revision": revision, "previous": deployed[-1] if deployed else None,
                "changed": True}


class WaitReadyOperator(PlanStepOperator):
    """Wait for the serving pods to be ready within the catalog's start-up budget; roll the
    release back to its previous revision when the new one cannot become ready."""

    template_fields = ("plan", "deploy")

    def __init__(self, *, deploy: Any = None, deferrable: bool = DEFAULT_DEFERRABLE, **kwargs) -> None:
        super().__init__(**kwargs)
        self.deploy = deploy
        self.deferrable = deferrable

    def describe(self, plan: dict[str, Any]) -> Any:
        kind = "LeaderWorkerSet" if plan["profile"]["nodes"] > 1 else "Deployment"
        return {"wait_for": f"{kind} {plan['kubernetes']['namespace']}/{plan['kubernetes']['release']} ready",
                "budget_s": plan["profile"]["startup_budget_s"], "deferrable": self.deferrable}

    def run(self, plan: dict[str, Any], context: Any) -> Any:
        from datetime import datetime

        from llm_on_eks.kube import readiness
        from llm_on_eks.kube.access import api_client
        from llm_on_eks.triggers.kube import KubeWaitTrigger

        budget = plan["profile"]["startup_budget_s"]
        if self.deferrable:
            self.defer(trigger=KubeWaitTrigger(plan=plan, deadline=time.time() + budget, budget_s=budget),
                       method_name="execute_complete")
        deadline = time.monotonic() + budget
        with api_client(plan) as api:
            while True:
                state = readiness.check(api, plan, datetime.now(UTC))
                if state.ready:
                    return self._ready()
                if state.unschedulable or time.monotonic() > deadline:
                    self._fail(plan, state.unschedulable, state.detail)
                time.sleep(READY_POLL_S)

    def execute_complete(self, context: Any, event: dict[str, Any]) -> Any:
        if event["status"] == "success":
            return self._ready()
        self._fail(self.plan, event["unschedulable"], event["detail"])

    def _ready(self) -> dict[str, Any]:
        return {"ready": True, "revision": (self.deploy or {}).get("revision")}

    def _fail(self, plan: dict[str, Any], unschedulable: list[str], detail: str) -> None:
        from airflow.sdk.exceptions import AirflowFailException

        why = (f"pods cannot be scheduled: {', '.join(unschedulable)}" if unschedulable
               else f"not ready within the {plan['profile']['startup_budget_s']} s start-up budget")
        rolled_back = self._roll_back(plan)
        raise AirflowFailException(f"release {plan['kubernetes']['release']} {why}{rolled_back}\n{detail}")

    def _roll_back(self, plan: dict[str, Any]) -> str:
        from llm_on_eks.kube.access import kubeconfig_path
        from llm_on_eks.kube.helm import Helm

        previous = (self.deploy or {}).get("previous")
        if not (self.deploy or {}).get("changed") or previous is None:
            return ""
        with kubeconfig_path(plan) as kubeconfig:
            Helm(kubeconfig, plan["kubernetes"]["namespace"]).rollback(plan["kubernetes"]["release"], previous)
        self.log.warning("rolled release %s back to revision %s", plan["kubernetes"]["release"], previous)
        return f"; rolled back to revision {previous}"

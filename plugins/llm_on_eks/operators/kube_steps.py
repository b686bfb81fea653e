"""Cluster-side steps of a deployment: HF token secret, weight preparation, Helm, readiness."""

from __future__ import annotations

import time
from datetime import UTC
from typing import Any

from llm_on_eks.operators.base import PlanStepOperator

READY_POLL_S = 5
STAGING_BUDGET_S = 6 * 3600
# The marker is written by the Job's last command; through FSx's data repository association it
# reaches S3 only after the export, which can lag the Job's completion.
MARKER_WAIT_S = 300
MARKER_POLL_S = 2


class HfTokenSecretOperator(PlanStepOperator):
    """Create or update the HF token Secret from the token source; the value is never shown."""

    def describe(self, plan: dict[str, Any]) -> Any:
        from llm_on_eks.kube.manifests import hf_token_secret

        source = plan["hf_token"]
        origin = (f"Secrets Manager secret {source['secrets_manager_id']}" if source["secrets_manager_id"]
                  else f"Airflow connection {source['conn_id']} (password)")
        return {"token_from": origin, "apply": hf_token_secret(plan)}

    def run(self, plan: dict[str, Any], context: Any) -> Any:
        import base64

        from kubernetes import client
        from kubernetes.client.exceptions import ApiException

        from llm_on_eks.aws.hf_token import read_hf_token
        from llm_on_eks.kube.access import api_client
        from llm_on_eks.kube.manifests import hf_token_secret

        secret = plan["hf_token"]["k8s_secret"]
        namespace = plan["kubernetes"]["namespace"]
        token = read_hf_token(plan)
        with api_client(plan) as api:
            core = client.CoreV1Api(api)
            _ensure_namespace(core, namespace, plan)
            body = hf_token_secret(plan, token)
            try:
                current = core.read_namespaced_secret(secret["name"], namespace)
            except ApiException as exc:
                if exc.status != 404:
                    raise
                core.create_namespaced_secret(namespace, body)
                action = "created"
            else:
                stored = (current.data or {}).get(secret["key"])
                if stored == base64.b64encode(token.encode()).decode():
                    action = "unchanged"
                else:
                    core.replace_namespaced_secret(secret["name"], namespace, body)
                    action = "updated"
        self.log.info("secret %s/%s (key %s) %s", namespace, secret["name"], secret["key"], action)
        return {"namespace": namespace, "secret": secret["name"], "key": secret["key"], "action": action}


class NeuronCompileOperator(PlanStepOperator):
    """Compile for Neuron once per content hash; a marker in S3 makes later runs a no-op."""

    def enabled(self, plan: dict[str, Any]) -> bool:
        return plan["neuron"] is not None

    def describe(self, plan: dict[str, Any]) -> Any:
        from llm_on_eks.kube.manifests import neuron_compile_job

        neuron = plan["neuron"]
        return {"skip_if_exists": f"s3://{plan['storage']['artifact_bucket']}/{neuron['marker_key']}",
                "create": neuron_compile_job(plan), "wait_up_to_s": neuron["budget_s"]}

    def run(self, plan: dict[str, Any], context: Any) -> Any:
        from llm_on_eks.kube.manifests import neuron_compile_job

        neuron = plan["neuron"]
        return _run_once(self, plan, neuron_compile_job(plan), neuron["marker_key"], neuron["budget_s"])


class StageWeightsToFsxOperator(PlanStepOperator):
    """Download the weights onto FSx once per repo and revision; a marker makes later runs a no-op."""

    template_fields = ("plan", "fsx")

    def __init__(self, *, fsx: Any = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.fsx = fsx

    def enabled(self, plan: dict[str, Any]) -> bool:
        return plan["storage"]["fsx"] is not None

    def describe(self, plan: dict[str, Any]) -> Any:
        from llm_on_eks.kube.manifests import fsx_volume, stage_weights_job

        handles = {"file_system_id": "<from storage.ensure_fsx>", "dns_name": "<from storage.ensure_fsx>",
                   "mount_name": "<from storage.ensure_fsx>"}
        return {"skip_if_exists": f"s3://{plan['storage']['artifact_bucket']}/{plan['storage']['fsx']['marker_key']}",
                "apply": fsx_volume(plan, handles), "create": stage_weights_job(plan)}

    def run(self, plan: dict[str, Any], context: Any) -> Any:
        from kubernetes import client, utils
        from kubernetes.utils import FailToCreateError

        from llm_on_eks.kube.access import api_client
        from llm_on_eks.kube.manifests import fsx_volume, stage_weights_job

        with api_client(plan) as api:
            _ensure_namespace(client.CoreV1Api(api), plan["kubernetes"]["namespace"], plan)
            for obj in fsx_volume(plan, self.fsx):
                try:
                    utils.create_from_dict(api, obj, namespace=plan["kubernetes"]["namespace"])
                except FailToCreateError as exc:
                    if any(e.status != 409 for e in exc.api_exceptions):
                        raise
        return _run_once(self, plan, stage_weights_job(plan), plan["storage"]["fsx"]["marker_key"], STAGING_BUDGET_S)


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

    def __init__(self, *, deploy: Any = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.deploy = deploy

    def describe(self, plan: dict[str, Any]) -> Any:
        kind = "LeaderWorkerSet" if plan["profile"]["nodes"] > 1 else "Deployment"
        return {"wait_for": f"{kind} {plan['kubernetes']['namespace']}/{plan['kubernetes']['release']} ready",
                "budget_s": plan["profile"]["startup_budget_s"], "deferrable": True}

    def run(self, plan: dict[str, Any], context: Any) -> Any:
        from datetime import datetime

        from airflow.sdk.exceptions import AirflowFailException

        from llm_on_eks.kube import readiness
        from llm_on_eks.kube.access import api_client

        budget = plan["profile"]["startup_budget_s"]
        deadline = time.monotonic() + budget
        with api_client(plan) as api:
            while True:
                state = readiness.check(api, plan, datetime.now(UTC))
                if state.ready:
                    return {"ready": True, "revision": (self.deploy or {}).get("revision")}
                if state.unschedulable or time.monotonic() > deadline:
                    break
                time.sleep(READY_POLL_S)
        why = (f"pods cannot be scheduled: {', '.join(state.unschedulable)}" if state.unschedulable
               else f"not ready within the {budget} s start-up budget")
        rolled_back = self._roll_back(plan)
        raise AirflowFailException(f"release {plan['kubernetes']['release']} {why}{rolled_back}\n{state.detail}")

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


def _run_once(operator: PlanStepOperator, plan: dict[str, Any], job: dict[str, Any], marker_key: str,
              budget_s: int) -> dict[str, Any]:
    """A Job whose completion marker in S3 makes it a no-op: skip when present, else run the Job
    (adopting one an earlier try created) and require the marker it writes."""
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook
    from airflow.sdk.exceptions import AirflowFailException
    from kubernetes import client

    from llm_on_eks.kube.access import api_client
    from llm_on_eks.kube.jobs import JobFailed, ensure_job, wait_for_job

    s3 = S3Hook(aws_conn_id=plan["aws"]["conn_id"], region_name=plan["aws"]["region"])
    bucket = plan["storage"]["artifact_bucket"]
    marker = f"s3://{bucket}/{marker_key}"
    if s3.check_for_key(marker_key, bucket):
        operator.log.info("%s exists: nothing to do", marker)
        return {"skipped": True, "marker": marker}
    namespace, name = job["metadata"]["namespace"], job["metadata"]["name"]
    with api_client(plan) as api:
        _ensure_namespace(client.CoreV1Api(api), namespace, plan)
        action = ensure_job(api, job)
        operator.log.info("job %s/%s %s; waiting up to %s s", namespace, name, action, budget_s)
        try:
            result = wait_for_job(api, namespace, name, budget_s)
        except JobFailed as exc:
            raise AirflowFailException(str(exc)) from None
    deadline = time.monotonic() + MARKER_WAIT_S
    while not s3.check_for_key(marker_key, bucket):
        if time.monotonic() > deadline:
            raise AirflowFailException(f"job {namespace}/{name} succeeded but {marker} never appeared")
        time.sleep(MARKER_POLL_S)
    return {"skipped": False, "marker": marker, "action": action, **result}


def _ensure_namespace(core: Any, namespace: str, plan: dict[str, Any]) -> None:
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    try:
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace,
                                                                             labels=dict(plan["kubernetes"]["labels"]))))
    except ApiException as exc:
        if exc.status != 409:
            raise

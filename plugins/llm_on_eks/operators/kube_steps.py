"""Cluster-side steps of a deployment: HF token secret, weight preparation, Helm, readiness."""

from __future__ import annotations

from typing import Any

from llm_on_eks.operators.base import PlanStepOperator


class HfTokenSecretOperator(PlanStepOperator):
    """Create or update the HF token Secret from the token source; the value is never shown."""

    def describe(self, plan: dict[str, Any]) -> Any:
        from llm_on_eks.kube.manifests import hf_token_secret

        source = plan["hf_token"]
        origin = (f"Secrets Manager secret {source['secrets_manager_id']}" if source["secrets_manager_id"]
                  else f"Airflow connection {source['conn_id']} (password)")
        return {"token_from": origin, "apply": hf_token_secret(plan)}


class NeuronCompileOperator(PlanStepOperator):
    """Compile for Neuron once per content hash; a marker in S3 makes later runs a no-op."""

    def describe(self, plan: dict[str, Any]) -> Any:
        from llm_on_eks.kube.manifests import neuron_compile_job

        neuron = plan["neuron"]
        return {"skip_if_exists": f"s3://{plan['storage']['artifact_bucket']}/{neuron['marker_key']}",
                "create": neuron_compile_job(plan), "wait_up_to_s": neuron["budget_s"]}


class StageWeightsToFsxOperator(PlanStepOperator):
    """Download the weights onto FSx once per repo and revision; a marker makes later runs a no-op."""

    template_fields = ("plan", "fsx")

    def __init__(self, *, fsx: Any = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.fsx = fsx

    def describe(self, plan: dict[str, Any]) -> Any:
        from llm_on_eks.kube.manifests import fsx_volume, stage_weights_job

        handles = {"file_system_id": "<from storage.ensure_fsx>", "dns_name": "<from storage.ensure_fsx>",
                   "mount_name": "<from storage.ensure_fsx>"}
        return {"skip_if_exists": f"s3://{plan['storage']['artifact_bucket']}/{plan['storage']['fsx']['marker_key']}",
                "apply": fsx_volume(plan, handles), "create": stage_weights_job(plan)}


class HelmDeployOperator(PlanStepOperator):
    """`helm upgrade --install` of the release named after the deployment."""

    def describe(self, plan: dict[str, Any]) -> Any:
        from llm_on_eks.kube.helm_values import helm_command, helm_values

        return {"command": helm_command(plan), "values": helm_values(plan),
                "on_failure": "roll back to the last revision that became ready"}


class WaitReadyOperator(PlanStepOperator):
    """Wait for the serving pods to be ready within the catalog's start-up budget."""

    def describe(self, plan: dict[str, Any]) -> Any:
        kind = "LeaderWorkerSet" if plan["profile"]["nodes"] > 1 else "Deployment"
        return {"wait_for": f"{kind} {plan['kubernetes']['namespace']}/{plan['kubernetes']['release']} ready",
                "budget_s": plan["profile"]["startup_budget_s"], "deferrable": True}

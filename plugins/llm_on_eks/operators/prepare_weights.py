"""The ``prepare_weights`` task group: compile for Neuron, stage weights onto FSx, or nothing
(vLLM downloads from the hub), chosen by the profile's weight path.

The compile and staging Jobs are made idempotent by a completion marker in S3: its presence
makes the step a no-op, a retry adopts the Job an earlier try created, and the marker is
required after the Job succeeds (the Job writes it last).
"""

from __future__ import annotations

import time
from typing import Any

from airflow.sdk import task
from airflow.sdk.configuration import conf

from llm_on_eks.operators.base import LEASE_MARGIN_S, PlanStepOperator
from llm_on_eks.plan import Plan

DEFAULT_DEFERRABLE = conf.getboolean("operators", "default_deferrable", fallback=False)
# The marker is written by the Job's last command; through FSx's data repository association it
# reaches S3 only after the export, which can lag the Job's completion.
MARKER_WAIT_S = 300
MARKER_POLL_S = 2
WEIGHT_PREP_TASKS = {
    "neuron_compiled": "prepare_weights.neuron_compile",
    "fsx": "prepare_weights.stage_to_fsx",
    "hub": "prepare_weights.weights_from_hub",
}


@task.branch
def choose_weight_prep(plan: Plan) -> str:
    """Neuron profiles compile, FSx profiles stage weights, small models load from the hub."""
    return WEIGHT_PREP_TASKS[plan["profile"]["weights"]]


@task
def weights_from_hub(plan: Plan) -> dict[str, Any]:
    """Nothing to prepare: vLLM downloads the weights at start-up with the HF token."""
    return {"weights": "hub", "hf_repo": plan["model"]["hf_repo"], "revision": plan["model"]["revision"]}


class _MarkedJobOperator(PlanStepOperator):
    """A Job whose completion marker in S3 makes it a no-op: skip when the marker exists, else run
    the Job (adopting one an earlier try created), wait (deferred or in the worker) and require
    the marker the Job writes last."""

    def __init__(self, *, deferrable: bool = DEFAULT_DEFERRABLE, **kwargs) -> None:
        super().__init__(**kwargs)
        self.deferrable = deferrable

    def job(self, plan: Plan) -> dict[str, Any]:
        raise NotImplementedError

    def marker(self, plan: Plan) -> tuple[str, int]:
        """The marker's S3 key and the Job's budget in seconds (its activeDeadlineSeconds too)."""
        raise NotImplementedError

    def lease_hold_s(self, plan: Plan) -> int:
        return self.marker(plan)[1] + 300 + LEASE_MARGIN_S

    def prepare(self, api: Any, plan: Plan) -> None:
        """Objects the Job needs besides its namespace."""

    def _s3(self, plan: Plan) -> Any:
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook

        return S3Hook(aws_conn_id=plan["aws"]["conn_id"], region_name=plan["aws"]["region"])

    def describe_job(self, plan: Plan) -> dict[str, Any]:
        key, budget = self.marker(plan)
        return {"skip_if_exists": f"s3://{plan['storage']['artifact_bucket']}/{key}", "create": self.job(plan),
                "wait_up_to_s": budget, "deferrable": self.deferrable}

    def run(self, plan: Plan, context: Any) -> Any:
        from llm_on_eks.kube.access import api_client, cluster_access
        from llm_on_eks.kube.jobs import JobFailed, ensure_job, wait_for_job
        from llm_on_eks.kube.namespace import ensure_namespace
        from llm_on_eks.triggers.kube import JobCompleteTrigger

        bucket, (key, budget) = plan["storage"]["artifact_bucket"], self.marker(plan)
        if self._s3(plan).check_for_key(key, bucket):
            self.log.info("s3://%s/%s exists: nothing to do", bucket, key)
            return {"skipped": True, "marker": f"s3://{bucket}/{key}"}
        job = self.job(plan)
        namespace, name = job["metadata"]["namespace"], job["metadata"]["name"]
        with api_client(cluster_access(plan)) as api:
            ensure_namespace(api, plan)
            self.prepare(api, plan)
            action = ensure_job(api, job)
            self.log.info("job %s/%s %s; waiting up to %s s", namespace, name, action, budget)
            if self.deferrable:
                self.defer_to(JobCompleteTrigger(access=cluster_access(plan), job_name=name,
                                                 deadline=time.time() + budget, budget_s=budget),
                              timeout_s=budget + 300)
            try:
                result = wait_for_job(api, namespace, name, budget)
            except JobFailed as exc:
                self.wait_failed(plan, context, str(exc))
        return self._finish(plan, result)

    def resume(self, plan: Plan, context: Any, event: dict[str, Any]) -> Any:
        return self._finish(plan, event["result"])

    def wait_failed(self, plan: Plan, context: Any, why: str, event: dict[str, Any] | None = None) -> None:
        """Fail the task, stopping a Job still pending or running: nobody would watch it."""
        from airflow.sdk.exceptions import AirflowFailException

        from llm_on_eks.kube.access import api_client, cluster_access
        from llm_on_eks.kube.jobs import stop_unfinished

        with api_client(cluster_access(plan)) as api:
            if stop_unfinished(api, plan["kubernetes"]["namespace"], self.job(plan)["metadata"]["name"]):
                why += "\n(the unfinished job was deleted)"
        raise AirflowFailException(why)

    def _finish(self, plan: Plan, result: dict[str, Any]) -> dict[str, Any]:
        from airflow.sdk.exceptions import AirflowFailException

        bucket, (key, _) = plan["storage"]["artifact_bucket"], self.marker(plan)
        s3, deadline = self._s3(plan), time.monotonic() + MARKER_WAIT_S
        while not s3.check_for_key(key, bucket):
            if time.monotonic() > deadline:
                raise AirflowFailException(f"job {result['job']} succeeded but s3://{bucket}/{key} never appeared")
            time.sleep(MARKER_POLL_S)
        return {"skipped": False, "marker": f"s3://{bucket}/{key}", **result}


class NeuronCompileOperator(_MarkedJobOperator):
    """Compile for Neuron once per content hash (model, revision, Neuron config, image)."""

    def enabled(self, plan: Plan) -> bool:
        return plan["neuron"] is not None

    def describe(self, plan: Plan) -> Any:
        return self.describe_job(plan)

    def job(self, plan: Plan) -> dict[str, Any]:
        from llm_on_eks.kube.manifests import neuron_compile_job

        return neuron_compile_job(plan)

    def marker(self, plan: Plan) -> tuple[str, int]:
        return plan["neuron"]["marker_key"], plan["neuron"]["budget_s"]


class StageWeightsToFsxOperator(_MarkedJobOperator):
    """Download the weights onto FSx once per repo and revision, through a static PV/PVC."""

    template_fields = (*_MarkedJobOperator.template_fields, "fsx")

    def __init__(self, *, fsx: Any = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.fsx = fsx

    def enabled(self, plan: Plan) -> bool:
        return plan["storage"]["fsx"] is not None

    def describe(self, plan: Plan) -> Any:
        from llm_on_eks.kube.manifests import fsx_volume

        handles = {"file_system_id": "<from storage.ensure_fsx>", "dns_name": "<from storage.ensure_fsx>",
                   "mount_name": "<from storage.ensure_fsx>"}
        return {**self.describe_job(plan), "apply": fsx_volume(plan, handles)}

    def job(self, plan: Plan) -> dict[str, Any]:
        from llm_on_eks.kube.manifests import stage_weights_job

        return stage_weights_job(plan)

    def marker(self, plan: Plan) -> tuple[str, int]:
        return plan["storage"]["fsx"]["marker_key"], plan["storage"]["fsx"]["budget_s"]

    def prepare(self, api: Any, plan: Plan) -> None:
        from llm_on_eks.kube.manifests import fsx_volume
        from llm_on_eks.kube.volumes import ensure_static_volume

        pv, pvc = fsx_volume(plan, self.fsx)
        self.log.info("FSx volume: %s", ensure_static_volume(api, pv, pvc))

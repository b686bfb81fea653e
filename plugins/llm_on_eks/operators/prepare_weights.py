"""The ``prepare_weights`` task group: compile for Neuron, stage weights onto FSx or into S3 (to be
streamed), or nothing (vLLM downloads from the hub), chosen by the profile's weight source.

The compile and staging Jobs are made idempotent by a completion marker in S3: its presence
makes the step a no-op, a retry adopts the Job an earlier try created, and the marker is
required after the Job succeeds (the Job writes it last).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from airflow.sdk import task
from airflow.sdk.exceptions import AirflowFailException

from llm_on_eks.kube.access import api_client
from llm_on_eks.kube.jobs import JobFailed, ensure_job, stop_unfinished, wait_for_job
from llm_on_eks.kube.manifests import fsx_volume, neuron_compile_job, stage_weights_job, stage_weights_to_s3_job
from llm_on_eks.kube.namespace import ensure_namespace
from llm_on_eks.kube.volumes import ensure_static_volume, wait_bound
from llm_on_eks.operators.aws_wait import S3_HOOK, AwsStepOperator
from llm_on_eks.operators.base import LEASE_MARGIN_S, WaitingStepOperator, kube_poll_s
from llm_on_eks.plan.types import (
    FsxSection,
    ModelSection,
    NeuronSection,
    ProfileSection,
    ReleaseSpec,
    S3StreamSection,
    StorageSection,
)

if TYPE_CHECKING:  # the hook's type, named as a string below: imported at run time only
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook  # noqa: F401

# The marker is written by the Job's last command; through FSx's data repository association it
# reaches S3 only after the export, which can lag the Job's completion.
MARKER_WAIT_S = 300
MARKER_POLL_S = 2
# The FSx claim binds within the volume binder's 15 s resync (kube.volumes.wait_bound); the Job
# is created after that.
BIND_WAIT_S = 30
WEIGHT_PREP_TASKS = {
    "neuron_compiled": "prepare_weights.neuron_compile",
    "fsx": "prepare_weights.stage_to_fsx",
    "s3_stream": "prepare_weights.stage_to_s3",
    "hub": "prepare_weights.weights_from_hub",
}


@task.branch
def choose_weight_prep(profile: ProfileSection) -> str:
    """Neuron profiles compile, FSx and S3-streaming profiles stage weights, hub ones have nothing to do."""
    return WEIGHT_PREP_TASKS[profile["weights"]]


@task
def weights_from_hub(model: ModelSection) -> dict[str, Any]:
    """Nothing to prepare: vLLM downloads the weights at start-up with the HF token."""
    return {"weights": "hub", "hf_repo": model["hf_repo"], "revision": model["revision"]}


class _MarkedJobOperator(AwsStepOperator["S3Hook"], WaitingStepOperator):
    """A Job whose completion marker in S3 makes it a no-op: skip when the marker exists, else run
    the Job (adopting one an earlier try created), wait (deferred or in the worker) and require
    the marker the Job writes last.

    :param release: what the serving pods run: the Job runs their image, flags and token
    :param model: the model repository and revision the Job fetches
    :param storage: the artifact bucket the marker is written to (and the FSx file system)
    """

    aws_hook_class = S3_HOOK
    template_fields = (*AwsStepOperator.template_fields, "release", "model", "storage")

    def __init__(self, *, release: ReleaseSpec, model: ModelSection, storage: StorageSection, **kwargs) -> None:
        super().__init__(**kwargs)
        self.release = release
        self.model = model
        self.storage = storage

    @property
    def spec(self) -> NeuronSection | FsxSection | S3StreamSection | None:
        """The plan's section for this Job (None: the profile takes another path, the step skips)."""
        raise NotImplementedError

    def job(self) -> dict[str, Any]:
        raise NotImplementedError

    def enabled(self) -> bool:
        return self.spec is not None

    def describe(self) -> Any:
        return self.describe_job()

    def marker(self) -> tuple[str, int]:
        """The marker's S3 key and the Job's budget in seconds (its activeDeadlineSeconds too)."""
        return self.spec["marker_key"], self.spec["budget_s"]

    def lease_hold_s(self) -> int:
        return self.marker()[1] + 300 + LEASE_MARGIN_S

    def prepare(self, api: Any) -> None:
        """Objects the Job needs besides its namespace."""
    def describe_job(self) -> dict[str, Any]:
        key, budget = self.marker()
        return {"skip_if_exists": f"s3://{self.storage['artifact_bucket']}/{key}", "create": self.job(),
                "wait_up_to_s": budget, "deferrable": self.deferrable}

    def run(self, context: Any) -> Any:
        from llm_on_eks.triggers.kube import JobCompleteTrigger

        bucket, (key, budget) = self.storage["artifact_bucket"], self.marker()
        if self.hook.check_for_key(key, bucket):
            self.log.info("s3://%s/%s exists: nothing to do", bucket, key)
            return {"skipped": True, "marker": f"s3://{bucket}/{key}"}
        job = self.job()
        namespace, name = job["metadata"]["namespace"], job["metadata"]["name"]
        with api_client(self.access) as api:
            ensure_namespace(api, namespace)
            self.prepare(api)
            action = ensure_job(api, job)
            self.log.info("job %s/%s %s; waiting up to %s s", namespace, name, action, budget)
            result = self.defer_or_poll(
                trigger=lambda: JobCompleteTrigger(access=self.access, job_name=name, deadline=time.time() + budget,
                                                   budget_s=budget, poll_s=kube_poll_s()),
                timeout_s=budget + 300, poll=lambda: self._wait(api, context, namespace, name, budget))
        return self._finish(result)

    def _wait(self, api: Any, context: Any, namespace: str, name: str, budget: int) -> dict[str, Any]:
        try:
            return wait_for_job(api, namespace, name, budget, kube_poll_s())
        except JobFailed as exc:
            self.wait_failed(context, str(exc))
            raise  # wait_failed always raises

    def resume(self, context: Any, event: dict[str, Any]) -> Any:
        return self._finish(event["result"])

    def wait_failed(self, context: Any, why: str, event: dict[str, Any] | None = None) -> None:
        """Fail the task, stopping a Job still pending or running: nobody would watch it."""
        with api_client(self.access) as api:
            if stop_unfinished(api, self.release["namespace"], self.job()["metadata"]["name"]):
                why += "\n(the unfinished job was deleted)"
        raise AirflowFailException(why)

    def _finish(self, result: dict[str, Any]) -> dict[str, Any]:
        bucket, (key, _) = self.storage["artifact_bucket"], self.marker()
        deadline = time.monotonic() + MARKER_WAIT_S
        while not self.hook.check_for_key(key, bucket):
            if time.monotonic() > deadline:
                raise AirflowFailException(f"job {result['job']} succeeded but s3://{bucket}/{key} never appeared")
            time.sleep(MARKER_POLL_S)
        return {"skipped": False, "marker": f"s3://{bucket}/{key}", **result}


class NeuronCompileOperator(_MarkedJobOperator):
    """Compile for Neuron once per content hash (model, revision, Neuron config, image).

    :param neuron: the compile settings and the content-addressed S3 prefix (None off Neuron:
        the step skips)
    """

    template_fields = (*_MarkedJobOperator.template_fields, "neuron")

    def __init__(self, *, neuron: NeuronSection | None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.neuron = neuron

    @property
    def spec(self) -> NeuronSection | None:
        return self.neuron

    def job(self) -> dict[str, Any]:
        return neuron_compile_job(self.release, self.model, self.neuron, self.storage["artifact_bucket"])


class StageWeightsToFsxOperator(_MarkedJobOperator):
    """Download the weights onto FSx once per repo and revision, through a static PV/PVC.

    :param fsx: the file system's handles (id, DNS name, mount name): storage.ensure_fsx's result,
        for the static volume
    """

    template_fields = (*_MarkedJobOperator.template_fields, "fsx")

    def __init__(self, *, fsx: Any = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.fsx = fsx

    @property
    def spec(self) -> FsxSection | None:
        return self.storage["fsx"]

    def describe(self) -> Any:
        handles = {"file_system_id": "<from storage.ensure_fsx>", "dns_name": "<from storage.ensure_fsx>",
                   "mount_name": "<from storage.ensure_fsx>"}
        return {**self.describe_job(), "apply": fsx_volume(self.spec, self.release["namespace"], handles)}

    def job(self) -> dict[str, Any]:
        return stage_weights_job(self.release, self.model, self.spec, self.storage["artifact_bucket"])

    def prepare(self, api: Any) -> None:
        pv, pvc = fsx_volume(self.spec, self.release["namespace"], self.fsx)
        self.log.info("FSx volume: %s", ensure_static_volume(api, pv, pvc))
        claim = pvc["metadata"]
        if not wait_bound(api, claim["namespace"], claim["name"], BIND_WAIT_S):
            self.log.warning("claim %s/%s not bound after %s s: the Job's pod waits for it", claim["namespace"],
                             claim["name"], BIND_WAIT_S)


class StageWeightsToS3Operator(_MarkedJobOperator):
    """Copy the weights into the artifact bucket once per repo and revision, for vLLM's Run:ai
    model streamer to read at every start; the Job runs on the system nodes, beside the node group.
    """

    @property
    def spec(self) -> S3StreamSection | None:
        return self.storage["s3_stream"]

    def job(self) -> dict[str, Any]:
        return stage_weights_to_s3_job(self.release, self.model, self.spec)

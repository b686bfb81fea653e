"""The ``cold_start`` step: what this run took for each phase of the cold start, beside the plan's
prediction (``plan.cold_start``), once the smoke test has had its first token.

Each measure is a record the work left, not a clock of ours: the cluster's and node group's own
creation time to the step that saw them ready, the weight Job's start and completion times, the
kubelet's Pulled event, vLLM's start-up log lines, and the run's start. A phase this run did not
do (an adopted cluster, weights staged by an earlier run, an unchanged release) is said so and
left out of the comparison; a measured phase off the prediction by more than 20% is flagged.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from llm_on_eks.kube.access import api_client
from llm_on_eks.kube.startup_records import serving_start
from llm_on_eks.operators.base import DeploymentStepOperator
from llm_on_eks.plan.cold_start import ColdStartSection, critical_path_s
from llm_on_eks.plan.types import ReleaseSpec

# A phase off its prediction by more than this is flagged in the report.
TOLERANCE = 0.20
WEIGHT_STEPS = ("prepare_weights.stage_to_fsx", "prepare_weights.stage_to_s3", "prepare_weights.neuron_compile")
SERVING_PHASES = ("image_pull", "weight_load", "engine_start")


def measured(seconds: float | None, note: str = "measured") -> dict[str, Any]:
    return {"measured_s": None if seconds is None else round(seconds), "note": note}


def skipped(note: str) -> dict[str, Any]:
    """A phase this run did not do: no measure, and nothing to compare."""
    return {"measured_s": None, "note": note, "skipped": True}


def _ensured(result: dict[str, Any] | None, what: str) -> dict[str, Any]:
    if not result:
        return skipped(f"no {what} step in this run")
    if result.get("ready_after_s") is None:
        action = result.get("action") or "not created"
        return skipped("adopted: it existed before this run" if action == "adopted" else action)
    return measured(result["ready_after_s"])


def _weights(results: list[dict[str, Any] | None]) -> dict[str, Any]:
    done = [r for r in results if r]
    if not done:
        return skipped("none: vLLM reads the hub at start")
    if done[0].get("skipped"):
        return skipped(f"cached: {done[0]['marker']} was there already")
    return measured(done[0].get("took_s"))


def _serving(deploy: dict[str, Any] | None, records: dict[str, Any]) -> dict[str, dict[str, Any]]:
    if deploy is not None and not deploy.get("changed", True):
        return dict.fromkeys(SERVING_PHASES, skipped("release unchanged: its pods started in an earlier run"))
    phases = {}
    for phase in SERVING_PHASES:
        value = records.get(phase)
        if value is None:
            phases[phase] = measured(None, "not recorded (no kubelet event or vLLM log line says)")
        elif phase == "image_pull" and value == 0:
            phases[phase] = skipped("image already on the node")
        else:
            phases[phase] = measured(value)
    return phases


def compare(section: ColdStartSection, phases: dict[str, dict[str, Any]], run_s: float) -> dict[str, Any]:
    """Each phase predicted vs measured, flagged when off by more than ``TOLERANCE``; and the whole
    run against the prediction for the phases it did."""
    rows = []
    for phase in section["phases"]:
        row = {"phase": phase["phase"], "predicted_s": phase["seconds"], **phases[phase["phase"]]}
        m, p = row["measured_s"], row["predicted_s"]
        row["off"] = bool(m is not None and not row.get("skipped") and p and abs(m - p) > TOLERANCE * p)
        rows.append(row)
    predicted = critical_path_s(section, {r["phase"] for r in rows if r.get("skipped")})
    return {"phases": rows, "predicted_ttft_s": predicted, "measured_ttft_s": round(run_s),
            "off": bool(predicted and abs(run_s - predicted) > TOLERANCE * predicted)}


class ColdStartOperator(DeploymentStepOperator):
    """cold_start: each phase's measure beside its prediction (for the deploy report).

    :param cold_start: the plan's predicted phases
    :param release: the release whose serving pods' start is read
    """

    template_fields = (*DeploymentStepOperator.template_fields, "cold_start", "release")

    def __init__(self, *, cold_start: ColdStartSection, release: ReleaseSpec, **kwargs) -> None:
        super().__init__(**kwargs)
        self.cold_start = cold_start
        self.release = release

    def describe(self) -> Any:
        return {"predicted": self.cold_start, "measures": "each step's record of its phase, beside the prediction"}

    def run(self, context: Any) -> Any:
        ti = context["ti"]
        with api_client(self.access) as api:
            records = serving_start(api, self.release["namespace"], self.release["name"])
        phases = {
            "cluster": _ensured(ti.xcom_pull(task_ids="provision.ensure_cluster"), "cluster"),
            "nodegroup": _ensured(ti.xcom_pull(task_ids="provision.ensure_nodegroup"), "node group"),
            "weights": _weights([ti.xcom_pull(task_ids=task) for task in WEIGHT_STEPS]),
            **_serving(ti.xcom_pull(task_ids="helm_deploy"), records),
        }
        run_s = (datetime.now(UTC) - context["dag_run"].start_date).total_seconds()
        result = compare(self.cold_start, phases, run_s)
        self.log.info("cold start: %s s measured, %s s predicted for what this run did (pod %s)",
                      result["measured_ttft_s"], result["predicted_ttft_s"], records["pod"])
        return result

"""The ``smoke_test`` and ``benchmark`` steps: prove the model answers, then (optionally)
measure it, through the endpoint every check uses (``llm_on_eks.serving.endpoint``)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from llm_on_eks.naming import LABEL_PREFIX
from llm_on_eks.operators.base import LEASE_MARGIN_S, PlanStepOperator
from llm_on_eks.plan import Plan

BENCHMARK_ANNOTATION = f"{LABEL_PREFIX}/benchmark"
BENCHMARK_XCOM_KEY = "benchmark"


class SmokeTestOperator(PlanStepOperator):
    """/v1/models, a chat completion, a streamed one (TTFT), and images when the model takes them.

    ``deadline_s`` bounds the wait for a server still warming up (default: the profile's
    start-up budget, since wait_ready only proves the pods are Ready).
    """

    def __init__(self, *, deadline_s: float | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.deadline_s = deadline_s

    def enabled(self, plan: Plan) -> bool:
        return plan["smoke_test"]

    def lease_hold_s(self, plan: Plan) -> int:
        return int(self.deadline_s or plan["profile"]["startup_budget_s"]) + LEASE_MARGIN_S

    def describe(self, plan: Plan) -> Any:
        from llm_on_eks.serving.endpoint import describe_base_url

        serving = plan["serving"]
        checks = ["GET /v1/models lists " + serving["served_model_name"],
                  "POST /v1/chat/completions answers with content and a finish reason",
                  "POST /v1/chat/completions stream=true: time to first token"]
        if serving["takes_images"]:
            checks.append(f"POST /v1/chat/completions with {plan['profile']['images_per_prompt']} image part(s)")
        return {"base_url": describe_base_url(plan), "checks": checks,
                "deadline_s": self.deadline_s or plan["profile"]["startup_budget_s"]}

    def run(self, plan: Plan, context: Any) -> Any:
        from airflow.sdk.exceptions import AirflowFailException

        from llm_on_eks.serving.endpoint import open_endpoint
        from llm_on_eks.serving.smoke import SmokeSettings, SmokeTestFailed, run_checks

        try:
            with open_endpoint(plan) as endpoint:
                return run_checks(endpoint, SmokeSettings.from_plan(plan, self.deadline_s))
        except SmokeTestFailed as exc:
            if not exc.retryable:
                # The server answered, wrongly: another try gets the same answer.
                raise AirflowFailException(str(exc)) from None
            raise


class BenchmarkOperator(PlanStepOperator):
    """TTFT, inter-token latency and throughput at a set concurrency; fails on a missed SLO.

    The numbers are this task's XCom (under ``benchmark`` too when the SLO is missed, since a
    failed task returns nothing) and an annotation on the release's Service, where whoever finds
    the deployment (kubectl, the idle teardown) also finds how it performed. They are kept before
    the SLO verdict, so a failed run still leaves them.
    """

    def __init__(self, *, deadline_s: float | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.deadline_s = deadline_s

    def enabled(self, plan: Plan) -> bool:
        return plan["benchmark"]["enabled"]

    def describe(self, plan: Plan) -> Any:
        from llm_on_eks.serving.endpoint import describe_base_url

        return {"base_url": describe_base_url(plan), **plan["benchmark"]}

    def run(self, plan: Plan, context: Any) -> Any:
        from airflow.sdk.exceptions import AirflowFailException

        from llm_on_eks.serving import benchmark
        from llm_on_eks.serving.endpoint import open_endpoint

        settings = benchmark.BenchmarkSettings.from_plan(plan, self.deadline_s or benchmark.DEADLINE_S)
        missed: benchmark.SloMissed | None = None
        with open_endpoint(plan) as endpoint:
            try:
                summary = benchmark.run_benchmark(endpoint, settings)
            except benchmark.SloMissed as exc:
                summary, missed = exc.summary, exc
        summary["slo_met"] = None if settings.slo_p99_ttft_ms is None else missed is None
        self.log.info("benchmark:\n%s", benchmark.format_table(summary))
        summary["recorded_on"] = self._annotate(plan, summary)
        if missed is not None:
            # A failing task returns nothing: the numbers go under their own key instead.
            # Measured and missed: a retry measures the same deployment again, so fail for good.
            context["ti"].xcom_push(key=BENCHMARK_XCOM_KEY, value=summary)
            raise AirflowFailException(str(missed)) from None
        return summary

    def _annotate(self, plan: Plan, summary: dict[str, Any]) -> str | None:
        """Record the headline numbers on the release's Service. A deployment reached only by
        URL may have no Service to carry them, and the XCom still holds the numbers, so a
        failure here is a warning, not a failed run."""
        from kubernetes import client

        from llm_on_eks.kube.access import api_client, cluster_access

        record = {
            "at": datetime.now(UTC).isoformat(timespec="seconds"),
            **{key: summary[key] for key in ("concurrency", "requests", "input_len", "output_len", "ttft_ms",
                                             "itl_ms", "output_throughput_tok_s", "slo_p99_ttft_ms", "slo_met")},
        }
        namespace, service = plan["kubernetes"]["namespace"], plan["kubernetes"]["release"]
        body = {"metadata": {"annotations": {BENCHMARK_ANNOTATION: json.dumps(record, separators=(",", ":"))}}}
        try:
            with api_client(cluster_access(plan)) as api:
                client.CoreV1Api(api).patch_namespaced_service(service, namespace, body)
        except Exception:  # noqa: BLE001 - see the docstring
            self.log.warning("benchmark not recorded on the release's Service", exc_info=True)
            return None
        where = f"service/{namespace}/{service}"
        self.log.info("benchmark recorded on %s (annotation %s)", where, BENCHMARK_ANNOTATION)
        return where

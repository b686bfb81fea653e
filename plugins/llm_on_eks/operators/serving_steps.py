"""Post-deployment checks: prove the model answers, then (optionally) measure it."""

from __future__ import annotations

from typing import Any

from llm_on_eks.operators.base import PlanStepOperator


class SmokeTestOperator(PlanStepOperator):
    """/v1/models, a chat completion, a streamed one (TTFT), and images when the model takes them.

    ``deadline_s`` bounds the wait for a server still warming up (default: the profile's
    start-up budget, since wait_ready only proves the pods are Ready).
    """

    def __init__(self, *, deadline_s: float | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.deadline_s = deadline_s

    def enabled(self, plan: dict[str, Any]) -> bool:
        return plan["smoke_test"]

    def describe(self, plan: dict[str, Any]) -> Any:
        from llm_on_eks.serving.endpoint import describe_base_url

        serving = plan["serving"]
        checks = ["GET /v1/models lists " + serving["served_model_name"],
                  "POST /v1/chat/completions answers with content and a finish reason",
                  "POST /v1/chat/completions stream=true: time to first token"]
        if serving["takes_images"]:
            checks.append(f"POST /v1/chat/completions with {serving['images_per_prompt']} image part(s)")
        return {"base_url": describe_base_url(plan), "checks": checks,
                "deadline_s": self.deadline_s or serving["startup_budget_s"]}

    def run(self, plan: dict[str, Any], context: Any) -> Any:
        from airflow.sdk.exceptions import AirflowFailException

        from llm_on_eks.serving.smoke import SmokeTestFailed
        from llm_on_eks.serving.tasks import run_smoke_test

        try:
            return run_smoke_test(plan, deadline_s=self.deadline_s)
        except SmokeTestFailed as exc:
            if not exc.retryable:
                # The server answered, wrongly: another try gets the same answer.
                raise AirflowFailException(str(exc)) from None
            raise


class BenchmarkOperator(PlanStepOperator):
    """TTFT, inter-token latency and throughput at a set concurrency; fails on a missed SLO.

    The numbers are this task's XCom (under ``benchmark`` too when the SLO is missed, since a
    failed task returns nothing) and an annotation on the release's Service.
    """

    def __init__(self, *, deadline_s: float | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.deadline_s = deadline_s

    def enabled(self, plan: dict[str, Any]) -> bool:
        return plan["benchmark"]["enabled"]

    def describe(self, plan: dict[str, Any]) -> Any:
        from llm_on_eks.serving.endpoint import describe_base_url

        return {"base_url": describe_base_url(plan), **plan["benchmark"]}

    def run(self, plan: dict[str, Any], context: Any) -> Any:
        from airflow.sdk.exceptions import AirflowFailException

        from llm_on_eks.serving import benchmark
        from llm_on_eks.serving.tasks import run_benchmark

        try:
            return run_benchmark(plan, deadline_s=self.deadline_s or benchmark.DEADLINE_S)
        except benchmark.SloMissed as exc:
            # Measured and missed: a retry measures the same deployment again.
            raise AirflowFailException(str(exc)) from None

"""Post-deployment checks: prove the model answers, then (optionally) measure it."""

from __future__ import annotations

from typing import Any

from llm_on_eks.operators.base import PlanStepOperator


class SmokeTestOperator(PlanStepOperator):
    """/v1/models, a chat completion, a streamed one (TTFT), and images when the model takes them."""

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
                "deadline_s": serving["startup_budget_s"]}


class BenchmarkOperator(PlanStepOperator):
    """TTFT, inter-token latency and throughput at a set concurrency; fails on a missed SLO."""

    def enabled(self, plan: dict[str, Any]) -> bool:
        return plan["benchmark"]["enabled"]

    def describe(self, plan: dict[str, Any]) -> Any:
        from llm_on_eks.serving.endpoint import describe_base_url

        return {"base_url": describe_base_url(plan), **plan["benchmark"]}

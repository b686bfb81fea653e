"""The ``smoke_test`` and ``benchmark`` steps: prove the model answers, then (optionally)
measure it, through the endpoint every check uses (``llm_on_eks.serving.endpoint``)."""

from __future__ import annotations

import json
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import Any

from airflow.sdk.exceptions import AirflowFailException

from llm_on_eks.kube.access import api_client
from llm_on_eks.naming import LABEL_PREFIX
from llm_on_eks.operators.base import LEASE_MARGIN_S, DeploymentStepOperator
from llm_on_eks.plan.types import BenchmarkSection, ReleaseSpec, ServingSection, SmokeTestSection
from llm_on_eks.serving import benchmark as bench
from llm_on_eks.serving.endpoint import Endpoint, describe_base_url, open_endpoint
from llm_on_eks.serving.smoke import SmokeSettings, SmokeTestFailed, run_checks

BENCHMARK_ANNOTATION = f"{LABEL_PREFIX}/benchmark"
BENCHMARK_XCOM_KEY = "benchmark"


class _ServingCheckOperator(DeploymentStepOperator):
    """A check of the served model at its endpoint (its base URL, else its Service through the
    API server).

    :param serving: the served model's name, whether it takes images, and where it is reached
    :param deadline_s: how long the check may take (default: the step's own)
    """

    template_fields = (*DeploymentStepOperator.template_fields, "serving")

    def __init__(self, *, serving: ServingSection, deadline_s: float | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.serving = serving
        self.deadline_s = deadline_s

    def endpoint(self) -> AbstractContextManager[Endpoint]:
        serving = self.serving
        return open_endpoint(self.access, base_url=serving["base_url"], namespace=serving["namespace"],
                             release=serving["release"], port=serving["port"])


class SmokeTestOperator(_ServingCheckOperator):
    """/v1/models, a chat completion, a streamed one (TTFT), and images when the model takes them.

    ``deadline_s`` bounds the wait for a server still warming up (default: the release's start-up
    budget, since wait_ready only proves the pods are Ready).

    :param release: the release whose start-up budget bounds the wait
    :param smoke_test: whether the check runs, and how many images a prompt carries
    """

    template_fields = (*_ServingCheckOperator.template_fields, "release", "smoke_test")

    def __init__(self, *, release: ReleaseSpec, smoke_test: SmokeTestSection, **kwargs) -> None:
        super().__init__(**kwargs)
        self.release = release
        self.smoke_test = smoke_test

    @property
    def deadline(self) -> float:
        return self.deadline_s if self.deadline_s is not None else self.release["startup_budget_s"]

    def enabled(self) -> bool:
        return self.smoke_test["enabled"]

    def lease_hold_s(self) -> int:
        return int(self.deadline) + LEASE_MARGIN_S

    def describe(self) -> Any:
        checks = ["GET /v1/models lists " + self.serving["served_model_name"],
                  "POST /v1/chat/completions answers with content and a finish reason",
                  "POST /v1/chat/completions stream=true: time to first token"]
        if self.serving["takes_images"]:
            checks.append(f"POST /v1/chat/completions with {self.smoke_test['images_per_prompt']} image part(s)")
        return {"base_url": describe_base_url(self.serving), "checks": checks, "deadline_s": self.deadline}

    def run(self, context: Any) -> Any:
        try:
            with self.endpoint() as endpoint:
                return run_checks(endpoint, SmokeSettings.from_sections(self.serving, self.smoke_test, self.deadline))
        except SmokeTestFailed as exc:
            if not exc.retryable:
                # The server answered, wrongly: another try gets the same answer.
                raise AirflowFailException(str(exc)) from None
            raise


class BenchmarkOperator(_ServingCheckOperator):
    """TTFT, inter-token latency and throughput at a set concurrency; fails on a missed SLO.

    The numbers are this task's XCom (under ``benchmark`` too when the SLO is missed, since a
    failed task returns nothing) and an annotation on the release's Service, where whoever finds
    the deployment (kubectl, the idle teardown) also finds how it performed. They are kept before
    the SLO verdict, so a failed run still leaves them.

    :param benchmark: whether it runs, the load (concurrency, prompts, lengths) and the SLO
    """

    template_fields = (*_ServingCheckOperator.template_fields, "benchmark")

    def __init__(self, *, benchmark: BenchmarkSection, **kwargs) -> None:
        super().__init__(**kwargs)
        self.benchmark = benchmark

    def enabled(self) -> bool:
        return self.benchmark["enabled"]

    def describe(self) -> Any:
        return {"base_url": describe_base_url(self.serving), **self.benchmark}

    def run(self, context: Any) -> Any:
        settings = bench.BenchmarkSettings.from_sections(self.serving, self.benchmark,
                                                         self.deadline_s or bench.DEADLINE_S)
        missed: bench.SloMissed | None = None
        with self.endpoint() as endpoint:
            try:
                summary = bench.run_benchmark(endpoint, settings)
            except bench.SloMissed as exc:
                summary, missed = exc.summary, exc
        summary["slo_met"] = None if settings.slo_p99_ttft_ms is None else missed is None
        self.log.info("benchmark:\n%s", bench.format_table(summary))
        summary["recorded_on"] = self._annotate(summary)
        if missed is not None:
            # A failing task returns nothing: the numbers go under their own key instead.
            # Measured and missed: a retry measures the same deployment again, so fail for good.
            context["ti"].xcom_push(key=BENCHMARK_XCOM_KEY, value=summary)
            raise AirflowFailException(str(missed)) from None
        return summary

    def _annotate(self, summary: dict[str, Any]) -> str | None:
        """Record the headline numbers on the release's Service. A deployment reached only by
        URL may have no Service to carry them, and the XCom still holds the numbers, so a
        failure here is a warning, not a failed run."""
        from kubernetes import client

        record = {
            "at": datetime.now(UTC).isoformat(timespec="seconds"),
            **{key: summary[key] for key in ("concurrency", "requests", "input_len", "output_len", "ttft_ms",
                                             "itl_ms", "output_throughput_tok_s", "slo_p99_ttft_ms", "slo_met")},
        }
        namespace, service = self.serving["namespace"], self.serving["release"]
        body = {"metadata": {"annotations": {BENCHMARK_ANNOTATION: json.dumps(record, separators=(",", ":"))}}}
        try:
            with api_client(self.access) as api:
                client.CoreV1Api(api).patch_namespaced_service(service, namespace, body)
        except Exception:  # noqa: BLE001 - see the docstring
            self.log.warning("benchmark not recorded on the release's Service", exc_info=True)
            return None
        where = f"service/{namespace}/{service}"
        self.log.info("benchmark recorded on %s (annotation %s)", where, BENCHMARK_ANNOTATION)
        return where

"""The serving checks as Airflow task callables: the plan in, a JSON-serialisable record out.

``kubeconfig`` overrides how the cluster is reached (tests, a local control plane); without it
the plan's endpoint is its base URL or the service proxy of the plan's cluster.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

from llm_on_eks.naming import LABEL_PREFIX
from llm_on_eks.serving import benchmark
from llm_on_eks.serving.endpoint import open_endpoint
from llm_on_eks.serving.metrics import DeploymentLoad, read_metrics
from llm_on_eks.serving.smoke import SmokeSettings, run_checks

log = logging.getLogger(__name__)

BENCHMARK_ANNOTATION = f"{LABEL_PREFIX}/benchmark"
BENCHMARK_XCOM_KEY = "benchmark"


def run_smoke_test(plan: dict[str, Any], *, kubeconfig: str | None = None,
                   deadline_s: float | None = None) -> dict[str, Any]:
    """Prove the deployment answers; ``deadline_s`` (default: the profile's startup budget)
    bounds the wait for a server still warming up."""
    settings = SmokeSettings.from_plan(plan, deadline_s)
    with open_endpoint(plan, kubeconfig=kubeconfig) as endpoint:
        return run_checks(endpoint, settings)


def run_benchmark(plan: dict[str, Any], *, kubeconfig: str | None = None, deadline_s: float = benchmark.DEADLINE_S,
                  annotate: bool = True) -> dict[str, Any]:
    """Measure the deployment, print the table, keep the summary with the deployment record
    (this task's XCom and, with ``annotate``, the release's Service), then fail on a missed SLO.

    The summary is kept before the SLO verdict so a failed run still leaves its numbers.
    """
    settings = benchmark.BenchmarkSettings.from_plan(plan, deadline_s)
    missed: benchmark.SloMissed | None = None
    with open_endpoint(plan, kubeconfig=kubeconfig) as endpoint:
        try:
            summary = benchmark.run_benchmark(endpoint, settings)
        except benchmark.SloMissed as exc:
            summary, missed = exc.summary, exc
    summary["slo_met"] = None if settings.slo_p99_ttft_ms is None else missed is None
    print(benchmark.format_table(summary))
    if annotate:
        summary["recorded_on"] = _annotate(plan, summary, kubeconfig=kubeconfig)
    if missed is not None:
        # A failing task returns nothing: the numbers go under their own key instead.
        from airflow.sdk import get_current_context

        get_current_context()["ti"].xcom_push(key=BENCHMARK_XCOM_KEY, value=summary)
        raise missed
    return summary


def read_deployment_load(plan: dict[str, Any], *, kubeconfig: str | None = None) -> DeploymentLoad:
    """How busy the plan's deployment is now (the idle teardown's reading)."""
    with open_endpoint(plan, kubeconfig=kubeconfig) as endpoint:
        return read_metrics(endpoint)


def annotate_release(api_client: Any, plan: dict[str, Any], summary: dict[str, Any]) -> str:
    """Record the headline numbers on the release's Service, where whoever finds the deployment
    (kubectl, the idle teardown) also finds how it performed."""
    from kubernetes import client

    record = {
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "concurrency": summary["concurrency"], "requests": summary["requests"],
        "input_len": summary["input_len"], "output_len": summary["output_len"],
        "ttft_ms": summary["ttft_ms"], "itl_ms": summary["itl_ms"],
        "output_throughput_tok_s": summary["output_throughput_tok_s"],
        "slo_p99_ttft_ms": summary["slo_p99_ttft_ms"], "slo_met": summary["slo_met"],
    }
    serving = plan["serving"]
    body = {"metadata": {"annotations": {BENCHMARK_ANNOTATION: json.dumps(record, separators=(",", ":"))}}}
    client.CoreV1Api(api_client).patch_namespaced_service(serving["service"], serving["namespace"], body)
    where = f"service/{serving['namespace']}/{serving['service']}"
    log.info("benchmark recorded on %s (annotation %s)", where, BENCHMARK_ANNOTATION)
    return where


def _annotate(plan: dict[str, Any], summary: dict[str, Any], *, kubeconfig: str | None) -> str | None:
    """Annotate the release; a deployment reached only by URL may have no Service to carry it,
    and the XCom still holds the numbers, so a failure here is a warning, not a failed run."""
    try:
        if kubeconfig:
            from kubernetes import client, config

            api = config.new_client_from_config(config_file=kubeconfig, client_configuration=client.Configuration())
            with api:
                return annotate_release(api, plan, summary)
        from llm_on_eks.kube.access import api_client

        with api_client(plan) as api:
            return annotate_release(api, plan, summary)
    except Exception:  # noqa: BLE001 - see the docstring
        log.warning("benchmark not recorded on the release's Service", exc_info=True)
        return None

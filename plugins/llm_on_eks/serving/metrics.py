"""How busy a deployment is, read from vLLM's Prometheus ``/metrics``: the idle teardown's input.

Values are summed over every label set (one per engine and served model; success counts also
per finish reason). A metric the server does not export is ``None`` ("unknown"), never 0:
a teardown must not take a server it cannot read for an idle one. Names are looked up through
aliases because vLLM renames metrics between releases (vLLM 0.32 exports
``vllm:kv_cache_usage_perc``, older releases ``vllm:gpu_cache_usage_perc``).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import Any

from llm_on_eks.plan.types import ClusterAccess
from llm_on_eks.serving.endpoint import Endpoint, open_endpoint

log = logging.getLogger(__name__)

UNKNOWN = "unknown"
# Sample names as they appear on the wire, newest first. Counters are read from their `_total`
# samples only: prometheus_client also exports `_created` timestamps in the same family.
METRIC_ALIASES = {
    "running": ("vllm:num_requests_running",),
    "waiting": ("vllm:num_requests_waiting",),
    "requests_succeeded": ("vllm:request_success_total",),
    "prompt_tokens": ("vllm:prompt_tokens_total",),
    "generation_tokens": ("vllm:generation_tokens_total",),
    "kv_cache_usage": ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"),
}
SUCCESS_METRIC_ALIASES = METRIC_ALIASES["requests_succeeded"]


@dataclass(frozen=True)
class DeploymentLoad:
    """One reading of a server's load; ``None`` means the server did not say."""

    source: str
    running: float | None = None
    waiting: float | None = None
    requests_succeeded: float | None = None
    prompt_tokens: float | None = None
    generation_tokens: float | None = None
    kv_cache_usage: float | None = None
    succeeded_by_reason: dict[str, float] = field(default_factory=dict)
    error: str | None = None

    @property
    def in_flight(self) -> float | None:
        """Requests being served or queued; unknown unless both gauges were read."""
        if self.running is None or self.waiting is None:
            return None
        return self.running + self.waiting

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly, with "unknown" where the server gave no value."""
        values = {key: UNKNOWN if value is None and key != "error" else value for key, value in asdict(self).items()}
        in_flight = self.in_flight
        values["in_flight"] = UNKNOWN if in_flight is None else in_flight
        return values


def parse_load(text: str, source: str) -> DeploymentLoad:
    """Read the load from Prometheus text exposition."""
    from prometheus_client.parser import text_string_to_metric_families

    totals: dict[str, float] = {}
    by_reason: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            totals[sample.name] = totals.get(sample.name, 0.0) + sample.value
            if sample.name in SUCCESS_METRIC_ALIASES and "finished_reason" in sample.labels:
                reason = sample.labels["finished_reason"]
                by_reason[reason] = by_reason.get(reason, 0.0) + sample.value
    values = {key: next((totals[name] for name in names if name in totals), None)
              for key, names in METRIC_ALIASES.items()}
    return DeploymentLoad(source=source, succeeded_by_reason=by_reason, **values)


def read_metrics(endpoint: Endpoint) -> DeploymentLoad:
    """GET ``/metrics`` and parse it; an unreachable or non-Prometheus endpoint reads as unknown."""
    import httpx

    try:
        with endpoint.http_client() as http:
            response = http.get(endpoint.url("/metrics"))
    except httpx.HTTPError as exc:
        log.warning("metrics of %s unreadable: %s", endpoint.description, exc)
        return DeploymentLoad(source=endpoint.description, error=f"{type(exc).__name__}: {exc}")
    if response.status_code != 200:
        log.warning("metrics of %s unreadable: HTTP %s", endpoint.description, response.status_code)
        return DeploymentLoad(source=endpoint.description, error=f"HTTP {response.status_code}")
    try:
        return parse_load(response.text, endpoint.description)
    except ValueError as exc:
        log.warning("metrics of %s are not Prometheus text: %s", endpoint.description, exc)
        return DeploymentLoad(source=endpoint.description, error=f"not Prometheus text: {exc}")


def read_deployment_load(access: ClusterAccess, *, base_url: str | None, namespace: str, release: str,
                         port: int | str) -> DeploymentLoad:
    """How busy a deployment is now (the idle teardown's reading), at its endpoint (``open_endpoint``)."""

    with open_endpoint(access, base_url=base_url, namespace=namespace, release=release, port=port) as endpoint:
        return read_metrics(endpoint)

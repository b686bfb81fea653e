"""How fast a deployment serves: TTFT, inter-token latency and output tokens/s at a set load.

Modelled on ``vllm bench serve`` (random prompts, a fixed number of requests at a fixed
concurrency, ``ignore_eos`` so every request produces exactly ``output_len`` tokens) but run with
the ``openai`` async client, because the Airflow worker does not carry vLLM. Prompt length is
approximate (the worker has no tokenizer): the prompt tokens the server counted are reported.
Bounded in count (``num_prompts``) and time (a deadline); any failed request fails the run,
since numbers over a partial run would flatter the deployment.
"""

from __future__ import annotations

import asyncio
import logging
import random
import statistics
import time
from dataclasses import dataclass
from typing import Any

from llm_on_eks.plan.types import BenchmarkSection, ServingSection
from llm_on_eks.serving.endpoint import Endpoint

log = logging.getLogger(__name__)

REQUEST_TIMEOUT_S = 600.0
DEADLINE_S = 1800.0
# Words that most BPE vocabularies hold as one token each, so words ~ tokens.
WORDS = ("the model server answers every request with tokens and time while users wait for a first word "
         "then read the rest as it streams from the cluster on accelerator nodes").split()
STATS = ("mean", "p50", "p99")
# (key in the summary, row label in the table)
ROWS = (("ttft_ms", "TTFT (ms)"), ("itl_ms", "ITL (ms)"), ("tpot_ms", "TPOT (ms)"),
        ("e2e_ms", "E2E latency (ms)"), ("output_tokens_per_s", "output tok/s per request"))


class BenchmarkFailed(Exception):
    """Requests failed, or the run did not finish before its deadline."""


class SloMissed(Exception):
    """The run finished but missed its service-level objective; the summary is kept."""

    def __init__(self, message: str, summary: dict[str, Any]) -> None:
        super().__init__(message)
        self.summary = summary


@dataclass(frozen=True)
class BenchmarkSettings:
    model: str
    concurrency: int
    num_prompts: int
    input_len: int
    output_len: int
    slo_p99_ttft_ms: float | None = None
    deadline_s: float = DEADLINE_S
    seed: int = 0

    @classmethod
    def from_sections(cls, serving: ServingSection, bench: BenchmarkSection,
                      deadline_s: float = DEADLINE_S) -> BenchmarkSettings:
        return cls(model=serving["served_model_name"], concurrency=int(bench["concurrency"]),
                   num_prompts=int(bench["num_prompts"]), input_len=int(bench["input_len"]),
                   output_len=int(bench["output_len"]), slo_p99_ttft_ms=bench.get("slo_p99_ttft_ms"),
                   deadline_s=deadline_s)


@dataclass
class RequestResult:
    ttft_s: float
    e2e_s: float
    output_tokens: int
    prompt_tokens: int | None
    itl_s: list[float]


def make_prompts(settings: BenchmarkSettings) -> list[str]:
    """Distinct random prompts of ~input_len words; distinct so prefix caching cannot help."""
    rng = random.Random(settings.seed)
    return [f"{index} " + " ".join(rng.choice(WORDS) for _ in range(max(1, settings.input_len - 1)))
            for index in range(settings.num_prompts)]


async def _one_request(client, settings: BenchmarkSettings, prompt: str, start: float) -> RequestResult:
    first = last = None
    itl: list[float] = []
    chunks = 0
    usage = None
    stream = await client.chat.completions.create(
        model=settings.model, messages=[{"role": "user", "content": prompt}], max_tokens=settings.output_len,
        temperature=0, stream=True, stream_options={"include_usage": True},
        # vLLM's sampling extras, as `vllm bench serve` sends them: exactly output_len tokens.
        extra_body={"ignore_eos": True, "min_tokens": settings.output_len})
    async with stream:
        async for chunk in stream:
            usage = chunk.usage or usage
            if any(choice.delta.content for choice in chunk.choices):
                now = time.perf_counter()
                if first is None:
                    first = now
                else:
                    itl.append(now - last)
                last = now
                chunks += 1
    end = time.perf_counter()
    if first is None:
        raise BenchmarkFailed("a streamed request returned no content")
    output_tokens = usage.completion_tokens if usage else chunks
    return RequestResult(ttft_s=first - start, e2e_s=end - start, output_tokens=output_tokens,
                         prompt_tokens=usage.prompt_tokens if usage else None, itl_s=itl)


async def _run(endpoint: Endpoint, settings: BenchmarkSettings) -> tuple[list[RequestResult], list[str], float]:
    prompts = make_prompts(settings)
    semaphore = asyncio.Semaphore(settings.concurrency)
    errors: list[str] = []

    async def bounded(prompt: str) -> RequestResult | None:
        async with semaphore:
            try:
                return await _one_request(client, settings, prompt, time.perf_counter())
            except Exception as exc:  # noqa: BLE001 - every failure is counted and the first reported
                cause = f" (caused by {type(exc.__cause__).__name__}: {exc.__cause__})" if exc.__cause__ else ""
                errors.append(f"{type(exc).__name__}: {exc}{cause}")
                return None

    start = time.perf_counter()
    # The client sends a request again once when its connection drops before an answer (a
    # request that needed it counts its full latency); a stream cut mid-body fails the run.
    async with endpoint.openai_client(timeout=REQUEST_TIMEOUT_S, asynchronous=True, max_retries=1) as client:
        tasks = [asyncio.ensure_future(bounded(prompt)) for prompt in prompts]
        done, pending = await asyncio.wait(tasks, timeout=settings.deadline_s)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
    duration = time.perf_counter() - start
    if pending:
        errors.append(f"{len(pending)} request(s) unfinished at the {settings.deadline_s:.0f} s deadline")
    results = [task.result() for task in done if task.result() is not None]
    return results, errors, duration


def run_benchmark(endpoint: Endpoint, settings: BenchmarkSettings) -> dict[str, Any]:
    """Run the load, return the summary; raise BenchmarkFailed or SloMissed (with the summary)."""
    log.info("benchmark against %s: %d prompts at concurrency %d, ~%d prompt / %d output tokens",
             endpoint.description, settings.num_prompts, settings.concurrency, settings.input_len,
             settings.output_len)
    results, errors, duration = asyncio.run(_run(endpoint, settings))
    if errors:
        raise BenchmarkFailed(f"{len(errors)} of {settings.num_prompts} request(s) failed; first: {errors[0]}")
    summary = summarize(results, settings, duration)
    summary["endpoint"] = endpoint.description
    slo = settings.slo_p99_ttft_ms
    if slo is not None and summary["ttft_ms"]["p99"] > slo:
        raise SloMissed(f"p99 TTFT {summary['ttft_ms']['p99']:.1f} ms misses the SLO of {slo:g} ms", summary)
    return summary


def summarize(results: list[RequestResult], settings: BenchmarkSettings, duration_s: float) -> dict[str, Any]:
    output_tokens = sum(result.output_tokens for result in results)
    prompt_tokens = [result.prompt_tokens for result in results if result.prompt_tokens is not None]
    tpot = [(r.e2e_s - r.ttft_s) / (r.output_tokens - 1) for r in results if r.output_tokens > 1]
    summary: dict[str, Any] = {
        "model": settings.model,
        "concurrency": settings.concurrency,
        "requests": len(results),
        "input_len": settings.input_len,
        "output_len": settings.output_len,
        "mean_prompt_tokens": round(statistics.fmean(prompt_tokens), 1) if prompt_tokens else None,
        "duration_s": round(duration_s, 3),
        "output_throughput_tok_s": round(output_tokens / duration_s, 2),
        "request_throughput_req_s": round(len(results) / duration_s, 3),
        "ttft_ms": _stats([r.ttft_s * 1000 for r in results]),
        # Pooled over every gap of every request, as vLLM's benchmark does.
        "itl_ms": _stats([gap * 1000 for r in results for gap in r.itl_s]),
        "tpot_ms": _stats([value * 1000 for value in tpot]),
        "e2e_ms": _stats([r.e2e_s * 1000 for r in results]),
        "output_tokens_per_s": _stats([r.output_tokens / r.e2e_s for r in results]),
        "slo_p99_ttft_ms": settings.slo_p99_ttft_ms,
    }
    return summary


def _stats(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {name: None for name in STATS}
    return {"mean": round(statistics.fmean(values), 3), "p50": round(_percentile(values, 50), 3),
            "p99": round(_percentile(values, 99), 3)}


def _percentile(values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default), defined for one value too."""
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def format_table(summary: dict[str, Any]) -> str:
    """The summary as a fixed-width table for the task log."""
    lines = [
        f"benchmark {summary['model']}: {summary['requests']} requests at concurrency {summary['concurrency']}, "
        f"~{summary['input_len']} prompt words ({summary['mean_prompt_tokens']} tokens) / "
        f"{summary['output_len']} output tokens, {summary['duration_s']:.1f} s",
        f"{'metric':<26}{'mean':>12}{'p50':>12}{'p99':>12}",
    ]
    for key, label in ROWS:
        row = summary[key]
        lines.append(f"{label:<26}" + "".join(f"{_cell(row[stat]):>12}" for stat in STATS))
    lines.append(f"output throughput {summary['output_throughput_tok_s']:.1f} tok/s, "
                 f"{summary['request_throughput_req_s']:.2f} req/s")
    if summary.get("slo_p99_ttft_ms") is not None:
        lines.append(f"SLO p99 TTFT <= {summary['slo_p99_ttft_ms']:g} ms")
    return "\n".join(lines)


def _cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"

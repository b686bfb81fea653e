"""Serving numbers from the real vLLM CPU server (tiny Llama 4, dummy weights): start-up time,
memory, and TTFT / ITL / throughput at a few concurrencies, measured by the same code as the
deploy DAG's benchmark task (llm_on_eks.serving.benchmark, the openai async client).

These numbers describe this machine's CPU serving a toy model: they check that the benchmark
measures sensibly (TTFT grows with queueing, throughput with batching) and give a baseline for
regressions in the serving path, not a forecast for GPUs.

    .venv/bin/python benchmarks/serving_bench.py [concurrency ...]   # default: 1 2 4 8

Needs .venv-vllm (scripts/setup-vllm). Starts one server (in a network namespace when the
machine allows it), stops it by process group at the end. Bounded: 4 prompts per unit of
concurrency (at most 32), 64 prompt words, 64 output tokens, a 600 s deadline per level.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "plugins")]

from llm_on_eks.serving import benchmark  # noqa: E402
from llm_on_eks.serving.endpoint import direct_endpoint  # noqa: E402
from local_stack.vllm import netns_unavailable_reason, start_server  # noqa: E402

INPUT_LEN = 64
OUTPUT_LEN = 64
DEADLINE_S = 600.0


def main(levels: list[int]) -> None:
    started = time.monotonic()
    server = start_server("tiny-llama4", ["tiny-llama4"], use_netns=netns_unavailable_reason() is None)
    try:
        print(f"vLLM 0.32.0 CPU, tiny-llama4 (dummy weights) at {server.base_url}: healthy after "
              f"{server.startup_s:.1f} s, RSS {server.rss_mib():.0f} MiB (server + engine)\n")
        endpoint = direct_endpoint(server.base_url)
        # One untimed request so the first level does not pay for first-request setup.
        benchmark.run_benchmark(endpoint, benchmark.BenchmarkSettings(
            model="tiny-llama4", concurrency=1, num_prompts=1, input_len=8, output_len=4, deadline_s=DEADLINE_S))
        rows = []
        for concurrency in levels:
            settings = benchmark.BenchmarkSettings(
                model="tiny-llama4", concurrency=concurrency, num_prompts=min(32, 4 * concurrency),
                input_len=INPUT_LEN, output_len=OUTPUT_LEN, deadline_s=DEADLINE_S, seed=concurrency)
            summary = benchmark.run_benchmark(endpoint, settings)
            print(benchmark.format_table(summary), "\n")
            rows.append(summary)
        print(f"{'conc':>4} {'reqs':>5} {'TTFT p50':>9} {'TTFT p99':>9} {'ITL p50':>8} {'ITL p99':>8} "
              f"{'tok/s/req':>10} {'out tok/s':>10} {'req/s':>6}   (ms unless stated)")
        for s in rows:
            print(f"{s['concurrency']:>4} {s['requests']:>5} {s['ttft_ms']['p50']:>9.1f} {s['ttft_ms']['p99']:>9.1f} "
                  f"{s['itl_ms']['p50']:>8.2f} {s['itl_ms']['p99']:>8.2f} {s['output_tokens_per_s']['p50']:>10.1f} "
                  f"{s['output_throughput_tok_s']:>10.1f} {s['request_throughput_req_s']:>6.2f}")
    finally:
        server.stop()
    print(f"\ntotal {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main([int(arg) for arg in sys.argv[1:]] or [1, 2, 4, 8])

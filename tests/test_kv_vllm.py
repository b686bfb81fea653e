"""The planner's longest context against vLLM's own KV-cache arithmetic.

For every GPU profile of the catalog with --kv-cache-dtype auto and fp8, vLLM 0.32 (.venv-vllm,
tests/vllm_check.py) builds the engine configuration for the profile's real model shape, the
KV-cache spec of every attention layer on one tensor-parallel rank (chunked local layers for
Llama 4), and runs its start-up check (get_kv_cache_configs) with exactly the per-rank KV budget the
planner computed; its "estimated maximum model length" must be the planner's, within 1%. Both
numbers are before the model's context caps them, so the arithmetic is compared, not the cap.

The tiny models the local server runs (scripts/make-tiny-model) are compared the same way with
the CPU platform's settings. The check is the one the server runs at start-up; a server started
for it (one token beyond the planner's length, refused naming that length) added a minute of CI
for the same arithmetic.

What this cannot check: the memory vLLM leaves for the KV cache on a GPU (device memory x
utilisation minus weights, activations, CUDA graphs), which the planner approximates with its
runtime reserve (the plan summary shows it); a GPU run would.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest

from llm_on_eks.catalog import Architecture, default_catalog
from llm_on_eks.sizing import (
    KvCacheLayout,
    SizingRequest,
    kv_cache_layout,
    size,
    vllm_default_max_num_batched_tokens,
    vllm_kv_cache_layout,
)
from local_stack.vllm import MODELS, ensure_tiny_models
from tests.test_vllm_args import model_config, run_checker

pytestmark = pytest.mark.integration

CATALOG = default_catalog()
TOLERANCE = 0.01
# A max_model_len far beyond any fit: vLLM's check refuses it and names its estimate.
PROBE_LEN = 1 << 40
# The tiny models on vLLM's CPU platform: its block size (vllm/platforms/cpu.py,
# CpuPlatform.check_and_update_config: 128 unless --block-size), no async scheduling there, so one
# batch in flight; a batch budget below the chunk-bound length so the chunked layer's bound shows.
CPU_BLOCK_SIZE = 128
TINY_BATCHED_TOKENS = 512
# 19 blocks of 16 KiB (one layer x 128 tokens x 128 bytes): the null block, 6 for the chunked
# layer (256 + 512 tokens) and 12 for the global one, so 1536 tokens fit, well inside the tiny
# model's 2048 positions.
TINY_KV_BYTES = 320_000


@dataclass
class Case:
    id: str
    planner: int
    budget_bytes: int
    layout: KvCacheLayout
    check: dict[str, Any]


def tiny_architecture(name: str) -> Architecture:
    """The tiny model's shape from its config.json (the fields the planner reads)."""
    config = json.loads((MODELS / name / "config.json").read_text())
    text = config.get("text_config", config)
    no_rope = text.get("no_rope_layers")
    return Architecture(
        total_params_b=0, active_params_b=0, layers=text["num_hidden_layers"], hidden_size=text["hidden_size"],
        attention_heads=text["num_attention_heads"], kv_heads=text["num_key_value_heads"], head_dim=text["head_dim"],
        max_context=text["max_position_embeddings"], attention_chunk_size=text.get("attention_chunk_size"),
        # no_rope_layers marks the global (NoPE) layers with 0, one in every n.
        global_attention_every=len(no_rope) // no_rope.count(0) if no_rope else None,
    )


def tiny_layout(name: str) -> KvCacheLayout:
    return vllm_kv_cache_layout(tiny_architecture(name), tensor_parallel_size=1, pipeline_parallel_size=1,
                                kv_bytes=2, block_size=CPU_BLOCK_SIZE, max_in_flight_tokens=TINY_BATCHED_TOKENS)


def gpu_cases() -> list[Case]:
    cases = []
    for model in CATALOG.models.values():
        for name, profile in model.profiles.items():
            if profile.accelerator != "gpu":
                continue
            base, config = model_config(model, profile)
            for kv_dtype in ("auto", "fp8"):
                request = SizingRequest.from_profile(CATALOG, model, profile, kv_cache_dtype=kv_dtype)
                sizing, layout = size(request), kv_cache_layout(request)
                # Given explicitly: vLLM picks its default from the GPU it runs on, and this runs on CPU.
                batched = request.max_num_batched_tokens or vllm_default_max_num_batched_tokens(request.instance)
                argv = [f"--model={request.hf_repo}", f"--dtype={request.dtype}", f"--kv-cache-dtype={kv_dtype}",
                        f"--tensor-parallel-size={request.tensor_parallel_size}",
                        f"--pipeline-parallel-size={request.pipeline_parallel_size}",
                        f"--block-size={layout.block_size}",
                        f"--max-num-batched-tokens={batched}",
                        f"--max-model-len={model.architecture.max_context}"]
                check = {"id": f"{model.id}/{name}/{kv_dtype}", "argv": argv, "engine": True, "base": base,
                         "config": config, "kv": {"available_bytes": sizing.kv_budget_per_rank_bytes,
                                                  "probe_len": PROBE_LEN, "gpu": True}}
                cases.append(Case(check["id"], sizing.kv_tokens_fit, sizing.kv_budget_per_rank_bytes, layout, check))
    return cases


def tiny_cases() -> list[Case]:
    ensure_tiny_models()
    cases = []
    for name, base in (("tiny-llama4", "llama4"), ("tiny-llama", "llama")):
        layout = tiny_layout(name)
        # No --block-size: the CPU platform picks its own, which the planner's layout must match.
        argv = [f"--model={MODELS / name}", f"--max-num-batched-tokens={TINY_BATCHED_TOKENS}",
                f"--max-model-len={tiny_architecture(name).max_context}"]
        check = {"id": f"{name}/cpu/auto", "argv": argv, "engine": True, "base": base, "config": {},
                 "kv": {"available_bytes": TINY_KV_BYTES, "probe_len": PROBE_LEN, "gpu": False}}
        cases.append(Case(check["id"], layout.longest_fitting(TINY_KV_BYTES), TINY_KV_BYTES, layout, check))
    return cases


@pytest.fixture(scope="module")
def compared() -> list[tuple[Case, dict[str, Any]]]:
    cases = gpu_cases() + tiny_cases()
    results = run_checker([case.check for case in cases])
    rows = [(case, results[case.id]) for case in cases]
    print("\nprofile / KV dtype                       KV GiB/rank   planner       vLLM   difference  vLLM groups")
    for case, result in rows:
        kv = result["kv"] or {}
        vllm = kv.get("max_model_len", 0)
        difference = (case.planner - vllm) / vllm if vllm else float("nan")
        print(f"{case.id:40s} {case.budget_bytes / 2**30:10.2f} {case.planner:10d} {vllm:10d} {difference:+11.4%}  "
              f"{kv.get('groups')}")
    return rows


@pytest.mark.parametrize("case_id", [case.id for case in gpu_cases()] + ["tiny-llama4/cpu/auto", "tiny-llama/cpu/auto"])
def test_planner_agrees_with_vllms_estimator(compared, case_id):
    case, result = next(row for row in compared if row[0].id == case_id)
    assert result["error"] is None, result["error"]
    kv = result["kv"]
    # vLLM built the layout the planner assumed: block size, tokens in flight, one group per
    # group_size layers of each kind.
    assert kv["block_size"] == case.layout.block_size
    assert kv["max_in_flight_tokens"] == case.layout.max_in_flight_tokens
    group_sizes = {size for _, size in kv["groups"]}
    assert group_sizes == {case.layout.group_size}, kv["groups"]
    assert case.planner == pytest.approx(kv["max_model_len"], rel=TOLERANCE), kv["message"]

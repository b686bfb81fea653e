"""The planner against public figures: ai-on-eks weight tables, the vLLM blog's runs, and refusals."""

from __future__ import annotations

from dataclasses import replace

import pytest

from llm_on_eks.catalog import default_catalog
from llm_on_eks.sizing import GIB, InfeasiblePlan, SizingRequest, check_feasible, kv_cache_layout, size, weight_bytes

CATALOG = default_catalog()
GB = 1e9


def request(model_id: str, accelerator: str = "gpu", **changes) -> SizingRequest:
    model = CATALOG.model(model_id)
    base = SizingRequest.from_profile(CATALOG, model, model.profile(accelerator))
    if "instance" in changes:
        changes["instance"] = CATALOG.instance_type(changes["instance"])
    return replace(base, **changes)


@pytest.mark.parametrize(
    ("model_id", "dtype", "seed_size", "unit"),
    [
        # ai-on-eks Llama 4 guides' tables, GPU and Trainium2 (GiB)
        ("llama4-scout", "bfloat16", 220, GIB),
        ("llama4-scout", "fp8", 110, GIB),
        ("llama4-maverick", "bfloat16", 800, GIB),
        ("llama4-maverick", "fp8", 400, GIB),
        # BF16 at 2 bytes per parameter: DeepSeek 32B ~64 GB, Llama 3 8B ~16 GB
        ("deepseek-r1-distill-qwen-32b", "bfloat16", 64, GB),
        ("llama-3-8b", "bfloat16", 16, GB),
    ],
)
def test_weight_sizes_match_the_seed_tables_within_10_percent(model_id, dtype, seed_size, unit):
    quantization = "fp8" if dtype == "fp8" else None
    computed = weight_bytes(CATALOG.model(model_id), "bfloat16", quantization) / unit
    assert computed == pytest.approx(seed_size, rel=0.10)


@pytest.mark.parametrize(
    ("model_id", "instance", "max_model_len"),
    [
        ("llama4-scout", "p5.48xlarge", 1_000_000),  # 8x H100
        ("llama4-scout", "p5en.48xlarge", 3_600_000),  # 8x H200
        ("llama4-maverick", "p5.48xlarge", 430_000),  # FP8, 8x H100
        ("llama4-maverick", "p5en.48xlarge", 1_000_000),  # FP8, 8x H200
    ],
)
def test_every_configuration_the_vllm_blog_ran_is_feasible(model_id, instance, max_model_len):
    sizing = check_feasible(CATALOG, request(model_id, instance=instance, max_model_len=max_model_len))
    assert sizing.feasible
    assert sizing.max_model_len_fit >= max_model_len


def test_maverick_bf16_on_h100_is_refused_naming_fp8_and_trainium():
    bf16 = request("llama4-maverick", hf_repo="meta-llama/Llama-4-Maverick-17B-128E-Instruct", quantization=None)
    with pytest.raises(InfeasiblePlan) as excinfo:
        check_feasible(CATALOG, bf16)
    message = str(excinfo.value)
    assert "weights need 745 GiB" in message
    assert "Llama-4-Maverick-17B-128E-Instruct-FP8, fp8) on 1x p5.48xlarge" in message
    assert "trn2.48xlarge" in message


def test_scout_bf16_on_one_h100_is_refused():
    with pytest.raises(InfeasiblePlan) as excinfo:
        check_feasible(CATALOG, request("llama4-scout", tensor_parallel_size=1))
    message = str(excinfo.value)
    assert "weights need 203 GiB (203.0 GiB per rank) but each of the 1 ranks has 70.0 GiB usable" in message
    assert "TP 8 x PP 1" in message.split("What would fit")[1]


def test_tensor_parallel_must_divide_the_heads_on_gpu():
    sizing = size(request("llama4-scout", tensor_parallel_size=3))
    assert "tensor parallel size 3 does not divide the 40 attention heads" in sizing.problems


def test_tensor_parallel_must_fit_the_devices():
    sizing = size(request("llama4-scout", tensor_parallel_size=10))
    assert "10 GPUs per node are needed but p5.48xlarge has 8" in sizing.problems


def test_context_beyond_memory_names_the_largest_that_fits():
    sizing = size(request("llama-3-8b", max_model_len=8192, gpu_memory_utilization=0.8))
    (problem,) = sizing.problems
    assert f"the largest that fits is {sizing.max_model_len_fit}" in problem
    assert "--kv-cache-dtype fp8" in problem


def test_fp8_kv_cache_doubles_the_context_that_fits():
    auto = size(request("llama-3-8b", gpu_memory_utilization=0.7))
    fp8 = size(request("llama-3-8b", gpu_memory_utilization=0.7, kv_cache_dtype="fp8"))
    assert fp8.kv_bytes_per_token_per_rank == auto.kv_bytes_per_token_per_rank / 2
    assert fp8.max_model_len_fit == pytest.approx(2 * auto.max_model_len_fit, rel=0.01)


def test_chunked_attention_layers_stop_growing_after_one_chunk():
    scout = request("llama4-scout")
    long, longer = size(replace(scout, max_model_len=1_000_000)), size(replace(scout, max_model_len=2_000_000))
    per_token = long.kv_bytes_per_token_per_rank
    global_share = (longer.kv_gib_for_max_model_len - long.kv_gib_for_max_model_len) * GIB / 1_000_000
    assert global_share == pytest.approx(per_token / 4, rel=0.01)


def test_every_catalog_profile_fits_at_its_defaults_and_prices_per_node():
    for model in CATALOG.models.values():
        for profile in model.profiles.values():
            sizing = size(SizingRequest.from_profile(CATALOG, model, profile))
            assert sizing.feasible, (model.id, profile.accelerator, sizing.problems)
            instance = CATALOG.instance_type(profile.instance_type)
            assert sizing.hourly_usd == pytest.approx(instance.hourly_usd * profile.nodes)


def test_neuron_ranks_must_divide_the_cores():
    sizing = size(request("llama4-scout", "neuron", tensor_parallel_size=24))
    assert "24 ranks per node do not divide the 64 NeuronCores of trn2.48xlarge" in sizing.problems


def test_chunked_layers_hold_a_chunk_plus_the_tokens_in_flight():
    """vLLM 0.32 on an H100: --max-num-batched-tokens 8192 by default, two batches in flight
    (async scheduling); 36 chunked layers in 3 groups of 12 beside the 12 global ones."""
    layout = kv_cache_layout(request("llama4-scout"))
    assert (layout.group_size, layout.block_size, layout.max_in_flight_tokens) == (12, 16, 2 * 8192)
    bound = 8192 + 2 * 8192
    assert layout.blocks_for(bound) - layout.blocks_for(bound - 16) == 4  # every group still grows
    assert layout.blocks_for(bound + 16) - layout.blocks_for(bound) == 1  # only the global group
    # A profile's own batch size moves the bound; an A100 defaults to 2048.
    assert kv_cache_layout(request("llama4-scout", max_num_batched_tokens=4096)).max_in_flight_tokens == 8192
    assert kv_cache_layout(request("llama4-scout", "gpu-p4d")).max_in_flight_tokens == 2 * 2048


def test_the_null_block_and_whole_blocks_come_off_the_budget():
    layout = kv_cache_layout(request("llama-3-8b"))
    blocks = 100
    # One block of the pool is vLLM's null block; the other 99 hold 99 x 16 tokens.
    assert layout.longest_fitting(blocks * layout.bytes_per_block) == (blocks - 1) * 16
    assert layout.longest_fitting(blocks * layout.bytes_per_block - 1) == (blocks - 2) * 16

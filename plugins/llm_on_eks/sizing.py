"""Sizing: will this model, at this precision and context length, fit on these accelerators?

A wrong guess here is expensive: a p5 or trn2 node is created, weights are staged for half an
hour, and vLLM then dies with "out of memory" or "max seq len needs more KV cache than
available". So the planner does the arithmetic first and refuses, naming what would fit.

The model of memory per rank (one tensor/pipeline-parallel worker):

    usable  = device memory x utilisation - runtime reserve
    weights = params x bytes/param / (TP x PP)          (all MoE experts count, not active ones)
    KV/token = 2 (K and V) x ceil(kv_heads / TP) x head_dim x bytes x layers / PP
    reserve = activations at the largest batch, CUDA graphs, NCCL (a planning figure, per rank)

Llama 4 interleaves chunked local attention (3 of 4 layers, chunk 8192) with global layers;
vLLM's hybrid KV-cache manager keeps at most one chunk (plus the tokens in flight) of KV for
local layers, so only the global layers grow with context. That is why 8x H100 can hold Scout
at 1M tokens (vLLM blog, "Llama 4 in vLLM").

On GPU the longest context is counted the way vLLM 0.32 counts it at start-up, in blocks and
KV-cache groups (KvCacheLayout); tests/test_kv_vllm.py checks it against vLLM's own estimator.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from typing import TypedDict

from llm_on_eks.catalog import Architecture, Catalog, InstanceType, Model, Profile

GIB = 2**30
BYTES_PER_PARAM = {"bfloat16": 2, "float16": 2, "fp8": 1}
KV_BYTES = {"fp8": 1, "fp8_e4m3": 1, "fp8_e5m2": 1}
# vLLM 0.32's default tokens per KV block (vllm/config/cache.py, CacheConfig.DEFAULT_BLOCK_SIZE),
# which FlashAttention keeps (vllm/v1/attention/backend.py, get_preferred_block_size). A backend
# that prefers larger blocks shifts the answer by less than one block.
GPU_BLOCK_SIZE = 16
# Where max_model_len_fit comes from, for the plan summary.
KV_SOURCE_GPU = "vLLM's KV-cache estimator, vLLM 0.32"
KV_SOURCE_TOKENS = "per-token arithmetic; the Neuron builds size their KV cache themselves"


class InfeasiblePlan(ValueError):
    """The requested deployment cannot work; the message says why and what would."""


@dataclass(frozen=True)
class SizingRequest:
    """Everything sizing depends on, already resolved from catalog defaults and overrides."""

    model: Model
    instance: InstanceType
    hf_repo: str
    dtype: str
    quantization: str | None
    kv_cache_dtype: str
    tensor_parallel_size: int
    pipeline_parallel_size: int
    nodes: int
    max_model_len: int
    gpu_memory_utilization: float
    runtime_reserve_gib: float
    neuron_devices: int | None = None
    # --max-num-batched-tokens when the profile sets it; else vLLM's default for the device.
    max_num_batched_tokens: int | None = None

    @classmethod
    def from_profile(cls, catalog: Catalog, model: Model, profile: Profile, **overrides) -> SizingRequest:
        values = dict(
            model=model,
            instance=catalog.instance_type(profile.instance_type),
            hf_repo=profile.hf_repo,
            dtype=profile.dtype,
            quantization=profile.quantization,
            kv_cache_dtype=profile.kv_cache_dtype,
            tensor_parallel_size=profile.tensor_parallel_size,
            pipeline_parallel_size=profile.pipeline_parallel_size,
            nodes=profile.nodes,
            max_model_len=profile.max_model_len.default,
            gpu_memory_utilization=profile.gpu_memory_utilization,
            runtime_reserve_gib=catalog.runtime_reserve_gib_per_device,
            neuron_devices=profile.devices,
            max_num_batched_tokens=profile.vllm_args.get("max-num-batched-tokens"),
        )
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def describe(self) -> str:
        precision = self.quantization or self.dtype
        return (
            f"{self.model.id} ({self.hf_repo}, {precision}) on {self.nodes}x {self.instance.name} "
            f"with TP {self.tensor_parallel_size} x PP {self.pipeline_parallel_size}, "
            f"max_model_len {self.max_model_len}"
        )


@dataclass
class Sizing:
    """The arithmetic behind a plan, kept in the plan so a reader can check it."""

    weights_gib: float
    ranks: int
    ranks_per_node: int
    accelerators_per_node: int
    memory_per_rank_gib: float
    usable_per_rank_gib: float
    weights_per_rank_gib: float
    kv_budget_per_rank_gib: float
    kv_budget_per_rank_bytes: int
    # Activations, CUDA graphs / Neuron runtime buffers, NCCL: kept out of the KV budget; the
    # estimator test cannot check it (vLLM measures it by profiling on the device).
    runtime_reserve_gib: float
    kv_bytes_per_token_per_rank: int
    kv_cache_layout: dict
    # The longest request the KV budget holds, before the model's context caps it.
    kv_tokens_fit: int
    kv_source: str
    kv_gib_for_max_model_len: float
    max_model_len_fit: int
    max_model_len: int
    hourly_usd: float
    problems: list[str] = field(default_factory=list)

    @property
    def feasible(self) -> bool:
        return not self.problems

    def as_dict(self) -> SizingSection:
        return {**asdict(self), "feasible": self.feasible}  # type: ignore[typeddict-item]


# ``Sizing`` as the plan carries it (``as_dict``): its fields, and whether it is feasible.
SizingSection = TypedDict("SizingSection", {**Sizing.__annotations__, "feasible": "bool"})  # type: ignore[misc]


def weight_bytes(model: Model, dtype: str, quantization: str | None) -> float:
    """Bytes of weights in accelerator memory: every parameter, at the checkpoint's precision."""
    return model.architecture.total_params_b * 1e9 * BYTES_PER_PARAM[quantization or dtype]


def vllm_default_max_num_batched_tokens(instance: InstanceType) -> int:
    """vLLM 0.32's --max-num-batched-tokens default for its OpenAI server on this GPU
    (vllm/engine/arg_utils.py, EngineArgs.get_batch_defaults: 16384 from 160 GiB, 8192 from 70 GiB
    unless an A100, else 2048)."""
    if instance.device_memory_gib >= 160:
        return 16384
    if instance.device_memory_gib >= 70 and "a100" not in instance.device.lower():
        return 8192
    return 2048


@dataclass(frozen=True)
class KvCacheLayout:
    """One rank's KV cache as vLLM 0.32's KV-cache manager lays it out, in what a request costs.

    Layers with the same spec form KV-cache groups of equal size; a block holds ``block_size``
    tokens of every layer of one group, and every group draws blocks from one pool
    (vllm/v1/core/kv_cache_utils.py: _get_kv_cache_groups_uniform_page_size,
    _get_kv_cache_bytes_per_block, _max_memory_usage_bytes_from_groups).
    """

    block_size: int
    bytes_per_token_per_layer: int
    full_layers: int
    local_layers: int
    attention_chunk_size: int | None
    # Tokens scheduled but not yet freed: a chunked layer keeps its chunk plus these
    # (vllm/v1/kv_cache_interface.py, ChunkedLocalAttentionSpec.max_admission_blocks_per_request).
    max_in_flight_tokens: int
    # vLLM sets one pool block aside (the null block, BlockPool) before checking a request fits
    # (kv_cache_utils.py, get_kv_cache_configs: "Reserve the null block").
    null_block: bool

    @property
    def group_size(self) -> int:
        """Layers per KV-cache group: the smaller layer type's count, or the larger one when it is
        under 1.5x (kv_cache_utils.py, _get_kv_cache_groups_uniform_page_size); one group without
        chunked layers (_get_kv_cache_groups_uniform_spec)."""
        if not self.local_layers:
            return self.full_layers
        fewer, more = sorted((self.full_layers, self.local_layers))
        return more if more < fewer * 1.5 else fewer

    @property
    def bytes_per_block(self) -> int:
        """A pool block: one block of every layer of a group (shorter groups are padded)."""
        return self.group_size * self.block_size * self.bytes_per_token_per_layer

    def blocks_for(self, tokens: int) -> int:
        """Blocks one request of ``tokens`` needs, summed over the groups."""
        full_groups = math.ceil(self.full_layers / self.group_size)
        local_groups = math.ceil(self.local_layers / self.group_size)
        local_tokens = min(tokens, (self.attention_chunk_size or 0) + self.max_in_flight_tokens)
        return (full_groups * math.ceil(tokens / self.block_size)
                + local_groups * math.ceil(local_tokens / self.block_size))

    def bytes_for(self, tokens: int) -> int:
        return self.blocks_for(tokens) * self.bytes_per_block

    def longest_fitting(self, budget_bytes: int) -> int:
        """The longest single request that fits in ``budget_bytes``, by the binary search vLLM's
        estimator runs (kv_cache_utils.py, _estimate_max_model_len_from_groups); 0 if none."""
        usable = budget_bytes - (self.bytes_per_block if self.null_block else 0)
        low, high = 0, max(0, usable // self.bytes_per_block) * self.block_size
        while low < high:
            middle = (low + high + 1) // 2
            if self.bytes_for(middle) <= usable:
                low = middle
            else:
                high = middle - 1
        return low


def vllm_kv_cache_layout(arch: Architecture, *, tensor_parallel_size: int, pipeline_parallel_size: int,
                         kv_bytes: int, block_size: int, max_in_flight_tokens: int) -> KvCacheLayout:
    """The layout vLLM 0.32 builds on one rank for a model of this architecture."""
    # KV heads per rank: max(1, kv_heads // TP) in vLLM's attention layers (llama4.py,
    # Llama4Attention); TP must divide them or be a multiple of them (_parallelism_problems).
    heads_per_rank = math.ceil(arch.kv_heads / tensor_parallel_size)
    # Llama 4's global layers are its NoPE layers, every 4th (transformers Llama4TextConfig,
    # no_rope_layers); vLLM gives the others ChunkedLocalAttention (llama4.py, Llama4Attention).
    global_layers = arch.layers // arch.global_attention_every if arch.attention_chunk_size else arch.layers
    pp = pipeline_parallel_size
    return KvCacheLayout(
        block_size=block_size,
        bytes_per_token_per_layer=2 * heads_per_rank * arch.head_dim * kv_bytes,
        full_layers=global_layers // pp,
        local_layers=(arch.layers - global_layers) // pp,
        attention_chunk_size=arch.attention_chunk_size,
        max_in_flight_tokens=max_in_flight_tokens,
        null_block=True,
    )


def kv_cache_layout(request: SizingRequest) -> KvCacheLayout:
    """vLLM 0.32's layout for this request on one GPU; for the Neuron builds, which size their
    KV cache themselves, the same per-token arithmetic with a one-chunk bound and no blocks."""
    tp, pp = request.tensor_parallel_size, request.pipeline_parallel_size
    kv_bytes = KV_BYTES.get(request.kv_cache_dtype, BYTES_PER_PARAM[request.dtype])
    arch = request.model.architecture
    if request.instance.accelerator != "gpu":
        layout = vllm_kv_cache_layout(arch, tensor_parallel_size=tp, pipeline_parallel_size=pp, kv_bytes=kv_bytes,
                                      block_size=1, max_in_flight_tokens=0)
        return replace(layout, null_block=False)
    # Concurrent batches: PP + 1 with async scheduling, vLLM's GPU default (vllm/config/vllm.py,
    # VllmConfig.max_concurrent_batches), each up to --max-num-batched-tokens.
    batched = request.max_num_batched_tokens or vllm_default_max_num_batched_tokens(request.instance)
    return vllm_kv_cache_layout(arch, tensor_parallel_size=tp, pipeline_parallel_size=pp, kv_bytes=kv_bytes,
                                block_size=GPU_BLOCK_SIZE, max_in_flight_tokens=(pp + 1) * batched)


def _parallelism_problems(request: SizingRequest, ranks_per_node: int) -> list[str]:
    arch = request.model.architecture
    instance = request.instance
    tp, pp = request.tensor_parallel_size, request.pipeline_parallel_size
    problems = []
    if (tp * pp) % request.nodes:
        problems.append(f"TP x PP = {tp * pp} ranks do not split evenly over {request.nodes} nodes")
    if instance.accelerator == "gpu":
        if ranks_per_node > instance.devices:
            problems.append(
                f"{ranks_per_node} GPUs per node are needed but {instance.name} has {instance.devices}"
            )
        # vLLM's CUDA path shards attention heads evenly; Neuron (NxD Inference) pads them instead.
        if arch.attention_heads % tp:
            problems.append(f"tensor parallel size {tp} does not divide the {arch.attention_heads} attention heads")
        elif arch.kv_heads % tp and tp % arch.kv_heads:
            problems.append(f"tensor parallel size {tp} and the {arch.kv_heads} KV heads do not divide each other")
    else:
        if ranks_per_node > instance.logical_cores:
            problems.append(
                f"{ranks_per_node} NeuronCores per node are needed but {instance.name} has {instance.logical_cores}"
            )
        elif instance.logical_cores % ranks_per_node:
            problems.append(
                f"{ranks_per_node} ranks per node do not divide the {instance.logical_cores} NeuronCores of {instance.name}"
            )
        if request.neuron_devices and request.neuron_devices > instance.devices:
            problems.append(f"{request.neuron_devices} Neuron devices requested but {instance.name} has {instance.devices}")
    if arch.layers % pp:
        problems.append(f"pipeline parallel size {pp} does not divide the {arch.layers} layers")
    return problems


def size(request: SizingRequest) -> Sizing:
    """Compute memory, the longest context that fits, cost, and every reason it cannot work."""
    instance = request.instance
    arch = request.model.architecture
    ranks = request.tensor_parallel_size * request.pipeline_parallel_size
    ranks_per_node = max(1, ranks // request.nodes)
    if instance.accelerator == "gpu":
        accelerators_per_node = ranks_per_node
        memory_per_rank = instance.device_memory_gib
    else:
        accelerators_per_node = request.neuron_devices or instance.devices
        memory_per_rank = accelerators_per_node * instance.device_memory_gib * request.nodes / ranks
    usable = memory_per_rank * request.gpu_memory_utilization - request.runtime_reserve_gib
    weights = weight_bytes(request.model, request.dtype, request.quantization)
    weights_per_rank = weights / ranks / GIB
    kv_budget = usable - weights_per_rank
    kv_budget_bytes = max(0, int(kv_budget * GIB))
    layout = kv_cache_layout(request)
    kv_tokens = layout.longest_fitting(kv_budget_bytes)
    fit = min(kv_tokens, arch.max_context)
    kv_needed = layout.bytes_for(request.max_model_len) / GIB

    problems = _parallelism_problems(request, ranks_per_node)
    if weights_per_rank > usable:
        problems.append(
            f"weights need {weights / GIB:.0f} GiB ({weights_per_rank:.1f} GiB per rank) but each of the "
            f"{ranks} ranks has {usable:.1f} GiB usable ({memory_per_rank:.0f} GiB x "
            f"{request.gpu_memory_utilization} - {request.runtime_reserve_gib} GiB reserve)"
        )
    elif request.max_model_len > fit:
        problems.append(
            f"max_model_len {request.max_model_len} needs {kv_needed:.1f} GiB of KV cache per rank but "
            f"{kv_budget:.1f} GiB is left after weights; the largest that fits is {fit}"
            + ("" if request.kv_cache_dtype.startswith("fp8") else " (--kv-cache-dtype fp8 roughly doubles it)")
        )
    if request.max_model_len > arch.max_context:
        problems.append(f"max_model_len {request.max_model_len} exceeds the model's context of {arch.max_context}")
    return Sizing(
        weights_gib=round(weights / GIB, 1),
        ranks=ranks,
        ranks_per_node=ranks_per_node,
        accelerators_per_node=accelerators_per_node,
        memory_per_rank_gib=round(memory_per_rank, 2),
        usable_per_rank_gib=round(usable, 2),
        weights_per_rank_gib=round(weights_per_rank, 2),
        kv_budget_per_rank_gib=round(kv_budget, 2),
        kv_budget_per_rank_bytes=kv_budget_bytes,
        runtime_reserve_gib=request.runtime_reserve_gib,
        kv_bytes_per_token_per_rank=layout.bytes_per_token_per_layer * (layout.full_layers + layout.local_layers),
        kv_cache_layout=asdict(layout),
        kv_tokens_fit=kv_tokens,
        kv_source=KV_SOURCE_GPU if instance.accelerator == "gpu" else KV_SOURCE_TOKENS,
        kv_gib_for_max_model_len=round(kv_needed, 2),
        max_model_len_fit=fit,
        max_model_len=request.max_model_len,
        hourly_usd=round(instance.hourly_usd * request.nodes, 3),
        problems=problems,
    )


def alternatives(catalog: Catalog, request: SizingRequest) -> list[str]:
    """Configurations of the same model that fit: its catalog profiles, then other GPU instances."""
    found = []
    for name, profile in request.model.profiles.items():
        candidate = SizingRequest.from_profile(catalog, request.model, profile)
        if size(candidate).feasible:
            found.append(f"the {name!r} profile: {candidate.describe()}")
    if request.instance.accelerator == "gpu":
        for instance in catalog.instance_types.values():
            if instance.accelerator != "gpu" or instance.name == request.instance.name:
                continue
            candidate = replace(
                request, instance=instance, tensor_parallel_size=instance.devices, pipeline_parallel_size=1, nodes=1
            )
            if size(candidate).feasible:
                found.append(candidate.describe())
    return found


def check_feasible(catalog: Catalog, request: SizingRequest) -> Sizing:
    """Size the request; raise InfeasiblePlan saying why and what would fit instead."""
    sizing = size(request)
    if sizing.feasible:
        return sizing
    fits = alternatives(catalog, request)
    message = f"{request.describe()} cannot work:\n  - " + "\n  - ".join(sizing.problems)
    if fits:
        message += "\nWhat would fit:\n  - " + "\n  - ".join(fits)
    else:
        message += "\nNo catalog configuration of this model fits at this context length."
    raise InfeasiblePlan(message)

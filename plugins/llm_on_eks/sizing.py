"""Sizing: will this model, at this precision and context length, fit on these accelerators?

A wrong guess here is expensive: a p5 or trn2 node is created, weights are staged for half an
hour, and vLLM then dies with "out of memory" or "max seq len needs more KV cache than
available". So the planner does the arithmetic first and refuses, naming what would fit.

The model of memory per rank (one tensor/pipeline-parallel worker):

    usable  = device memory x utilisation - runtime reserve
    weights = params x bytes/param / (TP x PP)          (all MoE experts count, not active ones)
    KV/token = 2 (K and V) x ceil(kv_heads / TP) x head_dim x bytes x layers / PP

Llama 4 interleaves chunked local attention (3 of 4 layers, chunk 8192) with global layers;
vLLM's hybrid KV-cache manager keeps at most one chunk of KV for local layers, so only the
global layers grow with context. That is why 8x H100 can hold Scout at 1M tokens (vLLM blog, "Llama 4 in vLLM").
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace

from llm_on_eks.catalog import Catalog, InstanceType, Model, Profile

GIB = 2**30
BYTES_PER_PARAM = {"bfloat16": 2, "float16": 2, "fp8": 1}
KV_BYTES = {"fp8": 1, "fp8_e4m3": 1, "fp8_e5m2": 1}


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
    kv_bytes_per_token_per_rank: float
    kv_gib_for_max_model_len: float
    max_model_len_fit: int
    max_model_len: int
    hourly_usd: float
    problems: list[str] = field(default_factory=list)

    @property
    def feasible(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict:
        return {**asdict(self), "feasible": self.feasible}


def weight_bytes(model: Model, dtype: str, quantization: str | None) -> float:
    """Bytes of weights in accelerator memory: every parameter, at the checkpoint's precision."""
    return model.architecture.total_params_b * 1e9 * BYTES_PER_PARAM[quantization or dtype]


def _kv_bytes_per_token(request: SizingRequest) -> tuple[float, float]:
    """KV bytes per token on one rank: (global layers, chunked local layers)."""
    arch = request.model.architecture
    kv_bytes = KV_BYTES.get(request.kv_cache_dtype, BYTES_PER_PARAM[request.dtype])
    heads_per_rank = math.ceil(arch.kv_heads / request.tensor_parallel_size)
    per_layer = 2 * heads_per_rank * arch.head_dim * kv_bytes
    if arch.attention_chunk_size:
        global_layers = arch.layers // arch.global_attention_every
    else:
        global_layers = arch.layers
    local_layers = arch.layers - global_layers
    pp = request.pipeline_parallel_size
    return per_layer * global_layers / pp, per_layer * local_layers / pp


def _kv_bytes_for(request: SizingRequest, tokens: int) -> float:
    global_bytes, local_bytes = _kv_bytes_per_token(request)
    chunk = request.model.architecture.attention_chunk_size or tokens
    return global_bytes * tokens + local_bytes * min(tokens, chunk)


def _longest_fitting(request: SizingRequest, free_bytes: float) -> int:
    """The longest single sequence whose KV cache fits in free_bytes on one rank."""
    if free_bytes <= 0:
        return 0
    global_bytes, local_bytes = _kv_bytes_per_token(request)
    chunk = request.model.architecture.attention_chunk_size
    if chunk and free_bytes >= (global_bytes + local_bytes) * chunk:
        tokens = chunk + (free_bytes - (global_bytes + local_bytes) * chunk) / global_bytes
    else:
        tokens = free_bytes / (global_bytes + local_bytes)
    return min(int(tokens), request.model.architecture.max_context)


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
    global_bytes, local_bytes = _kv_bytes_per_token(request)
    fit = _longest_fitting(request, kv_budget * GIB)
    kv_needed = _kv_bytes_for(request, request.max_model_len) / GIB

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
        kv_bytes_per_token_per_rank=global_bytes + local_bytes,
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

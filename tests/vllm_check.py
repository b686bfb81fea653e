"""vLLM judges our command lines: run under .venv-vllm's Python (the vLLM the tests install), never
imported by the test suite's own interpreter.

Reads a JSON list of cases on stdin, each ``{"id", "argv", "engine", "base", "config"}``: ``argv``
is a server command line without its command (``--model=... --port=... --flag=value ...``),
parsed by vLLM's own server argument parser (``make_arg_parser``, what ``vllm serve`` and
``python -m vllm.entrypoints.openai.api_server`` use); with ``engine`` true, vLLM's engine
configuration (model, parallel, cache, scheduler config: ``AsyncEngineArgs.create_engine_config``)
is also built, against a tiny local model directory: the tokenizer and processor files of
scripts/make-tiny-model's ``base`` model ("llama4" or "llama") with ``config`` merged into its
config.json, so that the fields vLLM checks at start-up (architecture, heads, layers,
max_position_embeddings, the checkpoint's quantization_config) are the real model's. No
weights are loaded and nothing is downloaded (HF_HUB_OFFLINE).

With ``kv`` (``{"available_bytes", "probe_len", "gpu"}``), vLLM's start-up KV-cache check is
also run on that engine configuration for one tensor-parallel rank: the per-layer KV-cache specs
its attention layers would report (kv_cache_specs), and ``get_kv_cache_configs`` (what
EngineCore._initialize_kv_caches calls) given ``available_bytes`` with ``max_model_len`` set to
``probe_len``; its refusal carries vLLM's estimate of the longest request that fits. ``gpu``
makes the configuration what the CUDA platform would leave where the CPU one differs
(async scheduling).

Prints ``{id: {"error": str | None, "engine": {...} | None, "kv": {...} | None}}`` as JSON on
stdout's last line.
"""

from __future__ import annotations

import contextlib
import importlib.machinery
import importlib.util
import io
import json
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def _tiny_models(out: Path) -> dict[str, Path]:
    """The tokenizer/processor bases, made by scripts/make-tiny-model's own code."""
    script = ROOT / "scripts" / "make-tiny-model"
    loader = importlib.machinery.SourceFileLoader("make_tiny_model", str(script))
    module = importlib.util.module_from_spec(importlib.util.spec_from_loader("make_tiny_model", loader))
    loader.exec_module(module)
    recipe = script.read_text()
    return {"llama4": module.write_model(out, "tiny-llama4", recipe), "llama": module.write_model(out, "tiny-llama", recipe)}


def _merge(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in changes.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _model_dir(bases: dict[str, Path], case: dict[str, Any], work: Path) -> Path:
    target = work / case["id"]
    shutil.copytree(bases[case["base"]], target)
    config = json.loads((target / "config.json").read_text())
    (target / "config.json").write_text(json.dumps(_merge(config, case["config"]), indent=2))
    return target


def _with_model(argv: list[str], model: Path) -> list[str]:
    """The command line with --model pointing at the tiny directory (its --revision dropped: a
    local directory has none)."""
    kept = [a for a in argv if not a.startswith(("--model=", "--revision="))]
    return [f"--model={model}", *kept]


def kv_cache_specs(config: Any) -> dict[str, Any]:
    """One TP rank's KV-cache spec per attention layer, as vLLM 0.32's layers build them:
    Attention.get_kv_cache_spec (FullAttentionSpec) and ChunkedLocalAttention.get_kv_cache_spec
    (vllm/model_executor/layers/attention/), with Llama4Attention's choice of which layers are
    chunked (vllm/model_executor/models/llama4.py: RoPE layers, when attention_chunk_size is set)."""
    from vllm.utils.torch_utils import kv_cache_dtype_str_to_dtype
    from vllm.v1.kv_cache_interface import ChunkedLocalAttentionSpec, FullAttentionSpec, get_kv_quant_mode

    model, cache, parallel = config.model_config, config.cache_config, config.parallel_config
    text = model.hf_text_config
    chunk = getattr(text, "attention_chunk_size", None)
    # transformers fills no_rope_layers (Llama4TextConfig: 0 on every 4th layer, the NoPE ones).
    no_rope = getattr(text, "no_rope_layers", None)
    common = {"block_size": cache.block_size, "num_kv_heads": model.get_num_kv_heads(parallel),
              "head_size": model.get_head_size(), "dtype": kv_cache_dtype_str_to_dtype(cache.cache_dtype, model),
              "kv_quant_mode": get_kv_quant_mode(cache.cache_dtype)}
    start, end = model.get_layers_start_end_indices(parallel)
    specs = {}
    for index in range(start, end):
        name = f"model.layers.{index}.self_attn.attn"
        if chunk and no_rope and no_rope[index]:
            specs[name] = ChunkedLocalAttentionSpec(attention_chunk_size=chunk, **common)
        else:
            specs[name] = FullAttentionSpec(**common)
    return specs


def kv_estimate(config: Any, kv: dict[str, Any]) -> dict[str, Any]:
    """vLLM's own start-up check on one rank with ``available_bytes`` for the KV cache: the
    longest request it accepts (from its "estimated maximum model length is N" refusal) and
    the groups it made."""
    from vllm.v1.attention.backends.flash_attn import FlashAttentionBackend
    from vllm.v1.attention.backends.utils import get_supported_kv_cache_layouts, resolve_kv_cache_layout
    from vllm.v1.core.kv_cache_utils import get_kv_cache_configs, get_kv_cache_groups

    if kv["gpu"]:
        # The CPU platform turns async scheduling off (vllm/platforms/cpu.py); on CUDA it is on
        # by default (VllmConfig.__post_init__), which doubles the tokens in flight.
        config.scheduler_config.async_scheduling = True
    specs = kv_cache_specs(config)
    if kv["gpu"]:
        backends = [FlashAttentionBackend]
    else:
        from vllm.v1.attention.backends.cpu_attn import CPUAttentionBackend
        backends = [CPUAttentionBackend]
    # As EngineCore._initialize_kv_caches does before sizing the cache.
    layouts = [[layout.name for layout in get_supported_kv_cache_layouts(backends)]]
    resolve_kv_cache_layout(config, layouts, specs.values())
    # The estimator itself probes by setting max_model_len (estimate_max_model_len); a probe far
    # beyond any fit makes the check refuse and report its estimate.
    config.model_config.max_model_len = kv["probe_len"]
    try:
        get_kv_cache_configs(config, [specs], [kv["available_bytes"]])
    except ValueError as exc:
        message = str(exc)
    else:
        raise AssertionError(f"{kv['probe_len']} tokens fit in {kv['available_bytes']} bytes: raise the probe")
    found = re.search(r"estimated maximum model length is (\d+)", message)
    if not found:
        raise ValueError(message)
    estimate = int(found.group(1))
    groups = get_kv_cache_groups(config, dict(specs))
    return {"max_model_len": estimate, "message": message.split(". Try")[0],
            "groups": [[type(g.kv_cache_spec).__name__, len(g.layer_names)] for g in groups],
            "block_size": config.cache_config.block_size,
            "max_in_flight_tokens": config.max_in_flight_tokens}


def check(case: dict[str, Any], bases: dict[str, Path], work: Path) -> dict[str, Any]:
    from vllm.engine.arg_utils import AsyncEngineArgs
    from vllm.entrypoints.launchers.cli_args import make_arg_parser
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    parser = make_arg_parser(FlexibleArgumentParser(description="vLLM OpenAI-compatible API server"))
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr):
            parser.parse_args(case["argv"])
    except SystemExit:
        # argparse prints the usage, then "<prog>: error: ..." as its last line.
        error = stderr.getvalue().strip().splitlines()[-1:] or ["(no message)"]
        return {"error": f"vLLM's argument parser refused the command line: {error[0]}", "engine": None}
    if not case.get("engine"):
        return {"error": None, "engine": None}
    model = _model_dir(bases, case, work)
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            namespace = parser.parse_args(_with_model(case["argv"], model))
        config = AsyncEngineArgs.from_cli_args(namespace).create_engine_config()
    except Exception as exc:  # noqa: BLE001 - any refusal is the finding
        return {"error": f"vLLM's engine configuration refused it: {type(exc).__name__}: {exc}", "engine": None}
    engine = {
        "architecture": config.model_config.architecture,
        "quantization": config.model_config.quantization,
        "max_model_len": config.model_config.max_model_len,
        "dtype": str(config.model_config.dtype),
        "tensor_parallel_size": config.parallel_config.tensor_parallel_size,
        "pipeline_parallel_size": config.parallel_config.pipeline_parallel_size,
        "kv_cache_dtype": config.cache_config.cache_dtype,
        "gpu_memory_utilization": config.cache_config.gpu_memory_utilization,
        "limit_mm_per_prompt": {k: getattr(v, "count", v) for k, v in
                                (config.model_config.multimodal_config.limit_per_prompt.items()
                                 if config.model_config.multimodal_config else [])},
    }
    # Last: the KV check changes the configuration's max_model_len (and the GPU case's scheduling).
    return {"error": None, "engine": engine, "kv": kv_estimate(config, case["kv"]) if case.get("kv") else None}


def main() -> None:
    cases = json.load(sys.stdin)
    results = {}
    with tempfile.TemporaryDirectory(prefix="vllm-check-") as tmp:
        work = Path(tmp)
        bases = _tiny_models(work / "bases")
        for case in cases:
            results[case["id"]] = check(case, bases, work)
    print(json.dumps(results))


if __name__ == "__main__":
    main()

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

Prints ``{id: {"error": str | None, "engine": {...} | None}}`` as JSON on stdout's last line.
"""

from __future__ import annotations

import contextlib
import importlib.machinery
import importlib.util
import io
import json
import os
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
    return {"error": None, "engine": {
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
    }}


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

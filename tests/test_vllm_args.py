"""vLLM checks our command lines: every catalog profile's server arguments (at their defaults and
with the overrides at their limits), as the chart renders them into the container (helm
template), go through the real vLLM installed for the tests (.venv-vllm, tests/vllm_check.py):
its own argument parser for every profile, and for the GPU profiles its engine configuration
(model, parallel, cache and scheduler config) against a tiny local model directory whose
config.json carries the fields vLLM checks at start-up: the architecture, heads and layers,
max_position_embeddings, and the quantization_config of the checkpoint the profile serves. A flag
vLLM would refuse at start-up, after an hour of compiling or a 400 GiB weight load, fails here.

The Neuron profiles run other vLLM builds (optimum-neuron's 0.11, the NxD Inference plugin's 0.13),
whose engines need Neuron devices: only their command lines are parsed, those of the serving pod
and of the compile Job, by vLLM 0.32's parser. Flags only a Neuron build knows are dropped
before parsing, and only those in NEURON_ONLY_FLAGS.

Integration tier (the vLLM interpreter, the helm CLI of scripts/sandbox-cluster); one vLLM
process judges every case, in about a minute.
"""

from __future__ import annotations

import copy
import json
import shlex
import subprocess
from typing import Any

import pytest
import yaml

from llm_on_eks.catalog import CATALOG_PATH, Catalog, Model, Profile, default_catalog, parse_catalog
from llm_on_eks.kube.helm_values import CHART_DIR, helm_values
from llm_on_eks.kube.manifests import SERVER_COMMAND, neuron_compile_job
from llm_on_eks.plan import Plan, build_plan
from tests.conftest import ROOT

pytestmark = pytest.mark.integration

VLLM_PYTHON = ROOT / ".venv-vllm" / "bin" / "python"
CHECKER = ROOT / "tests" / "vllm_check.py"
CHECK_TIMEOUT_S = 600
BASE = {"cluster_name": "c1", "region": "us-east-2"}

# Flags of our Neuron command lines that vLLM 0.32's parser does not know, with the source that
# says the Neuron build takes them. None today: the NxD Inference neuron config goes through
# vLLM's own --additional-config (vllm-neuron plugin: additional_config.override_neuron_config),
# and the optimum profiles use only vLLM flags (ai-on-eks-charts PR #12 modelParameters).
NEURON_ONLY_FLAGS: dict[str, str] = {}

# What each catalog model's Hugging Face config.json says about the fields vLLM checks; sizes
# come from the catalog's architecture (the same numbers the planner uses).
HF_ARCHITECTURES = {
    "llama4-scout": "Llama4ForConditionalGeneration",
    "llama4-maverick": "Llama4ForConditionalGeneration",
    "deepseek-r1-distill-qwen-32b": "Qwen2ForCausalLM",
    "llama-3-8b": "LlamaForCausalLM",
}

# The quantization_config each pre-quantized checkpoint's config.json carries. RedHatAI's FP8
# Llama 4 checkpoints are made with llm-compressor's FP8 dynamic scheme (their model cards):
# compressed-tensors, float weights per channel, dynamic per-token float activations. Meta's -FP8
# checkpoint declares fbgemm_fp8 (the method vLLM 0.32 deprecates).
COMPRESSED_TENSORS_FP8 = {
    "quant_method": "compressed-tensors",
    "format": "float-quantized",
    "quantization_status": "compressed",
    "config_groups": {"group_0": {
        "targets": ["Linear"],
        "weights": {"num_bits": 8, "type": "float", "symmetric": True, "strategy": "channel", "dynamic": False},
        "input_activations": {"num_bits": 8, "type": "float", "symmetric": True, "strategy": "token", "dynamic": True},
        "output_activations": None,
    }},
    "ignore": ["re:.*lm_head", "re:.*self_attn", "re:.*router", "re:.*vision_model.*", "re:.*multi_modal_projector.*"],
    "kv_cache_scheme": None,
}
FBGEMM_FP8 = {"quant_method": "fbgemm_fp8", "activation_scale_ub": 1200.0,
              "modules_to_not_convert": ["vision_model", "multi_modal_projector", "lm_head"]}
CHECKPOINT_QUANTIZATION = {
    "RedHatAI/Llama-4-Maverick-17B-128E-Instruct-FP8": COMPRESSED_TENSORS_FP8,
    "meta-llama/Llama-4-Maverick-17B-128E-Instruct-FP8": FBGEMM_FP8,
}


def model_config(model: Model, profile: Profile) -> tuple[str, dict[str, Any]]:
    """The tiny model's base (scripts/make-tiny-model) and the config.json fields that matter."""
    arch = model.architecture
    sizes = {"hidden_size": arch.hidden_size, "num_hidden_layers": arch.layers,
             "num_attention_heads": arch.attention_heads, "num_key_value_heads": arch.kv_heads,
             "head_dim": arch.head_dim, "max_position_embeddings": arch.max_context}
    architecture = HF_ARCHITECTURES[model.id]
    if architecture == "Llama4ForConditionalGeneration":
        # no_rope_layers: None drops the tiny model's two-layer list (transformers derives it).
        text = {**sizes, "num_local_experts": arch.experts, "attention_chunk_size": arch.attention_chunk_size,
                "no_rope_layers": None}
        config: dict[str, Any] = {"architectures": [architecture], "text_config": text}
        base = "llama4"
    else:
        model_type = {"Qwen2ForCausalLM": "qwen2", "LlamaForCausalLM": "llama"}[architecture]
        config, base = {"architectures": [architecture], "model_type": model_type, **sizes}, "llama"
    if profile.quantization:
        # A checkpoint quantized ahead carries its method; what the real one says, not the catalog.
        config["quantization_config"] = CHECKPOINT_QUANTIZATION[profile.hf_repo]
    return base, config


@pytest.fixture(scope="module")
def helm() -> str:
    return subprocess.run([str(ROOT / "scripts" / "sandbox-cluster"), "bin", "helm"], check=True,
                          capture_output=True, text=True).stdout.strip()


def container_args(helm: str, plan: Plan, tmp_path) -> list[str]:
    """The server container's args as the chart renders them for this plan."""
    values = tmp_path / f"{plan['deployment']}.yaml"
    values.write_text(yaml.safe_dump(helm_values(plan["release"])))
    rendered = subprocess.run([helm, "template", plan["deployment"], str(CHART_DIR), "--namespace", "llm-serving",
                               "--values", str(values)], capture_output=True, text=True, timeout=60)
    assert rendered.returncode == 0, rendered.stderr
    server = next(doc for doc in yaml.safe_load_all(rendered.stdout)
                  if doc and doc["kind"] in ("Deployment", "LeaderWorkerSet"))
    spec = (server["spec"]["template"]["spec"] if server["kind"] == "Deployment"
            else server["spec"]["leaderWorkerTemplate"]["leaderTemplate"]["spec"])
    (container,) = spec["containers"]
    assert container["command"] == SERVER_COMMAND
    return container["args"]


def compile_args(plan: Plan) -> list[str]:
    """The server arguments of the Neuron compile Job's script (the line that starts the server)."""
    script = neuron_compile_job(plan["release"], plan["model"], plan["neuron"], plan["storage"]["artifact_bucket"])["spec"]["template"]["spec"]["containers"][0]["command"][2]
    line = next(line for line in script.splitlines() if line.startswith(" ".join(SERVER_COMMAND)))
    argv = shlex.split(line.removesuffix("&").strip())
    return argv[len(SERVER_COMMAND):]


def without_neuron_only_flags(argv: list[str]) -> list[str]:
    return [a for a in argv if a.split("=", 1)[0].removeprefix("--") not in NEURON_ONLY_FLAGS]


def variants(profile: Profile) -> dict[str, dict[str, Any]]:
    """The profile at its defaults, and with every override at its limit."""
    limits: dict[str, Any] = {"max_model_len": profile.max_model_len.max,
                              "images_per_prompt": profile.images_per_prompt.max}
    if profile.accelerator == "gpu":
        limits["kv_cache_dtype"] = "fp8"  # the planner's advice for longer contexts
    return {"defaults": {}, "limits": limits}


def cases(catalog: Catalog, helm: str, tmp_path) -> tuple[list[dict[str, Any]], dict[str, Plan]]:
    found, plans = [], {}
    for model in catalog.models.values():
        for name, profile in model.profiles.items():
            for variant, overrides in variants(profile).items():
                case_id = f"{model.id}/{name}/{variant}"
                plan = build_plan({**BASE, "model": model.id, "profile": name, **overrides}, catalog)
                plans[case_id] = plan
                base, config = model_config(model, profile)
                args = container_args(helm, plan, tmp_path)
                if profile.accelerator == "neuron":
                    found.append({"id": case_id, "argv": without_neuron_only_flags(args), "engine": False,
                                  "base": base, "config": config})
                    found.append({"id": f"{case_id}/compile", "argv": without_neuron_only_flags(compile_args(plan)),
                                  "engine": False, "base": base, "config": config})
                else:
                    found.append({"id": case_id, "argv": args, "engine": True, "base": base, "config": config})
    return found, plans


def run_checker(batch: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    result = subprocess.run([str(VLLM_PYTHON), str(CHECKER)], input=json.dumps(batch), capture_output=True,
                            text=True, timeout=CHECK_TIMEOUT_S)
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def old_maverick_catalog() -> Catalog:
    """The catalog as it was before issue 15: Meta's FP8 checkpoint with --quantization fp8."""
    document = yaml.safe_load(CATALOG_PATH.read_text())
    gpu = document["models"]["llama4-maverick"]["profiles"]["gpu"]
    gpu["hf_repo"] = "meta-llama/Llama-4-Maverick-17B-128E-Instruct-FP8"
    del gpu["checkpoint_quantization"]
    return parse_catalog(copy.deepcopy(document))


@pytest.fixture(scope="module")
def verdicts(helm, tmp_path_factory) -> tuple[dict[str, Any], dict[str, Plan], list[dict[str, Any]]]:
    if not VLLM_PYTHON.exists():
        pytest.fail(f"{VLLM_PYTHON} is missing: run scripts/setup-vllm")
    tmp_path = tmp_path_factory.mktemp("vllm-args")
    batch, plans = cases(default_catalog(), helm, tmp_path)
    old, _ = cases(old_maverick_catalog(), helm, tmp_path)
    old_gpu = [dict(case, id=f"old/{case['id']}") for case in old if case["id"].startswith("llama4-maverick/gpu/")]
    # The same old command line without --quantization: refused too, as deprecated.
    old_gpu += [dict(case, id=f"{case['id']}/no-flag", argv=[a for a in case["argv"] if not a.startswith("--quantization")])
                for case in old_gpu]
    return run_checker(batch + old_gpu), plans, batch


CATALOG = default_catalog()
CASE_IDS = [f"{m.id}/{name}/{variant}" for m in CATALOG.models.values() for name, p in m.profiles.items()
            for variant in variants(p)]


def test_every_catalog_model_has_its_config_fields():
    assert set(HF_ARCHITECTURES) == set(CATALOG.models), "add the model's Hugging Face architecture class"
    for model in CATALOG.models.values():
        for profile in model.profiles.values():
            if profile.quantization:
                declared = CHECKPOINT_QUANTIZATION[profile.hf_repo]["quant_method"]
                assert profile.checkpoint_quantization in (None, declared), (model.id, profile.name)


@pytest.mark.parametrize("case_id", CASE_IDS)
def test_vllm_accepts_the_serving_command_line(verdicts, case_id):
    results, plans, batch = verdicts
    assert results[case_id]["error"] is None, results[case_id]["error"]
    profile = plans[case_id]["profile"]
    if profile["accelerator"] == "neuron":
        assert results[f"{case_id}/compile"]["error"] is None, results[f"{case_id}/compile"]["error"]
        return
    engine = results[case_id]["engine"]
    # What vLLM resolved is what the plan sized.
    assert engine["max_model_len"] == profile["max_model_len"]
    assert (engine["tensor_parallel_size"], engine["pipeline_parallel_size"]) == (
        profile["tensor_parallel_size"], profile["pipeline_parallel_size"])
    # A pre-quantized checkpoint's method is read from its config.json, and no flag is passed for it.
    assert engine["quantization"] == (profile["checkpoint_quantization"] or profile["vllm_args"].get("quantization"))
    if profile["checkpoint_quantization"]:
        assert not any(a.startswith("--quantization") for a in next(c["argv"] for c in batch if c["id"] == case_id))
    if plans[case_id]["serving"]["takes_images"]:
        assert engine["limit_mm_per_prompt"] == {"image": profile["images_per_prompt"]}


@pytest.mark.parametrize("case_id", [c for c in CASE_IDS if CATALOG.model(c.split("/")[0]).profile(
    c.split("/")[1]).accelerator == "neuron"])
def test_the_compile_job_runs_the_serving_flags(verdicts, case_id):
    """The Neuron compile Job compiles with exactly the serving pod's command line (its port aside):
    any other flag would compile something the server never looks up."""
    _, _, batch = verdicts
    by_id = {case["id"]: case["argv"] for case in batch}
    assert by_id[f"{case_id}/compile"] == by_id[case_id]


def test_the_old_maverick_fp8_arguments_are_refused(verdicts):
    """The check has teeth: the pre-issue-15 Maverick GPU command line (Meta's fbgemm_fp8 checkpoint
    with --quantization fp8) is refused by vLLM 0.32, and so is the same line without the flag."""
    results, _, _ = verdicts
    for variant in ("defaults", "limits"):
        flagged = results[f"old/llama4-maverick/gpu/{variant}"]["error"]
        assert flagged and "does not match the quantization method specified in the `quantization` argument" in flagged
        flagless = results[f"old/llama4-maverick/gpu/{variant}/no-flag"]["error"]
        assert flagless and "fbgemm_fp8" in flagless and "deprecated" in flagless

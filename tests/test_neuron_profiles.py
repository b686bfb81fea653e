"""The Trainium2 profiles as the merged ai-on-eks values run them (awslabs/ai-on-eks-charts PR #12:
optimum-neuron, SDK 2.26.1, TP 16, host memory, the tested Maverick shape), NxD Inference as its
own framework, the compile Job and the chart values of each, and the compile cache key. Fast: the
plan and the manifests only, no servers (the Job on the local control plane: tests/kube)."""

from __future__ import annotations

import copy

import pytest
import yaml

from llm_on_eks.catalog import CATALOG_PATH, CatalogError, parse_catalog
from llm_on_eks.kube.helm_values import helm_values
from llm_on_eks.kube.manifests import neuron_compile_job
from llm_on_eks.plan import PlanError, build_plan

BASE = {"cluster_name": "llm-inference", "region": "us-east-2"}
OPTIMUM_IMAGE = "huggingface-vllm-inference-neuronx:0.11.0-optimum0.4.5-neuronx-py310-sdk2.26.1-ubuntu22.04"


def plan_for(model: str, profile: str = "neuron", **params):
    return build_plan({**BASE, "model": model, "profile": profile, **params})


def compile_container(plan) -> dict:
    return neuron_compile_job(plan["release"], plan["model"], plan["neuron"], plan["storage"]["artifact_bucket"])["spec"]["template"]["spec"]["containers"][0]


@pytest.mark.parametrize(("model", "memory"), [("llama4-scout", "384Gi"), ("llama4-maverick", "1024Gi")])
def test_optimum_profiles_follow_the_merged_trainium2_values(model, memory):
    plan = plan_for(model)
    profile = plan["profile"]
    assert profile["image"] == f"763104351884.dkr.ecr.us-east-2.amazonaws.com/{OPTIMUM_IMAGE}"
    assert profile["env"] == {"VLLM_NEURON_FRAMEWORK": "optimum", "NEURON_CC_FLAGS": "--model-type transformer"}
    assert profile["tensor_parallel_size"] == 16 and profile["accelerators_per_node"] == 16
    assert profile["host_memory"] == {"request": memory, "limit": memory}
    assert profile["startup_budget_s"] >= 30 * 240  # the values' startup probe: 30 s x 240
    # The one configuration tested on Trainium2 (the Maverick values), by default.
    args = profile["vllm_args"]
    assert (args["max-model-len"], args["max-num-seqs"], args["max-num-batched-tokens"], args["dtype"]) == (
        4096, 2, 4096, "bfloat16")
    assert plan["neuron"]["framework"] == "optimum" and plan["neuron"]["config"] is None
    assert plan["neuron"]["cache_env"] == "NEURON_COMPILE_CACHE_URL"


def test_the_dlc_registry_follows_the_region():
    assert plan_for("llama4-maverick", region="us-west-2")["profile"]["image"].startswith(
        "763104351884.dkr.ecr.us-west-2.amazonaws.com/")
    # Regions served by another account (aws/deep-learning-containers available_images.md).
    assert plan_for("llama4-maverick", region="eu-south-1")["profile"]["image"].startswith(
        "692866216735.dkr.ecr.eu-south-1.amazonaws.com/")
    # The image is the same everywhere: the compiled output is shared by its key, not by region.
    assert (plan_for("llama4-maverick", region="us-west-2")["neuron"]["hash"]
            == plan_for("llama4-maverick", region="eu-south-1")["neuron"]["hash"])


def test_no_profile_forces_the_v0_engine_switch():
    """vLLM has had only the V1 engine since 0.11.0 (huggingface/optimum-neuron PR #1027)."""
    for model in ("llama4-scout", "llama4-maverick"):
        for profile in ("gpu", "neuron"):
            assert "VLLM_USE_V1" not in plan_for(model, profile)["profile"]["env"]
    assert "VLLM_USE_V1" not in plan_for("llama4-scout", "neuron-nxdi")["profile"]["env"]


def test_a_longer_context_is_an_override_the_plan_sizes_and_batches():
    plan = plan_for("llama4-maverick", max_model_len=16384)
    assert plan["sizing"]["feasible"]
    args = plan["profile"]["vllm_args"]
    assert args["max-model-len"] == 16384 and args["max-num-batched-tokens"] == 16384
    with pytest.raises(PlanError, match="exceeds the 16384"):
        plan_for("llama4-maverick", max_model_len=32768)


def test_images_are_refused_on_the_optimum_path_with_the_reason():
    plan = plan_for("llama4-scout")
    assert plan["profile"]["images_per_prompt"] == 0 and plan["serving"]["takes_images"] is False
    assert "limit-mm-per-prompt" not in plan["profile"]["vllm_args"]
    with pytest.raises(PlanError, match="causal-LM"):
        plan_for("llama4-maverick", images_per_prompt=1)
    # NxD Inference serves them, as its Llama 4 tutorial does.
    assert plan_for("llama4-scout", "neuron-nxdi", images_per_prompt=5)["profile"]["vllm_args"][
        "limit-mm-per-prompt"] == '{"image": 5}'


def test_the_optimum_compile_job_serves_once_into_the_s3_compile_cache():
    plan = plan_for("llama4-maverick")
    container = compile_container(plan)
    script = container["command"][2]
    assert "optimum-cli" not in script  # it does not export Llama 4 (the ai-on-eks Trainium2 guide)
    assert "python3 -m vllm.entrypoints.openai.api_server --model=meta-llama/Llama-4-Maverick-17B-128E-Instruct" in script
    assert "--max-num-seqs=2" in script and "--max-model-len=4096" in script and "--tensor-parallel-size=16" in script
    assert "aws s3 sync" not in script  # the compile cache writes to S3 itself
    assert script.rstrip().endswith(f"aws s3 cp - s3://{plan['storage']['artifact_bucket']}/{plan['neuron']['marker_key']}")
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["NEURON_COMPILE_CACHE_URL"] == plan["neuron"]["artifacts_uri"]
    assert "NEURON_COMPILED_ARTIFACTS" not in env and "VLLM_USE_V1" not in env
    assert env["VLLM_NEURON_FRAMEWORK"] == "optimum" and env["NEURON_CC_FLAGS"] == "--model-type transformer"
    assert container["resources"] == {"requests": {"aws.amazon.com/neuron": "16", "memory": "1024Gi"},
                                      "limits": {"aws.amazon.com/neuron": "16", "memory": "1024Gi"}}
    assert container["image"] == plan["profile"]["image"]


def test_the_nxdi_compile_job_traces_locally_and_syncs_the_artifacts():
    plan = plan_for("llama4-scout", "neuron-nxdi")
    container = compile_container(plan)
    script = container["command"][2]
    assert "--additional-config=" in script and "override_neuron_config" in script
    assert f"aws s3 sync /compiled {plan['neuron']['artifacts_uri']}" in script
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["NEURON_COMPILED_ARTIFACTS"] == "/compiled" and "NEURON_COMPILE_CACHE_URL" not in env
    # The host memory of the NxD Inference Llama 4 values (ai-on-eks-charts PR #9): 512Gi / 768Gi.
    assert container["resources"]["limits"] == {"aws.amazon.com/neuron": "16", "memory": "768Gi"}
    assert plan["profile"]["image"].startswith("public.ecr.aws/neuron/pytorch-inference-vllm-neuronx:")
    assert "sdk2.21" not in plan["profile"]["image"]


@pytest.mark.parametrize(("profile", "framework", "key"), [("neuron", "optimum", "compileCacheUrl"),
                                                           ("neuron-nxdi", "nxdi", "compiledArtifacts")])
def test_chart_values_name_the_framework_and_its_cache(profile, framework, key):
    plan = plan_for("llama4-scout", profile)
    values = helm_values(plan["release"])
    assert values["neuron"]["framework"] == framework
    assert values["neuron"][key] == plan["neuron"]["artifacts_uri"]
    assert [k for k in ("compileCacheUrl", "compiledArtifacts") if values["neuron"][k]] == [key]
    memory = plan["profile"]["host_memory"]
    assert values["resources"]["requests"]["memory"] == memory["request"]
    assert values["resources"]["limits"]["memory"] == memory["limit"]
    assert values["env"]["AWS_DEFAULT_REGION"] == "us-east-2"


def test_gpu_chart_values_carry_no_neuron_settings():
    values = helm_values(build_plan({**BASE, "model": "llama4-scout"})["release"])
    assert values["neuron"] == {"framework": "", "compiledArtifacts": "", "compileCacheUrl": ""}
    assert "memory" not in values["resources"]["requests"]


def _catalog_with(mutate):
    document = yaml.safe_load(CATALOG_PATH.read_text())
    mutate(document)
    return parse_catalog(copy.deepcopy(document))


@pytest.mark.parametrize(("mutate", "changes"), [
    (lambda d: d["models"]["llama4-maverick"].update(revision="0123456789abcdef0123456789abcdef01234567"), {}),
    (lambda d: d["neuron_frameworks"]["optimum"].update(image=d["neuron_frameworks"]["optimum"]["image"] + "-2"), {}),
    (lambda d: d["neuron_frameworks"]["optimum"]["env"].update(NEURON_CC_FLAGS="--model-type transformer -O1"), {}),
    (lambda d: d["models"]["llama4-maverick"]["profiles"]["neuron"]["vllm_args"].update({"max-num-seqs": 4}), {}),
    (lambda d: d["models"]["llama4-maverick"]["profiles"]["neuron"].update(dtype="float16"), {}),
    (lambda d: None, {"max_model_len": 8192}),
    (lambda d: None, {"tensor_parallel_size": 32}),
], ids=["revision", "image", "compiler-flags", "batch-size", "dtype", "sequence-length", "tp"])
def test_the_compile_cache_key_covers_what_changes_the_output(mutate, changes):
    shipped = plan_for("llama4-maverick")
    changed = build_plan({**BASE, "model": "llama4-maverick", "profile": "neuron", **changes}, _catalog_with(mutate))
    assert changed["neuron"]["hash"] != shipped["neuron"]["hash"]
    assert changed["neuron"]["artifacts_uri"] != shipped["neuron"]["artifacts_uri"]


def test_the_compile_cache_key_ignores_what_does_not():
    shipped = plan_for("llama4-maverick")
    for params in ({"deployment_name": "other"}, {"namespace": "elsewhere"}, {"idle_ttl_minutes": 5}):
        assert plan_for("llama4-maverick", **params)["neuron"]["hash"] == shipped["neuron"]["hash"]
    assert plan_for("llama4-maverick", cluster_name="c2")["neuron"]["hash"] == shipped["neuron"]["hash"]


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda d: d["models"]["llama4-scout"]["profiles"]["neuron"].update(env={"VLLM_NEURON_FRAMEWORK": "nxdi"}),
     "profiles/neuron/env/VLLM_NEURON_FRAMEWORK: set by the optimum framework"),
    (lambda d: d["models"]["llama4-scout"]["profiles"]["neuron"].update(env={"NEURON_COMPILED_ARTIFACTS": "/x"}),
     "profiles/neuron/env/NEURON_COMPILED_ARTIFACTS: set by the optimum framework"),
    (lambda d: d["models"]["llama4-scout"]["profiles"]["neuron"].update(images_per_prompt={"default": 1, "max": 5}),
     "profiles/neuron/images_per_prompt: max must be 0: the optimum-neuron path"),
    (lambda d: d["models"]["llama4-scout"]["profiles"]["neuron-nxdi"]["vllm_args"].update({"max-num-seqs": 4}),
     "text_config.batch_size 1 is not vllm_args max-num-seqs 4"),
    (lambda d: d["models"]["llama4-maverick"]["profiles"]["gpu"].pop("quantization"),
     "checkpoint_quantization: needs quantization"),
])
def test_a_profile_cannot_mix_the_frameworks(mutate, message):
    with pytest.raises(CatalogError, match="inconsistent") as excinfo:
        _catalog_with(mutate)
    assert message in str(excinfo.value)


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda d: d["models"]["llama4-scout"]["profiles"]["neuron"].update(image="x:1"), "profiles/neuron"),
    (lambda d: d["models"]["llama4-scout"]["profiles"]["neuron"]["neuron"].update(config={"batch_size": 1}),
     "profiles/neuron/neuron"),
    (lambda d: d["models"]["llama4-scout"]["profiles"]["neuron"].pop("host_memory_gib"),
     "'host_memory_gib' is a required property"),
    (lambda d: d["models"]["llama4-scout"]["profiles"].update({"tpu": {}}), "'tpu' does not match"),
])
def test_the_schema_keeps_image_config_and_memory_where_they_belong(mutate, message):
    with pytest.raises(CatalogError, match="invalid") as excinfo:
        _catalog_with(mutate)
    assert message in str(excinfo.value)


@pytest.mark.parametrize(("model", "profile"), [("llama4-scout", "neuron"), ("llama4-scout", "neuron-nxdi"),
                                                ("llama4-maverick", "neuron")])
def test_the_dry_run_shows_image_environment_memory_compile_command_and_cache(model, profile):
    """What the neuron_compile and helm_deploy steps print in a dry run, from the operators themselves."""
    from llm_on_eks.operators.helm_deploy import HelmDeployOperator
    from llm_on_eks.operators.prepare_weights import NeuronCompileOperator

    plan = plan_for(model, profile, dry_run=True)
    neuron = plan["neuron"]
    compile_step = NeuronCompileOperator(
        task_id="neuron_compile", **{k: plan[k] for k in ("target", "aws", "release", "model", "storage", "neuron")}
    ).execute({})
    assert compile_step["dry_run"] is True
    job = compile_step["would"]["create"]
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == plan["profile"]["image"]
    if neuron["framework"] == "optimum":
        assert container["image"].startswith("763104351884.dkr.ecr.us-east-2.amazonaws.com/")
    assert container["resources"]["requests"]["memory"] == plan["profile"]["host_memory"]["request"]
    assert "python3 -m vllm.entrypoints.openai.api_server" in container["command"][2]
    assert compile_step["would"]["skip_if_exists"] == f"s3://{plan['storage']['artifact_bucket']}/{neuron['marker_key']}"
    helm_step = HelmDeployOperator(task_id="helm_deploy", target=plan["target"], release=plan["release"]).execute({})
    values = helm_step["would"]["values"]
    assert f"{values['image']['repository']}:{values['image']['tag']}" == plan["profile"]["image"]
    assert values["resources"]["limits"]["memory"] == plan["profile"]["host_memory"]["limit"]
    assert neuron["artifacts_uri"] in (values["neuron"]["compileCacheUrl"], values["neuron"]["compiledArtifacts"])
    assert {k: v for k, v in values["env"].items() if k != "AWS_DEFAULT_REGION"} == plan["profile"]["env"]


def test_a_tp_override_reaches_the_compile_job_and_its_key():
    """optimum-neuron compiles at the server's --tensor-parallel-size, so an override is written
    through (the Job runs the serving command line) and keys a new compile; NxD Inference's neuron
    config fixes tp_degree, so there it is refused (tests/test_plan.py)."""
    from llm_on_eks.kube.manifests import neuron_compile_job

    plan = build_plan({**BASE, "model": "llama4-maverick", "profile": "neuron", "tensor_parallel_size": 32})
    script = neuron_compile_job(plan["release"], plan["model"], plan["neuron"], plan["storage"]["artifact_bucket"])["spec"]["template"]["spec"]["containers"][0]["command"][-1]
    assert "--tensor-parallel-size=32" in script
    assert plan["neuron"]["identity"]["args"]["tensor-parallel-size"] == 32

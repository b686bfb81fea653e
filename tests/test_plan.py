"""Bad conf is refused: by the params schema at trigger time, else by the plan, before anything exists."""

from __future__ import annotations

import pytest
from airflow.sdk import ParamsDict
from airflow.sdk.exceptions import ParamValidationError

from llm_on_eks.aws.api_calls import create_cluster_request
from llm_on_eks.catalog import catalog_index
from llm_on_eks.params import deploy_form
from llm_on_eks.plan import PlanError, build_plan
from llm_on_eks.plan_report import SECTIONS, summarize

MODELS, INSTANCE_TYPES = catalog_index()
BASE = {"model": "llama4-scout", "accelerator": "gpu", "cluster_name": "llm-inference", "region": "us-west-2"}


def validated(**conf) -> dict:
    params = ParamsDict(deploy_form(["llama4-scout", "llama4-maverick"], "llama4-scout", INSTANCE_TYPES))
    for key, value in conf.items():
        params[key] = value
    return params.validate()


def test_defaults_validate_and_plan():
    plan = build_plan(validated())
    assert plan["deployment"] == "llama4-scout-gpu"
    assert plan["profile"]["instance_type"] == "p5.48xlarge"
    assert plan["profile"]["vllm_args"]["tensor-parallel-size"] == 8


@pytest.mark.parametrize(
    "conf",
    [
        {"model": "llama5-giant"},
        {"model": "deepseek-r1-distill-qwen-32b"},  # in the catalog, but not offered by deploy_llama4
        {"accelerator": "tpu"},
        {"max_model_len": -1},
        {"max_model_len": 0},
        {"max_model_len": 20_000_000},
        {"tensor_parallel_size": 0},
        {"kv_cache_dtype": "int4"},
        {"images_per_prompt": 11},
        {"deployment_name": "Bad_Name"},
        {"deployment_name": "x" * 41},
        {"region": "moon-1"},
        {"subnet_ids": ["vpc-123"]},
        {"idle_ttl_minutes": 1},
        {"cluster_role_arn": "not-an-arn"},
    ],
)
def test_params_schema_refuses_at_trigger_time(conf):
    with pytest.raises(ParamValidationError):
        validated(**conf)


@pytest.mark.parametrize(
    ("conf", "message"),
    [
        ({"tensor_parallel_size": 3}, "tensor parallel size 3 does not divide the 40 attention heads"),
        ({"tensor_parallel_size": 16}, "16 GPUs per node are needed but p5.48xlarge has 8"),
        ({"max_model_len": 2_000_000}, "exceeds the 1000000 that the llama4-scout gpu profile is validated for"),
        ({"accelerator": "neuron", "max_model_len": 32768}, "exceeds the 16384"),
        ({"instance_type": "trn2.48xlarge"}, "trn2.48xlarge is a neuron instance, not gpu"),
        ({"instance_type": "g5.2xlarge"}, "cannot work"),
        # Scout's default Neuron profile is optimum-neuron now (issue 15, item 7): images are refused there
        # with the reason; the NxD Inference profile keeps the Trainium2 guide's 5.
        ({"images_per_prompt": 10, "profile": "neuron-nxdi"}, "images_per_prompt 10 exceeds the 5"),
        ({"images_per_prompt": 1, "accelerator": "neuron"}, "through a causal-LM (text-only) model class"),
        ({"profile": "neuron-nxdi", "tensor_parallel_size": 32}, "neuron config is written for TP 64"),
        ({"profile": "gpu-p4d", "max_model_len": 500_000}, "exceeds the 196608 that the llama4-scout gpu-p4d profile"),
        ({"profile": "tpu"}, "has no 'tpu' profile"),
        ({"create_cluster": True, "subnet_ids": ["subnet-0a1b2c3d"]}, "subnet_ids: creating the cluster needs subnets in two"),
        ({"model": "llama-3-8b", "images_per_prompt": 1}, "llama-3-8b does not take images"),
    ],
)
def test_plan_refuses_what_the_schema_cannot_judge(conf, message):
    with pytest.raises(PlanError) as excinfo:
        build_plan({**BASE, **conf})
    assert message in str(excinfo.value)


@pytest.mark.parametrize(("model", "accelerator"), [(m, a) for m in ("llama4-scout", "llama4-maverick") for a in ("gpu", "neuron")])
def test_every_llama4_combination_plans(model, accelerator):
    plan = build_plan({**BASE, "model": model, "accelerator": accelerator})
    assert plan["sizing"]["feasible"]
    assert plan["nodegroup"]["taints"][0]["key"] == ("nvidia.com/gpu" if accelerator == "gpu" else "aws.amazon.com/neuron")
    if accelerator == "neuron":
        assert plan["profile"]["weights"] == "neuron_compiled"
        assert plan["neuron"]["artifacts_uri"].startswith(f"s3://{plan['storage']['artifact_bucket']}/neuron-cache/{model}/")
        assert "gpu-memory-utilization" not in plan["profile"]["vllm_args"]
    else:
        assert plan["storage"]["fsx"]["deployment_type"] == "PERSISTENT_2"


def test_neuron_artifacts_are_content_addressed():
    # The NxD Inference profile, whose neuron config follows max_model_len (Scout's default Neuron
    # profile is optimum-neuron now: test_optimum_compile_cache_key_covers_what_changes_the_output).
    neuron = {**BASE, "accelerator": "neuron", "profile": "neuron-nxdi"}
    first, same = build_plan(neuron), build_plan({**neuron, "deployment_name": "other"})
    shorter = build_plan({**neuron, "max_model_len": 8192})
    assert first["neuron"]["hash"] == same["neuron"]["hash"]
    assert shorter["neuron"]["hash"] != first["neuron"]["hash"]
    assert shorter["neuron"]["config"]["text_config"]["seq_len"] == 8192
    assert max(shorter["neuron"]["config"]["text_config"]["context_encoding_buckets"]) == 8192


def test_overrides_reach_the_vllm_args():
    plan = build_plan({**BASE, "max_model_len": 1_000_000, "kv_cache_dtype": "fp8", "images_per_prompt": 4})
    args = plan["profile"]["vllm_args"]
    assert args["max-model-len"] == 1_000_000
    assert args["kv-cache-dtype"] == "fp8"
    assert args["limit-mm-per-prompt"] == '{"image": 4}'
    assert args["override-generation-config"] == '{"attn_temperature_tuning": true}'


def test_plan_holds_no_secret_only_where_to_find_it():
    plan = build_plan({**BASE, "hf_token_secret_id": "llm-on-eks/prod/hf-token"})
    assert plan["hf_token"] == {
        "conn_id": "hf_default",
        "secrets_manager_id": "llm-on-eks/prod/hf-token",
        "k8s_secret": {"name": "hf-token", "key": "token"},
    }


def summary(plan) -> str:
    """The summary plan_deployment prints, from the sections it takes."""
    return summarize(**{k: plan[k] for k in SECTIONS})


def test_the_plan_summary_prices_a_cluster_only_when_the_run_may_create_it():
    existing = summary(build_plan(validated()))
    assert "$55.04/hour on demand; idle teardown" in existing  # 1x p5.48xlarge, the cluster is someone's
    created = summary(build_plan(validated(create_cluster=True, cluster_role_arn="arn:aws:iam::123456789012:role/eks",
                                             node_role_arn="arn:aws:iam::123456789012:role/node",
                                             subnet_ids=["subnet-a", "subnet-b"])))
    assert "$55.04/hour on demand (+$0.48/hour if the cluster is created: EKS control plane and 2x m6i.xlarge" in created
    # With no subnets given, a network is made with the cluster: its NAT gateway bills too.
    with_network = summary(build_plan(validated(create_cluster=True)))
    assert "(+$0.53/hour if the cluster is created: EKS control plane, 2x m6i.xlarge system nodes and a NAT gateway)" \
        in with_network
    # Opted in to its removal once unused: said where the cluster is, and tagged at its creation.
    quiet = build_plan(validated(create_cluster=True, cluster_quiet_minutes=120))
    assert "(created if missing, and if created, removed after 120 min without a deployment)" in summary(quiet)
    assert "removed after" not in with_network
    assert create_cluster_request(quiet["cluster"], quiet["tags"])["tags"][
        "llm-on-eks.io/remove-when-quiet-minutes"] == "120"
    assert "llm-on-eks.io/remove-when-quiet-minutes" not in create_cluster_request(
        build_plan(validated(create_cluster=True))["cluster"], quiet["tags"])["tags"]


def test_the_cheaper_scout_gpu_profile_is_named_and_sized_by_the_planner():
    plan = build_plan(validated(profile="gpu-p4d"))
    assert plan["deployment"] == "llama4-scout-gpu-p4d" and plan["profile"]["name"] == "gpu-p4d"
    assert plan["profile"]["instance_type"] == "p4d.24xlarge" and plan["sizing"]["hourly_usd"] == 21.96
    # BF16 Scout leaves 8.6 GiB of each A100's 40 for KV cache; the context limit is shown.
    assert plan["sizing"]["kv_budget_per_rank_gib"] == pytest.approx(8.62, abs=0.05)
    assert plan["profile"]["max_model_len"] <= plan["sizing"]["max_model_len_fit"]
    assert "(largest that fits: " in summary(plan) and "profile gpu-p4d" in summary(plan)


def test_a_prequantized_checkpoint_gets_no_quantization_flag():
    plan = build_plan({**BASE, "model": "llama4-maverick"})
    assert plan["model"]["hf_repo"] == "RedHatAI/Llama-4-Maverick-17B-128E-Instruct-FP8"
    assert plan["profile"]["checkpoint_quantization"] == "compressed-tensors"
    assert plan["profile"]["quantization"] == "fp8"  # FP8 weights for sizing
    assert "quantization" not in plan["profile"]["vllm_args"]


def test_the_plan_summary_says_where_the_longest_context_comes_from():
    gpu = summary(build_plan(validated()))
    assert "by vLLM's KV-cache estimator, vLLM 0.32)" in gpu
    assert "after a 2 GiB reserve for activations and graphs" in gpu
    neuron = summary(build_plan(validated(accelerator="neuron")))
    assert "by per-token arithmetic; the Neuron builds size their KV cache themselves)" in neuron

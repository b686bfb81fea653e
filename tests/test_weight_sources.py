"""Where serving pods load weights from (plan.sections, kube.manifests): FSx, S3 through vLLM's
Run:ai model streamer, or the hub; chosen per profile by the catalog or per run by the weights
param, and compared in the plan summary."""

from __future__ import annotations

import json

import pytest

from llm_on_eks.kube.manifests import stage_weights_job, stage_weights_to_s3_job
from llm_on_eks.naming import COMPLETION_MARKER_ANNOTATION
from llm_on_eks.plan import PlanError, build_plan
from llm_on_eks.plan_report import SECTIONS, summarize

BASE = {"cluster_name": "c1", "region": "us-east-2"}


def test_streamed_weights_are_staged_where_fsx_would_stage_them_and_read_with_the_streamer():
    streamed = build_plan({**BASE, "model": "llama4-scout", "weights": "s3_stream"})
    staged = build_plan({**BASE, "model": "llama4-scout"})
    s3, fsx = streamed["storage"]["s3_stream"], staged["storage"]["fsx"]
    assert streamed["storage"]["fsx"] is None and staged["storage"]["s3_stream"] is None
    # One key, one marker: FSx's data repository association exports to the same S3 prefix.
    assert s3["marker_key"] == fsx["marker_key"]
    assert s3["uri"] == f"s3://llm-on-eks-c1-us-east-2/{fsx['marker_key'].rsplit('/', 1)[0]}/"
    release = streamed["release"]
    assert release["model_source"] == s3["uri"] and release["env"]["AWS_DEFAULT_REGION"] == "us-east-2"
    assert release["server_args"]["load-format"] == "runai_streamer"
    # Eight ranks on CUDA share the reads (distributed); the buffer is the default 8 GiB.
    assert json.loads(release["server_args"]["model-loader-extra-config"]) == {
        "concurrency": 16, "distributed": True, "memory_limit": 8 * 2**30}
    assert streamed["profile"]["weights"] == "s3_stream"


def test_a_profile_sets_its_streamer_and_a_single_rank_reads_alone():
    plan = build_plan({**BASE, "model": "llama-3-8b"})
    assert plan["profile"]["weights"] == "s3_stream"  # the catalog's choice for this profile
    assert json.loads(plan["release"]["server_args"]["model-loader-extra-config"]) == {
        "concurrency": 16, "memory_limit": 4 * 2**30}
    hub = build_plan({**BASE, "model": "llama-3-8b", "weights": "hub"})
    assert hub["release"]["model_source"].startswith("hf://") and "load-format" not in hub["release"]["server_args"]
    assert hub["storage"]["s3_stream"] is None and "AWS_DEFAULT_REGION" not in hub["release"]["env"]


@pytest.mark.parametrize(("conf", "message"), [
    ({"model": "llama4-scout", "accelerator": "neuron", "weights": "s3_stream"},
     "weights: profile neuron runs on Neuron, which loads what neuron_compile made"),
    ({"model": "llama4-scout", "weights": "ebs"}, "weights: 'ebs' is not one of fsx, s3_stream, hub"),
])
def test_a_weight_source_the_profile_cannot_use_is_refused_naming_the_field(conf, message):
    with pytest.raises(PlanError, match=message):
        build_plan({**BASE, **conf})


def test_the_summary_compares_every_source_on_time_and_storage_price():
    plan = build_plan({**BASE, "model": "llama4-scout"})
    options = {o["weights"]: o for o in plan["weights_options"]}
    assert list(options) == ["fsx", "s3_stream", "hub"]
    # Scout BF16 (218 GB): FSx's 2400 GiB at $0.34/GB-month, S3 Standard's bytes at $0.023.
    assert options["fsx"]["storage_usd_month"] == round(2400 * 2**30 / 1e9 * 0.34, 2)
    assert options["s3_stream"]["storage_usd_month"] == round(109e9 * 2 / 1e9 * 0.023, 2)
    assert options["s3_stream"]["weight_load_s"] < options["fsx"]["weight_load_s"] < options["hub"]["weight_load_s"]
    assert options["fsx"]["ttft_s"] == plan["cold_start"]["ttft_s"]
    text = summarize(**{k: plan[k] for k in SECTIONS})
    assert "fsx; each source predicted" in text and "$876.17/month" in text
    assert [line for line in text.splitlines() if line.endswith("<- this run")] == [
        next(line for line in text.splitlines() if line.strip().startswith("fsx "))]
    assert build_plan({**BASE, "model": "llama4-scout", "accelerator": "neuron"})["weights_options"] == []


def test_the_s3_staging_job_runs_on_the_system_nodes_and_names_its_marker():
    plan = build_plan({**BASE, "model": "llama4-scout", "weights": "s3_stream"})
    job = stage_weights_to_s3_job(plan["release"], plan["model"], plan["storage"]["s3_stream"])
    pod = job["spec"]["template"]["spec"]
    # No accelerator: neither the release's node selector nor its toleration of the GPU taint.
    assert "nodeSelector" not in pod and "tolerations" not in pod
    (container,) = pod["containers"]
    assert "nvidia.com/gpu" not in json.dumps(container["resources"])
    bucket, key = "llm-on-eks-c1-us-east-2", plan["storage"]["s3_stream"]["marker_key"]
    assert job["metadata"]["annotations"][COMPLETION_MARKER_ANNOTATION] == f"s3://{bucket}/{key}"
    assert container["command"][3:] == [plan["model"]["hf_repo"], plan["model"]["revision"], bucket,
                                        key.rsplit("/", 1)[0] + "/", key]
    env = {e["name"]: e for e in container["env"]}
    assert env["HF_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == plan["release"]["hf_token_secret"]["name"]
    assert env["AWS_DEFAULT_REGION"]["value"] == "us-east-2"
    # Another job than FSx staging's, so switching a deployment's source never adopts the wrong one.
    fsx_plan = build_plan({**BASE, "model": "llama4-scout"})
    fsx_job = stage_weights_job(fsx_plan["release"], fsx_plan["model"], fsx_plan["storage"]["fsx"], bucket)
    assert fsx_job["metadata"]["name"] != job["metadata"]["name"]

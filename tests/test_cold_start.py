"""The cold-start model (plan.cold_start), the records the cold_start step reads its measures
from (kube.startup_records), and the comparison the deploy report prints."""

from __future__ import annotations

import pytest

from llm_on_eks.kube.startup_records import go_duration_s, image_pull_s, log_seconds
from llm_on_eks.operators.cold_start import compare, measured, skipped
from llm_on_eks.plan import build_plan
from llm_on_eks.plan.cold_start import critical_path_s, node_ready_s
from llm_on_eks.plan_report import SECTIONS, cold_start_lines, summarize


def phases(plan):
    return {p["phase"]: p["seconds"] for p in plan["cold_start"]["phases"]}


def test_staging_runs_beside_the_node_group_and_a_compile_after_it():
    gpu, neuron = build_plan({"model": "llama4-scout"}), build_plan({"model": "llama4-scout", "accelerator": "neuron"})
    g, n = phases(gpu), phases(neuron)
    serving = ("image_pull", "weight_load", "engine_start")
    assert gpu["cold_start"]["ttft_s"] == max(g["nodegroup"], g["weights"]) + sum(g[p] for p in serving)
    assert neuron["cold_start"]["ttft_s"] == n["nodegroup"] + n["weights"] + sum(n[p] for p in serving)
    assert gpu["cold_start"]["ttft_new_cluster_s"] == gpu["cold_start"]["ttft_s"] + g["cluster"]
    # Scout BF16 (203 GiB) off the ai-on-eks file system: 2400 GiB x 500 MB/s/TiB = 1172 MB/s.
    assert g["weight_load"] == round(109e9 * 2 / (500e6 * 2400 / 1024))
    assert n["weights"] == 45 * 60 and phases(build_plan({"model": "llama4-maverick", "accelerator": "neuron"}))[
        "weights"] == 75 * 60
    # The hub prepares nothing and is read at start; S3 is staged beside the node group, then
    # streamed at the Run:ai streamer's benchmark rate (3.51 GiB/s).
    small, streamed = (phases(build_plan({"model": "llama-3-8b", "weights": w})) for w in ("hub", "s3_stream"))
    assert small["weights"] == 0 and small["weight_load"] == round(8.03e9 * 2 / 300e6)
    assert streamed["weights"] == small["weight_load"] and streamed["weight_load"] == round(8.03e9 * 2 / (3.51 * 2**30))


def test_a_phase_the_run_did_not_do_counts_as_nothing():
    section = build_plan({"model": "llama4-scout"})["cold_start"]
    p = phases({"cold_start": section})
    assert critical_path_s(section, {"cluster", "weights"}) == p["nodegroup"] + p["image_pull"] + p["weight_load"] \
        + p["engine_start"]
    assert critical_path_s(section, {p for p in p}) == 0


@pytest.mark.parametrize(("instance_type", "seconds"), [("p5.48xlarge", 480), ("trn2.48xlarge", 540),
                                                         ("g5.2xlarge", 360), ("m6i.xlarge", 150), ("x9.large", 540)])
def test_node_ready_by_family(instance_type, seconds):
    assert node_ready_s(instance_type) == seconds


def test_the_plan_summary_predicts_the_cold_start():
    plan = build_plan({"model": "llama4-scout", "create_cluster": True})
    summary = summarize(**{k: plan[k] for k in SECTIONS})
    assert "cold start  ~22 min to first token onto an existing cluster, ~37 min creating it" in summary
    assert "weights       12 min  staging 203 GiB from the Hugging Face Hub at 300 MB/s onto FSx" in summary
    # Onto an existing cluster only, there is no cluster phase to show.
    existing = build_plan({"model": "llama4-scout"})
    assert "  cluster  " not in summarize(**{k: existing[k] for k in SECTIONS}).split("cold start")[1]


@pytest.mark.parametrize(("text", "seconds"), [("3m21.4s", 201.4), ("850ms", 0.85), ("1h2m3s", 3723), ("12s", 12)])
def test_go_durations(text, seconds):
    assert go_duration_s(text) == pytest.approx(seconds)


def test_image_pull_from_the_kubelets_events():
    # The kubelet's messages (pkg/kubelet/images/image_manager.go, Kubernetes 1.30+).
    pulled = ('Successfully pulled image "docker.io/vllm/vllm-openai:v0.32.0" in 3m21.4s (3m21.4s including '
              'waiting). Image size: 12043117696 bytes.')
    assert image_pull_s(["Pulling image \"docker.io/vllm/vllm-openai:v0.32.0\"", pulled]) == pytest.approx(201.4)
    assert image_pull_s(['Container image "docker.io/vllm/vllm-openai:v0.32.0" already present on machine']) == 0
    assert image_pull_s(["Scheduled", "Started container vllm"]) is None


def test_vllm_start_up_lines():
    # vLLM 0.32's own lines (gpu_model_runner.py, default_loader.py, engine/core.py).
    gpu = ("(Worker pid=7) INFO 12-02 10:00:00 [gpu_model_runner.py:5150] Model loading took 48.87 GiB memory and "
           "117.500000 seconds\n(EngineCore pid=6) INFO 12-02 10:03:00 [core.py:402] init engine (profile, create kv "
           "cache, warmup model) took 171.23 s (compilation: 70.10 s)\n")
    assert log_seconds(gpu) == {"weight_load": 117.5, "engine_start": 171.23}
    assert log_seconds("INFO [default_loader.py:502] Loading weights took 12.34 seconds\n") == \
        {"weight_load": 12.34, "engine_start": None}
    assert log_seconds("") == {"weight_load": None, "engine_start": None}


def test_the_comparison_flags_phases_off_by_more_than_a_fifth_and_leaves_out_what_the_run_did_not_do():
    section = build_plan({"model": "llama4-scout"})["cold_start"]
    p = phases({"cold_start": section})
    result = compare(section, {
        "cluster": skipped("adopted: it existed before this run"),
        "nodegroup": measured(p["nodegroup"] * 1.1),
        "weights": skipped("cached: s3://b/k was there already"),
        "image_pull": measured(p["image_pull"] * 2),
        "weight_load": measured(None, "not recorded (no kubelet event or vLLM log line says)"),
        "engine_start": measured(p["engine_start"] * 0.7),
    }, run_s=1000)
    off = {row["phase"]: row["off"] for row in result["phases"]}
    assert off == {"cluster": False, "nodegroup": False, "weights": False, "image_pull": True, "weight_load": False,
                   "engine_start": True}
    assert result["predicted_ttft_s"] == p["nodegroup"] + p["image_pull"] + p["weight_load"] + p["engine_start"]
    assert result["measured_ttft_s"] == 1000 and result["off"] == (abs(1000 - result["predicted_ttft_s"])
                                                                  > 0.2 * result["predicted_ttft_s"])
    lines = "\n".join(cold_start_lines(result))
    assert "image pull        3 min     7 min  << off by more than 20%" in lines
    assert "weights          12 min         -  cached: s3://b/k was there already" in lines
    assert cold_start_lines(None) == ["  cold start  not measured"]

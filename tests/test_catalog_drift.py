"""scripts/catalog-drift: the catalog agrees with the public Llama 4 values it follows, or says why
not; a change on either side shows up as drift. Fast: local transcriptions, no network."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import subprocess
import sys

import yaml

from tests.conftest import ROOT

SCRIPT = ROOT / "scripts" / "catalog-drift"


def _load():
    loader = importlib.machinery.SourceFileLoader("catalog_drift", str(SCRIPT))
    module = importlib.util.module_from_spec(importlib.util.spec_from_loader("catalog_drift", loader))
    loader.exec_module(module)
    return module


drift = _load()


def test_the_shipped_catalog_has_no_unexplained_drift():
    result = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 drifted" in result.stdout
    assert "pinned     nxdi       SDK 2.28.0" in result.stdout  # the Neuron SDK window is checked too


def test_every_transcription_says_what_it_is_and_where_it_came_from():
    files = {source[2] for source in drift.SOURCES}
    assert files == {p.name for p in drift.DATA.glob("*.yaml")}
    for name in files:
        header = (drift.DATA / name).read_text().split("\nmodel:")[0]
        assert "TRANSCRIPTION" in header and "awslabs/ai-on-eks-charts" in header and "2026-11-25" in header, name


def test_the_merged_trainium2_values_are_followed_field_by_field():
    public = drift.public_fields(yaml.safe_load((drift.DATA / "values-llama-4-maverick-17b-vllm-neuron.yaml").read_text()))
    rows = {key: status for status, key, _, _ in drift.compare("llama4-maverick", "neuron", public)}
    for key in ("model", "tensor_parallel_size", "max_model_len", "max_num_seqs", "max_num_batched_tokens", "dtype",
                "image", "instance_type", "accelerators", "memory_request", "memory_limit", "startup_budget_s",
                "env.VLLM_NEURON_FRAMEWORK", "env.NEURON_CC_FLAGS"):
        assert rows[key] == "same", key


def test_a_changed_public_file_is_drift():
    values = yaml.safe_load((drift.DATA / "values-llama-4-maverick-17b-vllm-neuron.yaml").read_text())
    values["modelParameters"]["maxModelLen"] = 8192
    values["inference"]["modelServer"]["image"]["tag"] = "0.12.0-optimum0.5.0-neuronx-py310-sdk2.28.0-ubuntu22.04"
    values["inference"]["modelServer"]["env"]["NEURON_RT_VIRTUAL_CORE_SIZE"] = "2"
    rows = {key: (status, theirs, mine) for status, key, theirs, mine in
            drift.compare("llama4-maverick", "neuron", drift.public_fields(values))}
    assert rows["max_model_len"] == ("DRIFT", 8192, 4096)
    assert rows["image"][0] == "DRIFT"
    assert rows["env.NEURON_RT_VIRTUAL_CORE_SIZE"] == ("DRIFT", "2", "(not set)")


def test_neuron_images_are_checked_against_the_sdks_that_run_llama4():
    from llm_on_eks.catalog import NeuronFramework

    def framework(tag: str) -> NeuronFramework:
        return NeuronFramework(name=tag, image=f"public.ecr.aws/neuron/pytorch-inference-vllm-neuronx:{tag}", env={},
                               cache="compiled_artifacts", images_supported=True)

    tags = ["0.13.0-neuronx-py312-sdk2.28.0-ubuntu24.04", "0.16.0-neuronx-py312-sdk2.31.1-ubuntu24.04",
            "0.16.0-neuronx-py312-sdk2.32.0-ubuntu24.04", "0.9.1-neuronx-py310-sdk2.21.0-ubuntu22.04", "latest"]
    window = {name: status for status, name, _ in drift.sdk_window({tag: framework(tag) for tag in tags})}
    assert window == dict(zip(tags, ["pinned", "unpinned", "outside", "outside", "outside"], strict=True))

"""The cold-start model: how long from trigger to first token, phase by phase, before anything is
spent; the ``cold_start`` step then puts what the run measured beside each phase.

    ttft = cluster (if this run creates it)
         + max(node group to Ready, weight staging)   (staging runs on the system nodes meanwhile)
           or node group + Neuron compile            (a compile needs the Neuron devices)
         + image pull + weight load + engine start    (on the serving node)

Each constant below cites its public source; where none publishes a figure (a p5's or trn2's time
to Ready) the constant is a planning figure said to be one, which every run's measurement checks.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import TypedDict

GIB = 2**30
MB = 10**6

# EKS CreateCluster to ACTIVE: "averages 15 minutes" (aws/containers-roadmap#1227); a test in 21
# regions measured 13 min 13 s to 16 min 11 s (easontechtalk.com, "Unofficial EKS cluster creation
# performance across AWS regions").
CLUSTER_CREATE_S = 15 * 60
# A managed node group to ACTIVE, by instance family. A c5.xlarge's kubelet registers 39 s after
# launch, and "GPU instance types often take much longer to boot" (awslabs/amazon-eks-ami#1099); a
# GPU instance took 5-7 minutes to start (coiled/feedback#30). Nothing public times a p5 or trn2:
# planning figures, which each run's measurement checks (the cold_start step).
NODE_READY_S = {"c": 150, "m": 150, "r": 150, "t": 150, "g": 360, "inf": 360, "p": 480, "trn": 540}
# Image pull without lazy loading: "Standard Docker image pulls of 15-20 GB can take 4-6 minutes
# per instance" (AWS Machine Learning blog, "Reducing container cold start times using SOCI index
# on DLAMI and DLC"): 60 MB/s.
PULL_BYTES_PER_S = 60 * MB
# Image sizes: vllm/vllm-openai "is around 12 GB" (vllm-project/vllm#27154); the AWS Neuron vLLM
# images "18+GB" (vllm-project/vllm#4838).
IMAGE_BYTES = {"gpu": 12e9, "neuron": 18e9}
# The Hugging Face Hub, per node: hf_transfer is for going "beyond ~500MB/s" (its README) and plain
# Python "already saturates the bandwidth" of common machines (HF staff, huggingface_hub docs
# discussions); a planning 300 MB/s for a checkpoint of many large files.
HUB_BYTES_PER_S = 300 * MB
# S3 through vLLM's Run:ai model streamer: 3.51 GiB/s on a g5.12xlarge (runai-model-streamer
# docs/src/benchmarks.md; gp3 1.03 GiB/s, io2 1.96 GiB/s there), with every shard read at once.
S3_STREAM_BYTES_PER_S = 3.51 * GIB
# NxD Inference compile on a cache miss: Scout 30-60 min, Maverick 60-90 min (AWS Neuron vLLM user
# guide); the middle of each range, by the model's total parameters (Scout 109B, Maverick 400B).
NEURON_COMPILE_S = ((150, 45 * 60), (float("inf"), 75 * 60))
# vLLM start after the weights are in: for Llama 70B FP8 at TP 8, "~60s to check for P2P access,
# ~15s to convert dynamo bytecode, ~70s to run torch.compile, ~60s to capture the cudagraphs"
# (vllm-project/vllm#19824). On Neuron, the compiled graphs load and warm up instead: a planning
# 5 minutes (a 7B model took ~40 s from safetensors on trn1.32xlarge, aws-neuron/transformers-neuronx#80).
ENGINE_START_S = {"gpu": 205, "neuron": 300}


class Phase(TypedDict):
    phase: str  # cluster | nodegroup | weights | image_pull | weight_load | engine_start
    seconds: int
    basis: str  # how the figure was reached, in words


class ColdStartSection(TypedDict):
    phases: list[Phase]
    compile_after_nodes: bool  # the weights phase is a Neuron compile, which needs the node group
    # Trigger to first token onto an existing cluster, and with the cluster made by the run.
    ttft_s: int
    ttft_new_cluster_s: int


def node_ready_s(instance_type: str) -> int:
    """The planning figure of an instance type's family (p5.48xlarge: "p"; trn2.48xlarge: "trn")."""
    family = instance_type.split(".")[0]
    prefix = max((p for p in NODE_READY_S if family.startswith(p)), key=len, default=None)
    return NODE_READY_S[prefix] if prefix else max(NODE_READY_S.values())


def _phase(phase: str, seconds: float, basis: str) -> Phase:
    return {"phase": phase, "seconds": round(seconds), "basis": basis}


def predict(*, accelerator: str, instance_type: str, weights: str, checkpoint_bytes: float, total_params_b: float,
            fsx_bytes_per_s: float | None) -> ColdStartSection:
    """Each phase's predicted time for a profile (``weights``: fsx, s3_stream, hub or neuron_compiled)."""
    size = f"{checkpoint_bytes / GIB:.0f} GiB"
    hub = f"{size} from the Hugging Face Hub at {HUB_BYTES_PER_S / MB:.0f} MB/s"
    if weights == "fsx":
        prepare = _phase("weights", checkpoint_bytes / HUB_BYTES_PER_S, f"staging {hub} onto FSx, beside the node group")
        load = _phase("weight_load", checkpoint_bytes / fsx_bytes_per_s,
                      f"{size} from FSx for Lustre at {fsx_bytes_per_s / MB:.0f} MB/s (its disk throughput)")
    elif weights == "s3_stream":
        prepare = _phase("weights", checkpoint_bytes / HUB_BYTES_PER_S,
                         f"staging {hub} into S3, on the system nodes beside the node group")
        load = _phase("weight_load", checkpoint_bytes / S3_STREAM_BYTES_PER_S,
                      f"{size} streamed from S3 at {S3_STREAM_BYTES_PER_S / GIB:.2f} GiB/s (Run:ai model streamer)")
    elif weights == "neuron_compiled":
        compile_s = next(seconds for bound, seconds in NEURON_COMPILE_S if total_params_b <= bound)
        prepare = _phase("weights", compile_s, "Neuron compile on a cache miss, after the node group (0 once compiled)")
        load = _phase("weight_load", checkpoint_bytes / HUB_BYTES_PER_S, hub)
    else:
        prepare = _phase("weights", 0, "none: vLLM reads the hub at start")
        load = _phase("weight_load", checkpoint_bytes / HUB_BYTES_PER_S, hub)
    image = IMAGE_BYTES[accelerator]
    phases = [
        _phase("cluster", CLUSTER_CREATE_S, "EKS control plane, when this run creates the cluster"),
        _phase("nodegroup", node_ready_s(instance_type), f"{instance_type} node group to Ready"),
        prepare,
        _phase("image_pull", image / PULL_BYTES_PER_S,
               f"{image / 1e9:.0f} GB image at {PULL_BYTES_PER_S / MB:.0f} MB/s"),
        load,
        _phase("engine_start", ENGINE_START_S[accelerator],
               "loading compiled graphs and warm-up" if accelerator == "neuron"
               else "P2P check, torch.compile, KV cache and CUDA graph capture"),
    ]
    section: ColdStartSection = {"phases": phases, "compile_after_nodes": weights == "neuron_compiled",
                                 "ttft_s": 0, "ttft_new_cluster_s": 0}
    section["ttft_s"] = critical_path_s(section, skipped={"cluster"})
    section["ttft_new_cluster_s"] = critical_path_s(section, skipped=set())
    return section


def critical_path_s(section: ColdStartSection, skipped: Collection[str]) -> int:
    """Trigger to first token by the predicted phases, those in ``skipped`` (adopted, cached)
    counted as nothing. A compile needs the Neuron devices, so it follows the node group; staging
    runs beside it."""
    seconds = {p["phase"]: 0 if p["phase"] in skipped else p["seconds"] for p in section["phases"]}
    nodes_and_weights = (seconds["nodegroup"] + seconds["weights"] if section["compile_after_nodes"]
                         else max(seconds["nodegroup"], seconds["weights"]))
    return (seconds["cluster"] + nodes_and_weights + seconds["image_pull"] + seconds["weight_load"]
            + seconds["engine_start"])

"""One builder per section of the deploy plan, each from the run's ``Choice``: the model and
profile the catalog gave, the sizing that fits them, and the names every section shares."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

from llm_on_eks import naming
from llm_on_eks.catalog import Catalog, Model, Profile
from llm_on_eks.plan.cold_start import GIB, MB, ColdStartSection, predict
from llm_on_eks.plan.defaults import (
    ACCELERATORS,
    ADDONS,
    AUTO_MODE_NODE_CLASS,
    FSX_GB_MONTH_USD,
    FSX_MOUNT_PATH,
    FSX_STORAGE_GIB,
    FSX_THROUGHPUT_PER_TIB,
    NODE_DISK_GIB,
    S3_GB_MONTH_USD,
    SERVING_PORT,
    STAGING_BUDGET_S,
    STREAMER_CONCURRENCY,
    STREAMER_MEMORY_LIMIT_GIB,
    SYSTEM_HOURLY_USD,
    SYSTEM_INSTANCE_TYPE,
    SYSTEM_SCALING,
    WEIGHT_SOURCES,
    param,
)
from llm_on_eks.plan.types import (
    BenchmarkSection,
    ClusterAccess,
    ClusterSection,
    FsxSection,
    HfTokenSection,
    KubernetesSection,
    ModelSection,
    NeuronSection,
    NodegroupSpec,
    NodePoolSpec,
    ProfileSection,
    ReleaseSpec,
    S3StreamSection,
    ServingSection,
    StorageSection,
    Target,
    WeightOption,
)
from llm_on_eks.sizing import Sizing, SizingRequest, weight_bytes


@dataclass(frozen=True)
class Choice:
    """What the run chose, checked: every section is built from this and nothing else."""

    params: dict[str, Any]
    catalog: Catalog
    model: Model
    profile: Profile
    request: SizingRequest
    sizing: Sizing
    deployment: str
    cluster: str
    region: str
    namespace: str
    bucket: str
    images_per_prompt: int

    @property
    def accelerator(self) -> dict[str, str]:
        return ACCELERATORS[self.profile.accelerator]

    @property
    def subnet_ids(self) -> list[str]:
        return list(self.params.get("subnet_ids") or [])


def model_section(c: Choice) -> ModelSection:
    return {"id": c.model.id, "display_name": c.model.display_name, "hf_repo": c.profile.hf_repo,
            "revision": c.model.revision, "revision_pinned": bool(re.fullmatch(r"[0-9a-f]{40}", c.model.revision)),
            "takes_images": c.model.takes_images}


def vllm_args(c: Choice) -> dict[str, Any]:
    """The profile's vLLM flags with the sizing's choices; the catalog's for the rest."""
    request, profile = c.request, c.profile
    args = {
        **profile.vllm_args,
        "served-model-name": profile.hf_repo,
        "dtype": request.dtype,
        "tensor-parallel-size": request.tensor_parallel_size,
        "pipeline-parallel-size": request.pipeline_parallel_size,
        "max-model-len": request.max_model_len,
        "kv-cache-dtype": request.kv_cache_dtype,
    }
    if "max-num-batched-tokens" in args:
        # The tested Neuron shape batches as many tokens as the sequence length (ai-on-eks-charts PR #12:
        # 4096 and 4096); a longer context override raises both, so no prompt is cut by the batch size.
        args["max-num-batched-tokens"] = max(args["max-num-batched-tokens"], request.max_model_len)
    if profile.accelerator == "gpu":
        args["gpu-memory-utilization"] = request.gpu_memory_utilization
    if c.model.takes_images and not profile.images_refusal:
        args["limit-mm-per-prompt"] = json.dumps({"image": c.images_per_prompt})
    if profile.quantization and not profile.checkpoint_quantization:
        # Quantize a BF16 checkpoint when loading. A pre-quantized checkpoint declares its method in
        # config.json and vLLM refuses a --quantization that differs from it (vLLM docs, "Quantization").
        args["quantization"] = profile.quantization
    return args


def profile_section(c: Choice) -> ProfileSection:
    profile, request = c.profile, c.request
    memory = profile.host_memory
    return {
        "name": profile.name,
        "accelerator": profile.accelerator,
        "instance_type": request.instance.name,
        "nodes": request.nodes,
        "accelerators_per_node": c.sizing.accelerators_per_node,
        "tensor_parallel_size": request.tensor_parallel_size,
        "pipeline_parallel_size": request.pipeline_parallel_size,
        "dtype": request.dtype,
        "quantization": request.quantization,
        "checkpoint_quantization": profile.checkpoint_quantization,
        "kv_cache_dtype": request.kv_cache_dtype,
        "max_model_len": request.max_model_len,
        "images_per_prompt": c.images_per_prompt,
        "weights": profile.weights,
        # The AWS Deep Learning Containers registry is per region: the image follows the plan's.
        "image": c.catalog.resolve_image(profile.image, c.region),
        "vllm_args": vllm_args(c),
        "env": dict(profile.env),
        "startup_budget_s": profile.startup_budget_s,
        "host_memory": {"request": f"{memory.request_gib}Gi", "limit": f"{memory.limit_gib}Gi"} if memory else None,
    }


def cluster_section(c: Choice) -> ClusterSection:
    return {"name": c.cluster, "create": bool(param(c.params, "create_cluster")),
            "grant_access": bool(param(c.params, "grant_cluster_access")),
            "quiet_minutes": int(param(c.params, "cluster_quiet_minutes")),
            "version": c.params.get("kubernetes_version") or c.catalog.kubernetes_version,
            "role_arn": c.params.get("cluster_role_arn"), "subnet_ids": c.subnet_ids,
            "security_group_ids": list(c.params.get("security_group_ids") or []),
            "addons": list(ADDONS[c.profile.accelerator])}


def accelerator_node_labels(c: Choice) -> dict[str, str]:
    """On the deployment's accelerator nodes, from a node group or a NodePool: what the device
    plugin selects and the teardown tells deployments apart by."""
    return {naming.ACCELERATOR_KEY: c.profile.accelerator, naming.DEPLOYMENT_KEY: c.deployment,
            naming.NAMESPACE_KEY: c.namespace}


def nodegroup_section(c: Choice) -> NodegroupSpec:
    """The deployment's accelerator node group: tainted, sized by the plan, tagged with the
    deployment; on a capacity reservation when the params name one."""
    nodes = c.request.nodes
    return {
        "name": naming.nodegroup_name(c.cluster, c.region, c.namespace, c.deployment),
        "role": "accelerator",
        "instance_type": c.request.instance.name,
        "ami_type": c.accelerator["ami_type"],
        "capacity_type": "ON_DEMAND",
        "disk_size_gib": NODE_DISK_GIB,
        "scaling": {"min_size": nodes, "max_size": nodes, "desired_size": nodes},
        "labels": accelerator_node_labels(c),
        "taints": [{"key": c.accelerator["taint_key"], "value": "true", "effect": "NO_SCHEDULE"}],
        "node_role_arn": c.params.get("node_role_arn"),
        "subnet_ids": c.subnet_ids,
        "capacity_reservation_id": c.params.get("capacity_reservation_id") or None,
        "launch_template": naming.launch_template_name(c.cluster, c.region, c.namespace, c.deployment),
        "tags": naming.aws_tags(c.deployment, c.cluster, c.namespace, c.region),
        "enforce_size": True,
        "only_on_own_cluster": False,
        "hourly_usd": c.sizing.hourly_usd,
    }


def nodepool_section(c: Choice) -> NodePoolSpec:
    """Where the accelerator nodes come from on an EKS Auto Mode cluster, which has no managed node
    groups of ours: the NodePool the params name, or one made for the deployment that mirrors its
    node group (instance type, labels, taint) and may launch no more than its nodes' devices."""
    given = c.params.get("nodepool") or None
    return {
        "name": given or naming.nodepool_name(c.cluster, c.region, c.namespace, c.deployment),
        "given": bool(given),
        "instance_type": c.request.instance.name,
        "labels": accelerator_node_labels(c),
        "taints": [{"key": c.accelerator["taint_key"], "value": "true", "effect": "NoSchedule"}],
        "limits": {c.accelerator["resource"]: str(c.request.nodes * c.request.instance.devices)},
        "node_class": AUTO_MODE_NODE_CLASS,
    }


def system_nodegroup_section(c: Choice) -> NodegroupSpec:
    """The cluster's untainted system node group, shared by its deployments."""
    return {
        "name": naming.system_nodegroup_name(c.cluster, c.region),
        "role": naming.SYSTEM_ROLE,
        "instance_type": SYSTEM_INSTANCE_TYPE,
        "ami_type": "AL2023_x86_64_STANDARD",
        "capacity_type": "ON_DEMAND",
        "disk_size_gib": 50,
        "scaling": dict(SYSTEM_SCALING),
        "labels": {naming.ROLE_KEY: naming.SYSTEM_ROLE},
        "taints": [],
        "node_role_arn": c.params.get("node_role_arn"),
        "subnet_ids": c.subnet_ids,
        "capacity_reservation_id": None,
        "launch_template": None,
        "tags": naming.system_tags(c.cluster),
        "enforce_size": False,
        "only_on_own_cluster": True,
        "hourly_usd": round(SYSTEM_HOURLY_USD * SYSTEM_SCALING["desired_size"], 3),
    }


# What a weight-staging Job writes last, beside the files: its presence means they are whole.
STAGED_MARKER = ".llm-on-eks-staged.json"


def weights_key(c: Choice) -> str:
    """The checkpoint's key prefix in the artifact bucket, and its path under FSx's /models (linked
    to s3://<bucket>/models/): staged once, by either path, under the same marker."""
    return f"models/{c.profile.hf_repo}/{c.model.revision}"


def fsx_section(c: Choice) -> FsxSection | None:
    if c.profile.weights != "fsx":
        return None
    subnets = c.subnet_ids
    model_path = weights_key(c)
    return {
        "name": naming.fsx_name(c.cluster),
        "deployment_type": "PERSISTENT_2",
        "storage_capacity_gib": FSX_STORAGE_GIB,
        "throughput_per_tib": FSX_THROUGHPUT_PER_TIB,
        # None: the first subnet of the EKS cluster's VPC config, looked up when provisioning.
        "subnet_id": c.params.get("fsx_subnet_id") or (subnets[0] if subnets else None),
        "security_group_ids": c.params.get("security_group_ids") or [],
        "data_repository_path": f"s3://{c.bucket}/models/",
        "file_system_path": "/models",
        "mount_path": FSX_MOUNT_PATH,
        "model_path": f"{FSX_MOUNT_PATH}/{model_path}",
        "marker_key": f"{model_path}/{STAGED_MARKER}",
        "pvc_name": naming.fsx_claim_name(c.cluster, c.region),
        "budget_s": STAGING_BUDGET_S,
        "user": naming.fsx_user(c.namespace, c.deployment),
    }


def s3_stream_section(c: Choice) -> S3StreamSection | None:
    if c.profile.weights != "s3_stream":
        return None
    streamer = c.profile.streamer
    return {"uri": f"s3://{c.bucket}/{weights_key(c)}/", "marker_key": f"{weights_key(c)}/{STAGED_MARKER}",
            "budget_s": STAGING_BUDGET_S,
            "concurrency": streamer.concurrency if streamer else STREAMER_CONCURRENCY,
            "memory_limit_bytes": (streamer.memory_limit_gib if streamer else STREAMER_MEMORY_LIMIT_GIB) * GIB}


# The vLLM flags that shape what Neuron compiles. optimum-neuron exports with batch size =
# --max-num-seqs, sequence length = --max-model-len, TP = --tensor-parallel-size and --dtype
# (optimum/neuron/vllm/model_loader.py); NxD Inference traces its neuron config (additional-config).
COMPILE_ARGS = ("tensor-parallel-size", "pipeline-parallel-size", "max-model-len", "max-num-seqs",
                "max-num-batched-tokens", "dtype", "kv-cache-dtype", "block-size", "additional-config")


def neuron_config(profile: Profile, max_model_len: int) -> dict[str, Any] | None:
    """NxD Inference's neuron config at this sequence length (buckets up to it); None for optimum."""
    if profile.neuron is None or profile.neuron.config is None:
        return None
    config = json.loads(json.dumps(profile.neuron.config))
    text = config["text_config"]
    text["seq_len"] = max_model_len
    for key in ("context_encoding_buckets", "token_generation_buckets"):
        text[key] = [b for b in text[key] if b < max_model_len] + [max_model_len]
    return config


def neuron_section(c: Choice, profile: ProfileSection) -> NeuronSection | None:
    """Compile settings and the content-addressed S3 prefix of what is compiled. The key covers
    everything that changes the compiled output: the model at its revision, the image (the
    compiler version with it; region-independent), the framework and its environment
    (NEURON_CC_FLAGS), and the compile-shaping flags (TP, sequence length, batch size, dtype)."""
    neuron = c.profile.neuron
    if neuron is None:
        return None
    config = neuron_config(c.profile, c.request.max_model_len)
    identity = {
        "hf_repo": c.profile.hf_repo,
        "revision": c.model.revision,
        "framework": neuron.framework,
        "image": c.profile.image,
        "env": dict(sorted(c.profile.env.items())),
        "args": {k: profile["vllm_args"][k] for k in COMPILE_ARGS if k in profile["vllm_args"]},
        "config": config,
    }
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]
    prefix = f"neuron-cache/{c.model.id}/{digest}"
    return {"framework": neuron.framework, "config": config, "identity": identity, "hash": digest,
            "artifacts_uri": f"s3://{c.bucket}/{prefix}/", "cache_env": neuron.runtime.cache_env,
            "marker_key": f"{prefix}/_COMPLETE.json", "budget_s": neuron.compile_budget_s}


def hf_token_section(c: Choice) -> HfTokenSection:
    return {"conn_id": param(c.params, "hf_token_conn_id"), "secrets_manager_id": c.params.get("hf_token_secret_id"),
            "k8s_secret": {"name": c.catalog.hf_token_secret_name, "key": c.catalog.hf_token_secret_key}}


def kubernetes_section(c: Choice) -> KubernetesSection:
    return {"conn_id": c.params.get("kubernetes_conn_id"), "namespace": c.namespace, "release": c.deployment,
            "node_selector": {"node.kubernetes.io/instance-type": c.request.instance.name},
            "tolerations": [{"key": c.accelerator["taint_key"], "operator": "Exists", "effect": "NoSchedule"}],
            "accelerator_resource": c.accelerator["resource"], "labels": naming.k8s_labels(c.deployment)}


def serving_section(c: Choice) -> ServingSection:
    return {"port": SERVING_PORT, "served_model_name": c.profile.hf_repo,
            "takes_images": c.model.takes_images and c.images_per_prompt > 0,
            "base_url": c.params.get("endpoint_url"), "namespace": c.namespace, "release": c.deployment}


def target_section(params: dict[str, Any], deployment: str | None, cluster: str, region: str, namespace: str) -> Target:
    """Shared by the deploy and the teardown plan: a teardown reaches the cluster as the deploy did."""
    access: ClusterAccess = {"kubernetes_conn_id": params.get("kubernetes_conn_id"),
                             "aws_conn_id": param(params, "aws_conn_id"), "region": region, "cluster": cluster,
                             "namespace": namespace}
    return {"deployment": deployment, "dry_run": bool(param(params, "dry_run")), "access": access}


def model_source(model: ModelSection, fsx: FsxSection | None, s3_stream: S3StreamSection | None) -> str:
    """Where vLLM loads weights from: the FSx claim path or the S3 prefix they were staged to,
    else the hub."""
    if fsx:
        return f"pvc://{fsx['pvc_name']}{fsx['model_path'].removeprefix(fsx['mount_path'])}"
    if s3_stream:
        return s3_stream["uri"]
    return f"hf://{model['hf_repo']}@{model['revision']}"


def streamer_args(profile: ProfileSection, s3_stream: S3StreamSection) -> dict[str, str]:
    """vLLM's flags for the Run:ai model streamer. ``distributed`` (each rank reads a share of the
    files and shares it, instead of every rank reading all) is CUDA's only (vLLM's
    RunaiModelStreamerLoader), so it is on for a GPU profile of more than one rank."""
    config: dict[str, Any] = {"concurrency": s3_stream["concurrency"], "memory_limit": s3_stream["memory_limit_bytes"]}
    if profile["accelerator"] == "gpu" and profile["tensor_parallel_size"] * profile["pipeline_parallel_size"] > 1:
        config["distributed"] = True
    return {"load-format": "runai_streamer", "model-loader-extra-config": json.dumps(config, sort_keys=True)}


def _neuron_values(neuron: NeuronSection | None) -> dict[str, str]:
    """The chart's `neuron` values: a compile cache URL for optimum, traced artifacts for NxD
    Inference; empty off Neuron."""
    if not neuron:
        return {"framework": "", "compiledArtifacts": "", "compileCacheUrl": ""}
    uri = neuron["artifacts_uri"]
    return {"framework": neuron["framework"],
            "compiledArtifacts": uri if neuron["cache_env"] == "NEURON_COMPILED_ARTIFACTS" else "",
            "compileCacheUrl": uri if neuron["cache_env"] == "NEURON_COMPILE_CACHE_URL" else ""}


def _resources(profile: ProfileSection, kube: KubernetesSection) -> dict[str, dict[str, str]]:
    """Requests and limits of a serving (or compile) pod: the accelerators per node, requests equal
    to limits (extended resources are never overcommitted), and a Neuron pod's host memory: the
    ai-on-eks Trainium2 values request 384Gi for Scout and 1024Gi for Maverick, because sharding
    loads the whole model into host RAM (awslabs/ai-on-eks-charts PR #12)."""
    count = str(profile["accelerators_per_node"])
    result = {kind: {kube["accelerator_resource"]: count} for kind in ("requests", "limits")}
    memory = profile.get("host_memory")
    if memory:
        result["requests"]["memory"], result["limits"]["memory"] = memory["request"], memory["limit"]
    return result


def release_section(c: Choice, model: ModelSection, profile: ProfileSection, kube: KubernetesSection,
                    storage: StorageSection, neuron: NeuronSection | None, hf_token: HfTokenSection) -> ReleaseSpec:
    """The serving pods, and the Jobs that must run exactly like them (the vllm-neuron plugin
    takes NxD Inference's neuron config as additional_config.override_neuron_config)."""
    args = dict(profile["vllm_args"])
    if neuron and neuron["framework"] == "nxdi":
        args["additional-config"] = json.dumps({"override_neuron_config": neuron["config"]}, sort_keys=True)
    fsx, s3_stream = storage["fsx"], storage["s3_stream"]
    if s3_stream:
        args.update(streamer_args(profile, s3_stream))
    return {
        "name": kube["release"], "namespace": c.namespace, "deployment": c.deployment, "image": profile["image"],
        "nodes": profile["nodes"], "accelerator": profile["accelerator"], "served_model_name": c.profile.hf_repo,
        "model_source": model_source(model, fsx, s3_stream), "server_args": args,
        # The S3 compile cache, artifacts or weights are read in the bucket's region (boto3 and the
        # streamer's AWS SDK for C++ both read AWS_DEFAULT_REGION).
        "env": {**profile["env"], **({"AWS_DEFAULT_REGION": c.region} if neuron or s3_stream else {})},
        "resources": _resources(profile, kube), "node_selector": dict(kube["node_selector"]),
        "tolerations": [dict(t) for t in kube["tolerations"]], "labels": dict(kube["labels"]),
        "hf_token_secret": dict(hf_token["k8s_secret"]),
        "neuron": _neuron_values(neuron), "startup_budget_s": profile["startup_budget_s"], "port": SERVING_PORT,
        "idle_ttl_minutes": param(c.params, "idle_ttl_minutes"), "protected": bool(param(c.params, "protected")),
    }


def benchmark_section(c: Choice) -> BenchmarkSection:
    p = c.params
    return {"enabled": bool(param(p, "benchmark")), "concurrency": param(p, "benchmark_concurrency"),
            "num_prompts": param(p, "benchmark_num_prompts"), "input_len": param(p, "benchmark_input_len"),
            "output_len": param(p, "benchmark_output_len"), "slo_p99_ttft_ms": p.get("benchmark_slo_p99_ttft_ms")}


def checkpoint_bytes(c: Choice) -> float:
    """The checkpoint's size, at its own precision: BF16 for a profile that quantizes at load time."""
    return weight_bytes(c.model, c.profile.dtype, c.profile.checkpoint_quantization and c.profile.quantization)


def cold_start_section(c: Choice, weights: str | None = None) -> ColdStartSection:
    """The predicted time to first token, by phase, with the profile's weight source or ``weights``.
    A cold read from FSx for Lustre runs at the lower of its network and disk throughput: the
    disk's, capacity (TiB) x per-unit throughput (AWS FSx for Lustre guide, "Performance")."""
    fsx_bytes_per_s = FSX_THROUGHPUT_PER_TIB * MB * FSX_STORAGE_GIB / 1024
    return predict(accelerator=c.profile.accelerator, instance_type=c.request.instance.name,
                   weights=weights or c.profile.weights, checkpoint_bytes=checkpoint_bytes(c),
                   total_params_b=c.model.architecture.total_params_b, fsx_bytes_per_s=fsx_bytes_per_s)


def weights_options(c: Choice) -> list[WeightOption]:
    """Each weight source a GPU profile may use, predicted: time to first token onto an existing
    cluster and the storage's monthly price (the FSx file system is the cluster's, shared by its
    deployments; S3 bills the checkpoint's bytes). Empty on Neuron, which loads its compile."""
    if c.profile.neuron:
        return []
    size_gb = checkpoint_bytes(c) / 1e9
    fsx_gb = FSX_STORAGE_GIB * GIB / 1e9
    storage = {
        "fsx": (fsx_gb * FSX_GB_MONTH_USD[FSX_THROUGHPUT_PER_TIB],
                f"FSx for Lustre {FSX_STORAGE_GIB} GiB at {FSX_THROUGHPUT_PER_TIB} MB/s/TiB, shared on the cluster"),
        "s3_stream": (size_gb * S3_GB_MONTH_USD, f"{size_gb:.0f} GB in S3 Standard"),
        "hub": (0.0, "none (the hub at every start)"),
    }
    options: list[WeightOption] = []
    for weights in WEIGHT_SOURCES:
        predicted = cold_start_section(c, weights)
        load = next(p["seconds"] for p in predicted["phases"] if p["phase"] == "weight_load")
        usd, what = storage[weights]
        options.append({"weights": weights, "weight_load_s": load, "ttft_s": predicted["ttft_s"],
                        "storage_usd_month": round(usd, 2), "storage": what})
    return options

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
from llm_on_eks.plan.cold_start import MB, ColdStartSection, predict
from llm_on_eks.plan.defaults import (
    ACCELERATORS,
    ADDONS,
    AUTO_MODE_NODE_CLASS,
    FSX_MOUNT_PATH,
    FSX_STAGING_BUDGET_S,
    FSX_STORAGE_GIB,
    FSX_THROUGHPUT_PER_TIB,
    NODE_DISK_GIB,
    SERVING_PORT,
    SYSTEM_HOURLY_USD,
    SYSTEM_INSTANCE_TYPE,
    SYSTEM_SCALING,
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
    ServingSection,
    Target,
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


def fsx_section(c: Choice) -> FsxSection | None:
    if c.profile.weights != "fsx":
        return None
    subnets = c.subnet_ids
    model_path = f"models/{c.profile.hf_repo}/{c.model.revision}"
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
        "marker_key": f"{model_path}/.llm-on-eks-staged.json",
        "pvc_name": naming.fsx_claim_name(c.cluster, c.region),
        "budget_s": FSX_STAGING_BUDGET_S,
        "user": naming.fsx_user(c.namespace, c.deployment),
    }


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


def model_source(model: ModelSection, profile: ProfileSection, fsx: FsxSection | None) -> str:
    """Where vLLM loads weights from: the FSx claim path for staged weights, else the hub."""
    if profile["weights"] == "fsx" and fsx:
        return f"pvc://{fsx['pvc_name']}{fsx['model_path'].removeprefix(fsx['mount_path'])}"
    return f"hf://{model['hf_repo']}@{model['revision']}"


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
                    fsx: FsxSection | None, neuron: NeuronSection | None, hf_token: HfTokenSection) -> ReleaseSpec:
    """The serving pods, and the Jobs that must run exactly like them (the vllm-neuron plugin
    takes NxD Inference's neuron config as additional_config.override_neuron_config)."""
    args = dict(profile["vllm_args"])
    if neuron and neuron["framework"] == "nxdi":
        args["additional-config"] = json.dumps({"override_neuron_config": neuron["config"]}, sort_keys=True)
    return {
        "name": kube["release"], "namespace": c.namespace, "deployment": c.deployment, "image": profile["image"],
        "nodes": profile["nodes"], "accelerator": profile["accelerator"], "served_model_name": c.profile.hf_repo,
        "model_source": model_source(model, profile, fsx), "server_args": args,
        # The S3 compile cache or artifacts are read with boto3 in the bucket's region.
        "env": {**profile["env"], **({"AWS_DEFAULT_REGION": c.region} if neuron else {})},
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


def cold_start_section(c: Choice, fsx: FsxSection | None) -> ColdStartSection:
    """The predicted time to first token, by phase. The checkpoint is read at its own precision:
    BF16 for a profile that quantizes at load time."""
    checkpoint = weight_bytes(c.model, c.profile.dtype, c.profile.checkpoint_quantization and c.profile.quantization)
    # A cold read from FSx for Lustre runs at the lower of its network and disk throughput: the
    # disk's, capacity (TiB) x per-unit throughput (AWS FSx for Lustre guide, "Performance").
    fsx_bytes_per_s = fsx["throughput_per_tib"] * MB * fsx["storage_capacity_gib"] / 1024 if fsx else None
    return predict(accelerator=c.profile.accelerator, instance_type=c.request.instance.name,
                   weights=c.profile.weights, checkpoint_bytes=checkpoint,
                   total_params_b=c.model.architecture.total_params_b, fsx_bytes_per_s=fsx_bytes_per_s)

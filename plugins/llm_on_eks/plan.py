"""The plan: every decision of a deployment, made once, before anything is created.

The plan task turns the run's params and the catalog into one JSON document (pushed to XCom)
that every later step reads. Steps never re-derive names or sizes, so a retry of any step
acts on exactly what the plan said, and a dry run can show all of it up front.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from llm_on_eks import naming
from llm_on_eks.catalog import Catalog, CatalogError, Model, Profile, default_catalog
from llm_on_eks.sizing import InfeasiblePlan, SizingRequest, check_feasible

PLAN_VERSION = 1
SERVING_PORT = 8000
FSX_MOUNT_PATH = "/fsx"
# ai-on-eks FSx defaults (REFERENCE.md): PERSISTENT_2, 2400 GiB, 500 MB/s/TiB.
FSX_STORAGE_GIB = 2400
FSX_THROUGHPUT_PER_TIB = 500
NODE_DISK_GIB = 500

# EKS managed node group settings per accelerator: the AMI type carrying the drivers (not the
# device plugin: llm_on_eks.kube.device_plugins), the taint that keeps other pods off, and the
# extended resource to request.
ACCELERATORS = {
    "gpu": {"ami_type": "AL2023_x86_64_NVIDIA", "taint_key": "nvidia.com/gpu", "resource": "nvidia.com/gpu"},
    "neuron": {"ami_type": "AL2023_x86_64_NEURON", "taint_key": "aws.amazon.com/neuron", "resource": "aws.amazon.com/neuron"},
}


class PlanError(ValueError):
    """The run's params cannot become a deployment; the message says what to change."""


def _resolve_sizing(catalog: Catalog, model: Model, profile: Profile, params: dict[str, Any]) -> tuple[SizingRequest, Any]:
    instance_name = params.get("instance_type") or profile.instance_type
    instance = catalog.instance_type(instance_name)
    if instance.accelerator != profile.accelerator:
        raise PlanError(f"instance type {instance_name} is a {instance.accelerator} instance, not {profile.accelerator}")
    max_model_len = params.get("max_model_len") or profile.max_model_len.default
    if max_model_len > profile.max_model_len.max:
        raise PlanError(
            f"max_model_len {max_model_len} exceeds the {profile.max_model_len.max} that the "
            f"{model.id} {profile.accelerator} profile is validated for"
        )
    request = SizingRequest.from_profile(
        catalog,
        model,
        profile,
        instance=instance,
        max_model_len=max_model_len,
        tensor_parallel_size=params.get("tensor_parallel_size"),
        kv_cache_dtype=params.get("kv_cache_dtype"),
        gpu_memory_utilization=params.get("gpu_memory_utilization"),
    )
    return request, check_feasible(catalog, request)


def _images_per_prompt(model: Model, profile: Profile, requested: int | None) -> int:
    if requested is None:
        return profile.images_per_prompt.default
    if requested and not model.takes_images:
        raise PlanError(f"{model.id} does not take images; images_per_prompt must be 0")
    if requested > profile.images_per_prompt.max:
        raise PlanError(
            f"images_per_prompt {requested} exceeds the {profile.images_per_prompt.max} the "
            f"{model.id} {profile.accelerator} profile allows"
        )
    return requested


def _neuron_compile(profile: Profile, model: Model, max_model_len: int, tp: int, bucket: str) -> dict[str, Any] | None:
    """Compile settings and the content-addressed S3 prefix of the compiled artifacts."""
    if profile.neuron is None:
        return None
    config = json.loads(json.dumps(profile.neuron.config))
    if profile.neuron.framework == "nxdi":
        text = config["text_config"]
        text["seq_len"] = max_model_len
        for key in ("context_encoding_buckets", "token_generation_buckets"):
            text[key] = [b for b in text[key] if b < max_model_len] + [max_model_len]
    else:
        config["sequence_length"] = max_model_len
        config["tensor_parallel_size"] = tp
    identity = {
        "hf_repo": profile.hf_repo,
        "revision": model.revision,
        "framework": profile.neuron.framework,
        "config": config,
        "image": profile.image,
    }
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]
    prefix = f"neuron-cache/{model.id}/{digest}"
    return {
        "framework": profile.neuron.framework,
        "config": config,
        "hash": digest,
        "artifacts_uri": f"s3://{bucket}/{prefix}/",
        "marker_key": f"{prefix}/_COMPLETE.json",
        "budget_s": profile.neuron.compile_budget_s,
    }


def _fsx(profile: Profile, model: Model, params: dict[str, Any], cluster: str, bucket: str) -> dict[str, Any] | None:
    if profile.weights != "fsx":
        return None
    subnets = params.get("subnet_ids") or []
    model_path = f"models/{profile.hf_repo}/{model.revision}"
    return {
        "name": f"{cluster}-model-weights",
        "deployment_type": "PERSISTENT_2",
        "storage_capacity_gib": FSX_STORAGE_GIB,
        "throughput_per_tib": FSX_THROUGHPUT_PER_TIB,
        # None: the first subnet of the EKS cluster's VPC config, looked up when provisioning.
        "subnet_id": params.get("fsx_subnet_id") or (subnets[0] if subnets else None),
        "security_group_ids": params.get("security_group_ids") or [],
        "data_repository_path": f"s3://{bucket}/models/",
        "file_system_path": "/models",
        "model_path": f"{FSX_MOUNT_PATH}/{model_path}",
        "marker_key": f"{model_path}/.llm-on-eks-staged.json",
        "pvc_name": f"{cluster}-model-weights"[:63],
    }


def build_plan(params: dict[str, Any], catalog: Catalog | None = None) -> dict[str, Any]:
    """Turn a run's params into the plan, or raise PlanError saying what is wrong."""
    catalog = catalog or default_catalog()
    try:
        model = catalog.model(params["model"])
        profile = model.profile(params["accelerator"])
        request, sizing = _resolve_sizing(catalog, model, profile, params)
    except (CatalogError, InfeasiblePlan) as exc:
        raise PlanError(str(exc)) from exc

    deployment = params.get("deployment_name") or naming.default_deployment_name(model.id, profile.accelerator)
    try:
        naming.check_deployment_name(deployment)
    except ValueError as exc:
        raise PlanError(str(exc)) from exc
    cluster, region = params["cluster_name"], params["region"]
    if params.get("create_cluster") and not (params.get("cluster_role_arn") and len(params.get("subnet_ids") or []) >= 2):
        raise PlanError("create_cluster needs cluster_role_arn and at least two subnet_ids in different AZs")

    accel = ACCELERATORS[profile.accelerator]
    instance = request.instance
    images = _images_per_prompt(model, profile, params.get("images_per_prompt"))
    bucket = params.get("artifact_bucket") or f"{naming.PROJECT}-{cluster}-{region}".lower()[:63]
    tp, pp = request.tensor_parallel_size, request.pipeline_parallel_size
    vllm_args = {
        **profile.vllm_args,
        "served-model-name": profile.hf_repo,
        "tensor-parallel-size": tp,
        "pipeline-parallel-size": pp,
        "max-model-len": request.max_model_len,
        "kv-cache-dtype": request.kv_cache_dtype,
    }
    if profile.accelerator == "gpu":
        vllm_args["gpu-memory-utilization"] = request.gpu_memory_utilization
    if model.takes_images:
        vllm_args["limit-mm-per-prompt"] = json.dumps({"image": images})
    if profile.quantization:
        vllm_args["quantization"] = profile.quantization
    benchmark_slo = params.get("benchmark_slo_p99_ttft_ms")
    return {
        "plan_version": PLAN_VERSION,
        "catalog_version": catalog.version,
        "deployment": deployment,
        "dry_run": bool(params.get("dry_run")),
        "model": {
            "id": model.id,
            "display_name": model.display_name,
            "hf_repo": profile.hf_repo,
            "revision": model.revision,
            "revision_pinned": bool(re.fullmatch(r"[0-9a-f]{40}", model.revision)),
            "takes_images": model.takes_images,
        },
        "profile": {
            "accelerator": profile.accelerator,
            "instance_type": instance.name,
            "nodes": request.nodes,
            "accelerators_per_node": sizing.accelerators_per_node,
            "tensor_parallel_size": tp,
            "pipeline_parallel_size": pp,
            "dtype": request.dtype,
            "quantization": request.quantization,
            "kv_cache_dtype": request.kv_cache_dtype,
            "max_model_len": request.max_model_len,
            "images_per_prompt": images,
            "weights": profile.weights,
            "image": profile.image,
            "vllm_args": vllm_args,
            "env": dict(profile.env),
            "startup_budget_s": profile.startup_budget_s,
        },
        "sizing": sizing.as_dict(),
        "aws": {"conn_id": params.get("aws_conn_id") or "aws_default", "region": region},
        "cluster": {
            "name": cluster,
            "create": bool(params.get("create_cluster")),
            "version": params.get("kubernetes_version") or catalog.kubernetes_version,
            "role_arn": params.get("cluster_role_arn"),
            "subnet_ids": list(params.get("subnet_ids") or []),
            "security_group_ids": list(params.get("security_group_ids") or []),
        },
        "nodegroup": {
            "name": naming.nodegroup_name(deployment),
            "instance_type": instance.name,
            "accelerator": profile.accelerator,
            "ami_type": accel["ami_type"],
            "capacity_type": "ON_DEMAND",
            "disk_size_gib": NODE_DISK_GIB,
            "scaling": {"min_size": request.nodes, "max_size": request.nodes, "desired_size": request.nodes},
            "labels": {naming.ACCELERATOR_KEY: profile.accelerator, naming.DEPLOYMENT_KEY: deployment},
            "taints": [{"key": accel["taint_key"], "value": "true", "effect": "NO_SCHEDULE"}],
            "node_role_arn": params.get("node_role_arn"),
            "subnet_ids": list(params.get("subnet_ids") or []),
        },
        "storage": {
            "artifact_bucket": bucket,
            "fsx": _fsx(profile, model, params, cluster, bucket),
        },
        "neuron": _neuron_compile(profile, model, request.max_model_len, tp, bucket),
        "hf_token": {
            "conn_id": params.get("hf_token_conn_id") or "hf_default",
            "secrets_manager_id": params.get("hf_token_secret_id"),
            "k8s_secret": {"name": catalog.hf_token_secret_name, "key": catalog.hf_token_secret_key},
        },
        "kubernetes": {
            "conn_id": params.get("kubernetes_conn_id"),
            "namespace": params.get("namespace") or "llm-serving",
            "release": deployment,
            "node_selector": {"node.kubernetes.io/instance-type": instance.name},
            "tolerations": [{"key": accel["taint_key"], "operator": "Exists", "effect": "NoSchedule"}],
            "accelerator_resource": accel["resource"],
            "labels": naming.k8s_labels(deployment),
        },
        "serving": {
            "namespace": params.get("namespace") or "llm-serving",
            "service": deployment,
            "port": SERVING_PORT,
            "served_model_name": profile.hf_repo,
            "takes_images": model.takes_images and images > 0,
            "images_per_prompt": images,
            "base_url": params.get("endpoint_url"),
            "startup_budget_s": profile.startup_budget_s,
        },
        "smoke_test": bool(params.get("smoke_test", True)),
        "benchmark": {
            "enabled": bool(params.get("benchmark")),
            "concurrency": params.get("benchmark_concurrency", 4),
            "num_prompts": params.get("benchmark_num_prompts", 32),
            "input_len": params.get("benchmark_input_len", 256),
            "output_len": params.get("benchmark_output_len", 128),
            "slo_p99_ttft_ms": benchmark_slo,
        },
        "lifecycle": {
            "idle_ttl_minutes": params.get("idle_ttl_minutes", 60),
            "protected": bool(params.get("protected")),
        },
        "tags": naming.aws_tags(deployment, cluster),
    }

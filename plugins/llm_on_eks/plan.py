"""The plan: every decision of a deployment, made once, before anything is created.

The plan task turns the run's params and the catalog into one JSON document (pushed to XCom,
one key per section) that every later step reads. Steps never re-derive names or sizes, so a
retry of any step acts on exactly what the plan said, and a dry run can show all of it up front.
Each section is a TypedDict: the document stays plain JSON for XCom, and a reader (or a type
checker) sees every field in one place. Every default lives in ``DEFAULTS``, which the params
form uses too.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any, TypedDict

from llm_on_eks import inputs, naming
from llm_on_eks.catalog import Catalog, CatalogError, Model, Profile, default_catalog
from llm_on_eks.sizing import InfeasiblePlan, SizingRequest, check_feasible

PLAN_VERSION = 3  # 3: named profiles, Neuron frameworks (cache_env, identity), host memory
SERVING_PORT = 8000
# Where FSx for Lustre is mounted in the staging Job; the serving pods read the claim directly.
FSX_MOUNT_PATH = "/fsx"
# ai-on-eks blueprint FSx defaults (infra/base/terraform fsx-for-lustre.tf): PERSISTENT_2,
# 2400 GiB, 500 MB/s/TiB.
FSX_STORAGE_GIB = 2400
FSX_THROUGHPUT_PER_TIB = 500
# Downloading ~400 GiB (Maverick FP8) onto FSx: the staging Job's deadline and its wait, one number.
FSX_STAGING_BUDGET_S = 6 * 3600
NODE_DISK_GIB = 500

# EKS managed node group settings per accelerator: the AMI type carrying the drivers (not the
# device plugin: llm_on_eks.kube.device_plugins), the taint that keeps other pods off, and the
# extended resource to request.
ACCELERATORS = {
    "gpu": {"ami_type": "AL2023_x86_64_NVIDIA", "taint_key": "nvidia.com/gpu", "resource": "nvidia.com/gpu"},
    "neuron": {"ami_type": "AL2023_x86_64_NEURON", "taint_key": "aws.amazon.com/neuron", "resource": "aws.amazon.com/neuron"},
}

# The cluster's system node group: untainted nodes for what tolerates no accelerator taint
# (coredns, the FSx weight-staging Job at 4 CPU / 16 GiB, controllers). One per cluster we create,
# shared by its deployments: tagged with the cluster and a role, never with one deployment.
SYSTEM_INSTANCE_TYPE = "m6i.xlarge"  # 4 vCPU, 16 GiB
# On-demand list prices in us-east-1 (aws.amazon.com/ec2/pricing, aws.amazon.com/eks/pricing),
# for estimates only. A cluster we create adds its control plane and system nodes.
SYSTEM_HOURLY_USD = 0.192
SYSTEM_SCALING = {"min_size": 1, "max_size": 3, "desired_size": 2}
EKS_CONTROL_PLANE_HOURLY_USD = 0.10
CLUSTER_HOURLY_USD = round(EKS_CONTROL_PLANE_HOURLY_USD + SYSTEM_HOURLY_USD * SYSTEM_SCALING["desired_size"], 3)

# Every default of a run, in one place: the params form shows these, and the plan falls back
# to them for a conf that leaves a key out (an API trigger need not send every field).
DEFAULTS: dict[str, Any] = {
    "accelerator": "gpu",
    "cluster_name": "llm-inference",
    "region": "us-west-2",
    "create_cluster": False,
    "namespace": "llm-serving",
    "aws_conn_id": "aws_default",
    "hf_token_conn_id": "hf_default",
    "preflight_proceed_on_unknown": False,
    "smoke_test": True,
    "benchmark": False,
    "benchmark_concurrency": 4,
    "benchmark_num_prompts": 32,
    "benchmark_input_len": 256,
    "benchmark_output_len": 128,
    "idle_ttl_minutes": 60,
    "protected": False,
    "dry_run": False,
}


class ModelSection(TypedDict):
    id: str
    display_name: str
    hf_repo: str
    revision: str
    revision_pinned: bool
    takes_images: bool


class ProfileSection(TypedDict):
    name: str  # the catalog profile: gpu, gpu-p4d, neuron, neuron-nxdi
    accelerator: str
    instance_type: str
    nodes: int
    accelerators_per_node: int
    tensor_parallel_size: int
    pipeline_parallel_size: int
    dtype: str
    quantization: str | None
    # The checkpoint's own quantization method (vLLM reads it from config.json; no --quantization).
    checkpoint_quantization: str | None
    kv_cache_dtype: str
    max_model_len: int
    images_per_prompt: int
    weights: str  # "neuron_compiled" | "fsx" | "hub"
    image: str
    vllm_args: dict[str, Any]
    env: dict[str, str]
    startup_budget_s: int
    # Host memory of a Neuron pod ({"request", "limit"}, e.g. "384Gi"): sharding loads the whole
    # model into host RAM, and a pod without a request is BestEffort, the first evicted.
    host_memory: dict[str, str] | None


class AwsSection(TypedDict):
    conn_id: str
    region: str


class ClusterSection(TypedDict):
    name: str
    create: bool
    version: str
    role_arn: str | None
    subnet_ids: list[str]
    security_group_ids: list[str]


class NodegroupRef(TypedDict):
    """What a delete step needs of a node group: its name, and the tags that say it is ours."""

    name: str
    role: str  # "accelerator" | "system"
    # Who owns it: the tags it is created with, and the ones an existing group must carry.
    tags: dict[str, str]


class NodegroupSpec(NodegroupRef):
    """A managed node group as both its ensure and its delete step see it: the accelerator
    group of a deployment, or the system group of a cluster. The two differ only in data."""

    instance_type: str
    ami_type: str
    capacity_type: str
    disk_size_gib: int
    scaling: dict[str, int]
    labels: dict[str, str]
    taints: list[dict[str, str]]
    node_role_arn: str | None
    subnet_ids: list[str]
    # The accelerator group is sized by the plan; the system group's size is left to whoever
    # changed it (an autoscaler).
    enforce_size: bool
    # The system group is made only on clusters this project creates; elsewhere it is checked for.
    only_on_own_cluster: bool
    hourly_usd: float


class FsxSection(TypedDict):
    name: str
    deployment_type: str
    storage_capacity_gib: int
    throughput_per_tib: int
    subnet_id: str | None
    security_group_ids: list[str]
    data_repository_path: str
    file_system_path: str
    mount_path: str
    model_path: str
    marker_key: str
    pvc_name: str
    budget_s: int


class StorageSection(TypedDict):
    artifact_bucket: str
    fsx: FsxSection | None


class NeuronSection(TypedDict):
    framework: str  # "optimum" | "nxdi"
    config: dict[str, Any] | None  # NxD Inference's neuron config; None for optimum
    # Everything that changes the compiled output; ``hash`` is its digest and names the S3 prefix.
    identity: dict[str, Any]
    hash: str
    artifacts_uri: str
    # The variable naming artifacts_uri to vLLM: NEURON_COMPILE_CACHE_URL (optimum's compile cache,
    # filled while vllm serve compiles) or NEURON_COMPILED_ARTIFACTS (NxD Inference, traced before).
    cache_env: str
    marker_key: str
    budget_s: int


class HfTokenSection(TypedDict):
    conn_id: str
    secrets_manager_id: str | None
    k8s_secret: dict[str, str]  # {"name", "key"}


class KubernetesSection(TypedDict):
    conn_id: str | None
    namespace: str
    release: str  # the Helm release; the chart names its Deployment/LWS and Service after it
    node_selector: dict[str, str]
    tolerations: list[dict[str, str]]
    accelerator_resource: str
    labels: dict[str, str]


class ServingSection(TypedDict):
    port: int
    served_model_name: str
    takes_images: bool
    base_url: str | None


class BenchmarkSection(TypedDict):
    enabled: bool
    concurrency: int
    num_prompts: int
    input_len: int
    output_len: int
    slo_p99_ttft_ms: float | None


class PreflightSection(TypedDict):
    proceed_on_unknown: bool


class LifecycleSection(TypedDict):
    idle_ttl_minutes: int
    protected: bool


class Plan(TypedDict):
    plan_version: int
    catalog_version: Any
    deployment: str
    dry_run: bool
    model: ModelSection
    profile: ProfileSection
    sizing: dict[str, Any]
    aws: AwsSection
    cluster: ClusterSection
    nodegroup: NodegroupSpec
    system_nodegroup: NodegroupSpec
    storage: StorageSection
    neuron: NeuronSection | None
    hf_token: HfTokenSection
    kubernetes: KubernetesSection
    serving: ServingSection
    preflight: PreflightSection
    smoke_test: bool
    benchmark: BenchmarkSection
    lifecycle: LifecycleSection
    tags: dict[str, str]


def param(params: dict[str, Any], name: str) -> Any:
    """A run's value for ``name``, or its default: a missing key and an empty optional are alike."""
    value = params.get(name)
    return DEFAULTS.get(name) if value is None or value == "" else value


class PlanError(ValueError):
    """The run's params cannot become a deployment; the message says what to change."""


def _resolve_sizing(catalog: Catalog, model: Model, profile: Profile, params: dict[str, Any]) -> tuple[SizingRequest, Any]:
    instance_name = params.get("instance_type") or profile.instance_type
    instance = catalog.instance_type(instance_name)
    if instance.accelerator != profile.accelerator:
        raise PlanError(f"instance_type: {instance_name} is a {instance.accelerator} instance, not "
                        f"{profile.accelerator} (the profile's accelerator)")
    max_model_len = params.get("max_model_len") or profile.max_model_len.default
    if max_model_len > profile.max_model_len.max:
        raise PlanError(
            f"max_model_len {max_model_len} exceeds the {profile.max_model_len.max} that the "
            f"{model.id} {profile.name} profile is validated for"
        )
    tp = params.get("tensor_parallel_size")
    if profile.neuron and profile.neuron.config and tp and tp != profile.tensor_parallel_size:
        raise PlanError(
            f"tensor_parallel_size {tp}: the {model.id} {profile.name} profile's NxD Inference neuron config is "
            f"written for TP {profile.tensor_parallel_size} (its tp_degree and world_size)"
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
    if requested and profile.images_refusal:
        raise PlanError(f"images_per_prompt {requested} on the {model.id} {profile.name} profile: {profile.images_refusal}")
    if requested > profile.images_per_prompt.max:
        raise PlanError(
            f"images_per_prompt {requested} exceeds the {profile.images_per_prompt.max} the "
            f"{model.id} {profile.name} profile allows"
        )
    return requested


# The vLLM flags that shape what Neuron compiles. optimum-neuron exports with batch size =
# --max-num-seqs, sequence length = --max-model-len, TP = --tensor-parallel-size and --dtype
# (optimum/neuron/vllm/model_loader.py); NxD Inference traces its neuron config (additional-config).
COMPILE_ARGS = ("tensor-parallel-size", "pipeline-parallel-size", "max-model-len", "max-num-seqs",
                "max-num-batched-tokens", "dtype", "kv-cache-dtype", "block-size", "additional-config")


def _neuron_config(profile: Profile, max_model_len: int) -> dict[str, Any] | None:
    """NxD Inference's neuron config at this sequence length (buckets up to it); None for optimum."""
    if profile.neuron is None or profile.neuron.config is None:
        return None
    config = json.loads(json.dumps(profile.neuron.config))
    text = config["text_config"]
    text["seq_len"] = max_model_len
    for key in ("context_encoding_buckets", "token_generation_buckets"):
        text[key] = [b for b in text[key] if b < max_model_len] + [max_model_len]
    return config


def _neuron_compile(profile: Profile, model: Model, config: dict[str, Any] | None, vllm_args: dict[str, Any],
                    bucket: str) -> NeuronSection | None:
    """Compile settings and the content-addressed S3 prefix of what is compiled. The key covers
    everything that changes the compiled output: the model at its revision, the image (the
    compiler version with it; region-independent), the framework and its environment
    (NEURON_CC_FLAGS), and the compile-shaping flags (TP, sequence length, batch size, dtype)."""
    if profile.neuron is None:
        return None
    runtime = profile.neuron.runtime
    identity = {
        "hf_repo": profile.hf_repo,
        "revision": model.revision,
        "framework": profile.neuron.framework,
        "image": profile.image,
        "env": dict(sorted(profile.env.items())),
        "args": {k: vllm_args[k] for k in COMPILE_ARGS if k in vllm_args},
        "config": config,
    }
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]
    prefix = f"neuron-cache/{model.id}/{digest}"
    return {
        "framework": profile.neuron.framework,
        "config": config,
        "identity": identity,
        "hash": digest,
        "artifacts_uri": f"s3://{bucket}/{prefix}/",
        "cache_env": runtime.cache_env,
        "marker_key": f"{prefix}/_COMPLETE.json",
        "budget_s": profile.neuron.compile_budget_s,
    }


def _fsx(profile: Profile, model: Model, params: dict[str, Any], cluster: str, region: str,
         bucket: str) -> FsxSection | None:
    if profile.weights != "fsx":
        return None
    subnets = params.get("subnet_ids") or []
    model_path = f"models/{profile.hf_repo}/{model.revision}"
    return {
        "name": naming.fsx_name(cluster),
        "deployment_type": "PERSISTENT_2",
        "storage_capacity_gib": FSX_STORAGE_GIB,
        "throughput_per_tib": FSX_THROUGHPUT_PER_TIB,
        # None: the first subnet of the EKS cluster's VPC config, looked up when provisioning.
        "subnet_id": params.get("fsx_subnet_id") or (subnets[0] if subnets else None),
        "security_group_ids": params.get("security_group_ids") or [],
        "data_repository_path": f"s3://{bucket}/models/",
        "file_system_path": "/models",
        "mount_path": FSX_MOUNT_PATH,
        "model_path": f"{FSX_MOUNT_PATH}/{model_path}",
        "marker_key": f"{model_path}/.llm-on-eks-staged.json",
        "pvc_name": naming.fsx_claim_name(cluster, region),
        "budget_s": FSX_STAGING_BUDGET_S,
    }


def _system_nodegroup(cluster: str, region: str, node_role_arn: str | None, subnet_ids: list[str]) -> NodegroupSpec:
    return {
        "name": naming.system_nodegroup_name(cluster, region),
        "role": naming.SYSTEM_ROLE,
        "instance_type": SYSTEM_INSTANCE_TYPE,
        "ami_type": "AL2023_x86_64_STANDARD",
        "capacity_type": "ON_DEMAND",
        "disk_size_gib": 50,
        "scaling": dict(SYSTEM_SCALING),
        "labels": {naming.ROLE_KEY: naming.SYSTEM_ROLE},
        "taints": [],
        "node_role_arn": node_role_arn,
        "subnet_ids": list(subnet_ids),
        "tags": naming.system_tags(cluster),
        "enforce_size": False,
        "only_on_own_cluster": True,
        "hourly_usd": round(SYSTEM_HOURLY_USD * SYSTEM_SCALING["desired_size"], 3),
    }


def check_inputs(params: dict[str, Any], allowed: inputs.Allowed | None) -> None:
    """Every patterned field whole, and the connection and secret ids and endpoint allowed
    (``allowed``: the Airflow deployment's ``[llm_on_eks]`` settings when None)."""
    try:
        inputs.check_fields(params)
        # The values in force: a default the Airflow deployment does not allow is refused too.
        inputs.check_allowed({k: param(params, k) for k in inputs.ALLOW_LISTED}, allowed or inputs.Allowed.from_config())
    except inputs.InputError as exc:
        raise PlanError(str(exc)) from None


def _check_cluster_inputs(params: dict[str, Any], subnet_ids: list[str]) -> None:
    """What creating the cluster needs, refused before the cluster and file system exist."""
    duplicates = sorted({s for s in subnet_ids if subnet_ids.count(s) > 1})
    if duplicates:
        raise PlanError(f"subnet_ids: {', '.join(duplicates)} listed more than once")
    if not param(params, "create_cluster"):
        return
    missing = [name for name in ("cluster_role_arn", "node_role_arn") if not params.get(name)]
    if missing or len(subnet_ids) < 2:
        raise PlanError("create_cluster needs cluster_role_arn, node_role_arn and at least two subnet_ids in "
                        f"different AZs (missing: {', '.join(missing) or 'a second subnet'})")


def _check_benchmark(params: dict[str, Any], max_model_len: int) -> None:
    """A prompt and its completion must fit the context, or every benchmark request fails at the
    very end of the run, after the prompts were built in the worker's memory."""
    if not param(params, "benchmark"):
        return
    prompt, completion = param(params, "benchmark_input_len"), param(params, "benchmark_output_len")
    if prompt + completion > max_model_len:
        raise PlanError(f"benchmark_input_len {prompt} + benchmark_output_len {completion} exceed max_model_len "
                        f"{max_model_len}")


def build_plan(params: dict[str, Any], catalog: Catalog | None = None, allowed: inputs.Allowed | None = None) -> Plan:
    """Turn a run's params into the plan, or raise PlanError saying what is wrong."""
    check_inputs(params, allowed)
    catalog = catalog or default_catalog()
    if not params.get("model"):
        raise PlanError(f"model: required; the catalog has: {', '.join(sorted(catalog.models))}")
    try:
        model = catalog.model(params["model"])
        # A named profile (gpu-p4d, neuron-nxdi) wins over the accelerator, which names its default one.
        profile = model.profile(params.get("profile") or param(params, "accelerator"))
        request, sizing = _resolve_sizing(catalog, model, profile, params)
    except (CatalogError, InfeasiblePlan) as exc:
        raise PlanError(str(exc)) from exc

    deployment = params.get("deployment_name") or naming.default_deployment_name(model.id, profile.name)
    try:
        naming.check_deployment_name(deployment)
    except ValueError as exc:
        raise PlanError(str(exc)) from exc
    cluster, region, namespace = param(params, "cluster_name"), param(params, "region"), param(params, "namespace")
    create_cluster = bool(param(params, "create_cluster"))
    subnet_ids = list(params.get("subnet_ids") or [])
    _check_cluster_inputs(params, subnet_ids)
    _check_benchmark(params, request.max_model_len)

    accel = ACCELERATORS[profile.accelerator]
    instance = request.instance
    images = _images_per_prompt(model, profile, params.get("images_per_prompt"))
    bucket = params.get("artifact_bucket") or naming.artifact_bucket(cluster, region)
    tp, pp = request.tensor_parallel_size, request.pipeline_parallel_size
    vllm_args = {
        **profile.vllm_args,
        "served-model-name": profile.hf_repo,
        "dtype": request.dtype,
        "tensor-parallel-size": tp,
        "pipeline-parallel-size": pp,
        "max-model-len": request.max_model_len,
        "kv-cache-dtype": request.kv_cache_dtype,
    }
    if "max-num-batched-tokens" in vllm_args:
        # The tested Neuron shape batches as many tokens as the sequence length (ai-on-eks-charts PR #12:
        # 4096 and 4096); a longer context override raises both, so no prompt is cut by the batch size.
        vllm_args["max-num-batched-tokens"] = max(vllm_args["max-num-batched-tokens"], request.max_model_len)
    if profile.accelerator == "gpu":
        vllm_args["gpu-memory-utilization"] = request.gpu_memory_utilization
    if model.takes_images and not profile.images_refusal:
        vllm_args["limit-mm-per-prompt"] = json.dumps({"image": images})
    if profile.quantization and not profile.checkpoint_quantization:
        # Quantize a BF16 checkpoint when loading. A pre-quantized checkpoint declares its method in
        # config.json and vLLM refuses a --quantization that differs from it (vLLM docs, "Quantization").
        vllm_args["quantization"] = profile.quantization
    neuron_config = _neuron_config(profile, request.max_model_len)
    tags = naming.aws_tags(deployment, cluster, namespace, region)
    node_role_arn = params.get("node_role_arn")
    return {
        "plan_version": PLAN_VERSION,
        "catalog_version": catalog.version,
        "deployment": deployment,
        "dry_run": bool(param(params, "dry_run")),
        "model": {
            "id": model.id,
            "display_name": model.display_name,
            "hf_repo": profile.hf_repo,
            "revision": model.revision,
            "revision_pinned": bool(re.fullmatch(r"[0-9a-f]{40}", model.revision)),
            "takes_images": model.takes_images,
        },
        "profile": {
            "name": profile.name,
            "accelerator": profile.accelerator,
            "instance_type": instance.name,
            "nodes": request.nodes,
            "accelerators_per_node": sizing.accelerators_per_node,
            "tensor_parallel_size": tp,
            "pipeline_parallel_size": pp,
            "dtype": request.dtype,
            "quantization": request.quantization,
            "checkpoint_quantization": profile.checkpoint_quantization,
            "kv_cache_dtype": request.kv_cache_dtype,
            "max_model_len": request.max_model_len,
            "images_per_prompt": images,
            "weights": profile.weights,
            # The AWS Deep Learning Containers registry is per region: the image follows the plan's.
            "image": catalog.resolve_image(profile.image, region),
            "vllm_args": vllm_args,
            "env": dict(profile.env),
            "startup_budget_s": profile.startup_budget_s,
            "host_memory": {"request": f"{profile.host_memory.request_gib}Gi", "limit": f"{profile.host_memory.limit_gib}Gi"}
            if profile.host_memory else None,
        },
        "sizing": sizing.as_dict(),
        "aws": {"conn_id": param(params, "aws_conn_id"), "region": region},
        "cluster": {
            "name": cluster,
            "create": create_cluster,
            "version": params.get("kubernetes_version") or catalog.kubernetes_version,
            "role_arn": params.get("cluster_role_arn"),
            "subnet_ids": subnet_ids,
            "security_group_ids": list(params.get("security_group_ids") or []),
        },
        "nodegroup": {
            "name": naming.nodegroup_name(cluster, region, namespace, deployment),
            "role": "accelerator",
            "instance_type": instance.name,
            "ami_type": accel["ami_type"],
            "capacity_type": "ON_DEMAND",
            "disk_size_gib": NODE_DISK_GIB,
            "scaling": {"min_size": request.nodes, "max_size": request.nodes, "desired_size": request.nodes},
            "labels": {naming.ACCELERATOR_KEY: profile.accelerator, naming.DEPLOYMENT_KEY: deployment,
                       naming.NAMESPACE_KEY: namespace},
            "taints": [{"key": accel["taint_key"], "value": "true", "effect": "NO_SCHEDULE"}],
            "node_role_arn": node_role_arn,
            "subnet_ids": subnet_ids,
            "tags": dict(tags),
            "enforce_size": True,
            "only_on_own_cluster": False,
            "hourly_usd": sizing.hourly_usd,
        },
        "system_nodegroup": _system_nodegroup(cluster, region, node_role_arn, subnet_ids),
        "storage": {
            "artifact_bucket": bucket,
            "fsx": _fsx(profile, model, params, cluster, region, bucket),
        },
        "neuron": _neuron_compile(profile, model, neuron_config, vllm_args, bucket),
        "hf_token": {
            "conn_id": param(params, "hf_token_conn_id"),
            "secrets_manager_id": params.get("hf_token_secret_id"),
            "k8s_secret": {"name": catalog.hf_token_secret_name, "key": catalog.hf_token_secret_key},
        },
        "kubernetes": {
            "conn_id": params.get("kubernetes_conn_id"),
            "namespace": namespace,
            "release": deployment,
            "node_selector": {"node.kubernetes.io/instance-type": instance.name},
            "tolerations": [{"key": accel["taint_key"], "operator": "Exists", "effect": "NoSchedule"}],
            "accelerator_resource": accel["resource"],
            "labels": naming.k8s_labels(deployment),
        },
        "serving": {
            "port": SERVING_PORT,
            "served_model_name": profile.hf_repo,
            "takes_images": model.takes_images and images > 0,
            "base_url": params.get("endpoint_url"),
        },
        "preflight": {"proceed_on_unknown": bool(param(params, "preflight_proceed_on_unknown"))},
        "smoke_test": bool(param(params, "smoke_test")),
        "benchmark": {
            "enabled": bool(param(params, "benchmark")),
            "concurrency": param(params, "benchmark_concurrency"),
            "num_prompts": param(params, "benchmark_num_prompts"),
            "input_len": param(params, "benchmark_input_len"),
            "output_len": param(params, "benchmark_output_len"),
            "slo_p99_ttft_ms": params.get("benchmark_slo_p99_ttft_ms"),
        },
        "lifecycle": {
            "idle_ttl_minutes": param(params, "idle_ttl_minutes"),
            "protected": bool(param(params, "protected")),
        },
        "tags": tags,
    }


class TeardownPlan(TypedDict):
    """What a teardown acts on. Built from the deployment's identity with the same naming rules a
    deploy uses, so a teardown finds everything by name and tags without remembering anything:
    after a failed deploy, an Airflow restart, or from another Airflow."""

    deployment: str
    dry_run: bool
    reason: str
    aws: AwsSection
    cluster: dict[str, str]  # {"name"}
    nodegroup: NodegroupRef
    system_nodegroup: NodegroupRef
    storage: dict[str, Any]  # {"artifact_bucket", "fsx": {"name", "pvc_name"}}
    kubernetes: dict[str, Any]  # {"conn_id", "namespace", "release", "labels"}
    hf_token: dict[str, Any]  # {"k8s_secret": {"name", "key"}}


TEARDOWN_KEYS = ("deployment_name", "cluster_name", "region", "namespace", "aws_conn_id", "kubernetes_conn_id",
                 "artifact_bucket", "dry_run", "reason")


def build_teardown_plan(params: dict[str, Any], catalog: Catalog | None = None,
                        allowed: inputs.Allowed | None = None) -> TeardownPlan:
    """The teardown of ``params["deployment_name"]`` on the params' cluster and namespace."""
    check_inputs(params, allowed)
    catalog = catalog or default_catalog()
    deployment = params.get("deployment_name") or ""
    try:
        naming.check_deployment_name(deployment)
    except ValueError as exc:
        raise PlanError(f"deployment_name: {exc}") from exc
    cluster, region, namespace = param(params, "cluster_name"), param(params, "region"), param(params, "namespace")
    return {
        "deployment": deployment,
        "dry_run": bool(param(params, "dry_run")),
        "reason": params.get("reason") or "requested",
        "aws": {"conn_id": param(params, "aws_conn_id"), "region": region},
        "cluster": {"name": cluster},
        "nodegroup": {"name": naming.nodegroup_name(cluster, region, namespace, deployment), "role": "accelerator",
                      "tags": naming.aws_tags(deployment, cluster, namespace, region)},
        "system_nodegroup": {"name": naming.system_nodegroup_name(cluster, region), "role": naming.SYSTEM_ROLE,
                             "tags": naming.system_tags(cluster)},
        "storage": {"artifact_bucket": params.get("artifact_bucket") or naming.artifact_bucket(cluster, region),
                    "fsx": {"name": naming.fsx_name(cluster), "pvc_name": naming.fsx_claim_name(cluster, region)}},
        "kubernetes": {"conn_id": params.get("kubernetes_conn_id"), "namespace": namespace,
                       "release": deployment, "labels": naming.k8s_labels(deployment)},
        "hf_token": {"k8s_secret": {"name": catalog.hf_token_secret_name, "key": catalog.hf_token_secret_key}},
    }


def teardown_params(plan: Plan) -> dict[str, Any]:
    """The teardown params that find what ``plan`` deployed (its identity and how to reach it)."""
    return {"deployment_name": plan["deployment"], "cluster_name": plan["cluster"]["name"],
            "region": plan["aws"]["region"], "namespace": plan["kubernetes"]["namespace"],
            "aws_conn_id": plan["aws"]["conn_id"], "kubernetes_conn_id": plan["kubernetes"]["conn_id"],
            "artifact_bucket": plan["storage"]["artifact_bucket"]}

"""The deploy plan: the run's params checked, then every section built from one ``Choice``."""

from __future__ import annotations

import dataclasses
from typing import Any

from llm_on_eks import inputs, naming
from llm_on_eks.catalog import Catalog, CatalogError, Model, Profile, default_catalog
from llm_on_eks.plan import sections as s
from llm_on_eks.plan.defaults import PLAN_VERSION, WEIGHT_SOURCES, PlanError, param
from llm_on_eks.plan.types import Plan, StorageSection
from llm_on_eks.sizing import InfeasiblePlan, Sizing, SizingRequest, check_feasible


def check_inputs(params: dict[str, Any], allowed: inputs.Allowed | None) -> None:
    """Every patterned field whole, and the connection and secret ids and endpoint allowed
    (``allowed``: the Airflow deployment's ``[llm_on_eks]`` settings when None)."""
    try:
        inputs.check_fields(params)
        # The values in force: a default the Airflow deployment does not allow is refused too.
        inputs.check_allowed({k: param(params, k) for k in inputs.ALLOW_LISTED}, allowed or inputs.Allowed.from_config())
    except inputs.InputError as exc:
        raise PlanError(str(exc)) from None


def _resolve_sizing(catalog: Catalog, model: Model, profile: Profile,
                    params: dict[str, Any]) -> tuple[SizingRequest, Sizing]:
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
        catalog, model, profile, instance=instance, max_model_len=max_model_len, tensor_parallel_size=tp,
        kv_cache_dtype=params.get("kv_cache_dtype"), gpu_memory_utilization=params.get("gpu_memory_utilization"),
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


def _check_cluster_inputs(params: dict[str, Any], subnet_ids: list[str]) -> None:
    """What creating the cluster needs, refused before the cluster and file system exist."""
    duplicates = sorted({s for s in subnet_ids if subnet_ids.count(s) > 1})
    if duplicates:
        raise PlanError(f"subnet_ids: {', '.join(duplicates)} listed more than once")
    # Roles and a network are made with the cluster when none are given (provision.ensure_roles,
    # provision.ensure_network); given subnets must span two zones (EKS API, CreateCluster).
    if param(params, "create_cluster") and len(subnet_ids) == 1:
        raise PlanError("subnet_ids: creating the cluster needs subnets in two availability zones; give at least "
                        "two, or none to have a network made")


def _check_benchmark(params: dict[str, Any], max_model_len: int) -> None:
    """A prompt and its completion must fit the context, or every benchmark request fails at the
    very end of the run, after the prompts were built in the worker's memory."""
    if not param(params, "benchmark"):
        return
    prompt, completion = param(params, "benchmark_input_len"), param(params, "benchmark_output_len")
    if prompt + completion > max_model_len:
        raise PlanError(f"benchmark_input_len {prompt} + benchmark_output_len {completion} exceed max_model_len "
                        f"{max_model_len}")


def _with_weights(profile: Profile, weights: str | None) -> Profile:
    """The profile with the weight source the run asks for, or PlanError naming the field."""
    if not weights:
        return profile
    if profile.neuron:
        raise PlanError(f"weights: profile {profile.name} runs on Neuron, which loads what neuron_compile made; "
                        f"{', '.join(WEIGHT_SOURCES)} are GPU profiles' sources (leave weights empty)")
    if weights not in WEIGHT_SOURCES:
        raise PlanError(f"weights: {weights!r} is not one of {', '.join(WEIGHT_SOURCES)}")
    return dataclasses.replace(profile, weights=weights)


def choose(params: dict[str, Any], catalog: Catalog) -> s.Choice:
    """The model, profile and sizing the params name, and the names they share; or PlanError."""
    if not params.get("model"):
        raise PlanError(f"model: required; the catalog has: {', '.join(sorted(catalog.models))}")
    try:
        model = catalog.model(params["model"])
        # A named profile (gpu-p4d, neuron-nxdi) wins over the accelerator, which names its default one.
        profile = model.profile(params.get("profile") or param(params, "accelerator"))
        profile = _with_weights(profile, params.get("weights"))
        request, sizing = _resolve_sizing(catalog, model, profile, params)
    except (CatalogError, InfeasiblePlan) as exc:
        raise PlanError(str(exc)) from exc
    deployment = params.get("deployment_name") or naming.default_deployment_name(model.id, profile.name)
    try:
        naming.check_deployment_name(deployment)
    except ValueError as exc:
        raise PlanError(str(exc)) from exc
    _check_cluster_inputs(params, list(params.get("subnet_ids") or []))
    _check_benchmark(params, request.max_model_len)
    cluster, region = param(params, "cluster_name"), param(params, "region")
    return s.Choice(params=params, catalog=catalog, model=model, profile=profile, request=request, sizing=sizing,
                    deployment=deployment, cluster=cluster, region=region, namespace=param(params, "namespace"),
                    bucket=params.get("artifact_bucket") or naming.artifact_bucket(cluster, region),
                    images_per_prompt=_images_per_prompt(model, profile, params.get("images_per_prompt")))


def build_plan(params: dict[str, Any], catalog: Catalog | None = None, allowed: inputs.Allowed | None = None) -> Plan:
    """Turn a run's params into the plan, or raise PlanError saying what is wrong."""
    check_inputs(params, allowed)
    catalog = catalog or default_catalog()
    c = choose(params, catalog)
    model, profile, kubernetes = s.model_section(c), s.profile_section(c), s.kubernetes_section(c)
    neuron, hf_token = s.neuron_section(c, profile), s.hf_token_section(c)
    storage: StorageSection = {"artifact_bucket": c.bucket, "fsx": s.fsx_section(c), "s3_stream": s.s3_stream_section(c)}
    target = s.target_section(params, c.deployment, c.cluster, c.region, c.namespace)
    return {
        "plan_version": PLAN_VERSION,
        "catalog_version": catalog.version,
        "deployment": c.deployment,
        "dry_run": target["dry_run"],
        "target": target,
        "model": model,
        "profile": profile,
        "sizing": c.sizing.as_dict(),
        "aws": {"conn_id": param(params, "aws_conn_id"), "region": c.region},
        "cluster": s.cluster_section(c),
        "nodegroup": s.nodegroup_section(c),
        "system_nodegroup": s.system_nodegroup_section(c),
        "nodepool": s.nodepool_section(c),
        "storage": storage,
        "cold_start": s.cold_start_section(c),
        "weights_options": s.weights_options(c),
        "neuron": neuron,
        "hf_token": hf_token,
        "kubernetes": kubernetes,
        "serving": s.serving_section(c),
        "release": s.release_section(c, model, profile, kubernetes, storage, neuron, hf_token),
        "preflight": {"proceed_on_unknown": bool(param(params, "preflight_proceed_on_unknown"))},
        "smoke_test": {"enabled": bool(param(params, "smoke_test")), "images_per_prompt": c.images_per_prompt},
        "benchmark": s.benchmark_section(c),
        "lifecycle": {"idle_ttl_minutes": param(params, "idle_ttl_minutes"), "protected": bool(param(params, "protected"))},
        "tags": naming.aws_tags(c.deployment, c.cluster, c.namespace, c.region),
    }

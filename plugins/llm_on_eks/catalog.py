"""The model catalog: which models we serve, on which accelerators, with which settings.

The catalog is data (``include/catalog/models.yaml``) so that adding a model or a profile is a
reviewable YAML change, not code. It is validated against a JSON schema and a few cross-field
rules every time it is loaded, because a typo in it would otherwise surface hours later as a
pod that never schedules.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml

INCLUDE_DIR = Path(__file__).resolve().parents[2] / "include"
CATALOG_PATH = INCLUDE_DIR / "catalog" / "models.yaml"
SCHEMA_PATH = INCLUDE_DIR / "catalog" / "catalog.schema.json"


class CatalogError(ValueError):
    """The catalog file is malformed or inconsistent."""


@dataclass(frozen=True)
class InstanceType:
    name: str
    accelerator: str
    device: str
    devices: int
    device_memory_gib: float
    hourly_usd: float
    efa_interfaces: int = 0
    logical_cores: int | None = None
    vcpus: int | None = None
    memory_gib: float | None = None


@dataclass(frozen=True)
class Architecture:
    total_params_b: float
    active_params_b: float
    layers: int
    hidden_size: int
    attention_heads: int
    kv_heads: int
    head_dim: int
    max_context: int
    experts: int | None = None
    attention_chunk_size: int | None = None
    global_attention_every: int | None = None


@dataclass(frozen=True)
class Bounded:
    default: int
    max: int


# Where each Neuron framework keeps what it compiles, by the variable naming the location:
# optimum-neuron fills the Neuron persistent compile cache while `vllm serve` compiles (an s3:// URL
# is read by libneuronxla's CompileCacheS3; Neuron docs "Neuron Persistent Cache"); NxD Inference
# loads artifacts traced before serving (Neuron vLLM user guide).
CACHE_ENV = {"compile_cache": "NEURON_COMPILE_CACHE_URL", "compiled_artifacts": "NEURON_COMPILED_ARTIFACTS"}
# The placeholder an image reference may carry for the AWS Deep Learning Containers registry of the
# plan's region (Catalog.resolve_image).
DLC_REGISTRY_PLACEHOLDER = "{aws_dlc_registry}"


@dataclass(frozen=True)
class NeuronFramework:
    """How vLLM runs on Neuron: its image, environment, compile cache and what it can serve."""

    name: str
    image: str
    env: dict[str, str]
    cache: str  # a key of CACHE_ENV
    images_supported: bool
    images_reason: str | None = None

    @property
    def cache_env(self) -> str:
        return CACHE_ENV[self.cache]


@dataclass(frozen=True)
class NeuronSettings:
    framework: str
    compile_budget_s: int
    runtime: NeuronFramework
    config: dict[str, Any] | None = None


@dataclass(frozen=True)
class Streamer:
    """vLLM's Run:ai model streamer settings for weights streamed from S3 (its model loader extra
    config: reads at once, and the CPU buffer in GiB)."""

    concurrency: int
    memory_limit_gib: int


@dataclass(frozen=True)
class HostMemory:
    request_gib: int
    limit_gib: int


@dataclass(frozen=True)
class Profile:
    accelerator: str
    hf_repo: str
    instance_type: str
    nodes: int
    tensor_parallel_size: int
    pipeline_parallel_size: int
    dtype: str
    kv_cache_dtype: str
    max_model_len: Bounded
    images_per_prompt: Bounded
    gpu_memory_utilization: float
    weights: str
    image: str
    vllm_args: dict[str, Any]
    env: dict[str, str]
    startup_budget_s: int
    quantization: str | None = None
    devices: int | None = None
    neuron: NeuronSettings | None = None
    # The profile's key in the catalog: the accelerator, optionally followed by a name (gpu-p4d).
    name: str = ""
    # The quantization method the checkpoint declares in its config.json (vLLM reads it: no flag).
    checkpoint_quantization: str | None = None
    host_memory: HostMemory | None = None
    streamer: Streamer | None = None

    @property
    def images_refusal(self) -> str | None:
        """Why this profile serves no images, when its runtime does not take them."""
        if self.neuron and not self.neuron.runtime.images_supported:
            return self.neuron.runtime.images_reason
        return None


@dataclass(frozen=True)
class Model:
    id: str
    display_name: str
    hf_repo: str
    revision: str
    architecture: Architecture
    takes_images: bool
    max_images_per_prompt: int
    profiles: dict[str, Profile]

    def profile(self, name: str) -> Profile:
        """The profile named ``name``: an accelerator (its default profile) or a named one (gpu-p4d)."""
        try:
            return self.profiles[name]
        except KeyError:
            raise CatalogError(
                f"model {self.id!r} has no {name!r} profile; it has: {', '.join(sorted(self.profiles))}"
            ) from None


@dataclass(frozen=True)
class Catalog:
    version: str
    hf_token_secret_name: str
    hf_token_secret_key: str
    runtime_reserve_gib_per_device: float
    kubernetes_version: str
    instance_types: dict[str, InstanceType]
    models: dict[str, Model]
    neuron_frameworks: dict[str, NeuronFramework] = field(default_factory=dict)
    aws_dlc_default_account: str = ""
    aws_dlc_accounts: dict[str, str] = field(default_factory=dict)

    def aws_dlc_registry(self, region: str) -> str:
        """The AWS Deep Learning Containers registry of ``region``: the images are published per
        region, mostly by one account (https://github.com/aws/deep-learning-containers/blob/master/available_images.md)."""
        account = self.aws_dlc_accounts.get(region, self.aws_dlc_default_account)
        suffix = ".amazonaws.com.cn" if region.startswith("cn-") else ".amazonaws.com"
        return f"{account}.dkr.ecr.{region}{suffix}"

    def resolve_image(self, image: str, region: str) -> str:
        """An image reference for ``region``: the DLC registry placeholder filled in."""
        return image.replace(DLC_REGISTRY_PLACEHOLDER, self.aws_dlc_registry(region))

    def model(self, model_id: str) -> Model:
        try:
            return self.models[model_id]
        except KeyError:
            raise CatalogError(
                f"unknown model {model_id!r}; the catalog has: {', '.join(sorted(self.models))}"
            ) from None

    def instance_type(self, name: str) -> InstanceType:
        try:
            return self.instance_types[name]
        except KeyError:
            raise CatalogError(
                f"unknown instance type {name!r}; the catalog knows: {', '.join(sorted(self.instance_types))}"
            ) from None


def _schema_errors(document: Any) -> list[str]:
    schema = json.loads(SCHEMA_PATH.read_text())
    validator = jsonschema.Draft202012Validator(schema)
    return [
        f"{'/'.join(str(p) for p in error.absolute_path) or '<root>'}: {error.message}"
        for error in sorted(validator.iter_errors(document), key=lambda e: list(map(str, e.absolute_path)))
    ]


def _profile(name: str, raw: dict[str, Any], model_repo: str, gpu_util: float,
             frameworks: dict[str, NeuronFramework]) -> Profile:
    """A profile; a Neuron profile takes its image and environment from its framework."""
    raw = dict(raw)
    neuron = raw.pop("neuron", None)
    memory = raw.pop("host_memory_gib", None)
    streamer = raw.pop("streamer", None)
    settings, env = None, dict(raw.pop("env", {}))
    if neuron:
        runtime = frameworks.get(neuron["framework"]) or NeuronFramework(neuron["framework"], "", {}, "compile_cache", True)
        settings = NeuronSettings(runtime=runtime, **neuron)
        raw["image"] = runtime.image
        env = {**runtime.env, **env}
    return Profile(
        accelerator=name.split("-")[0],
        name=name,
        hf_repo=raw.pop("hf_repo", model_repo),
        max_model_len=Bounded(**raw.pop("max_model_len")),
        images_per_prompt=Bounded(**raw.pop("images_per_prompt")),
        gpu_memory_utilization=raw.pop("gpu_memory_utilization", gpu_util),
        neuron=settings,
        env=env,
        host_memory=HostMemory(memory["request"], memory["limit"]) if memory else None,
        streamer=Streamer(**streamer) if streamer else None,
        **raw,
    )


def _neuron_errors(where: str, profile: Profile, raw_env: dict[str, str], frameworks: dict[str, NeuronFramework]) -> list[str]:
    """A Neuron profile uses its framework whole: its image, variables, cache and features."""
    settings, errors = profile.neuron, []
    runtime = frameworks.get(settings.framework)
    if runtime is None:
        return [f"{where}/neuron/framework: {settings.framework!r} is not in neuron_frameworks"]
    for key in raw_env:
        if key in runtime.env or key in CACHE_ENV.values():
            errors.append(f"{where}/env/{key}: set by the {runtime.name} framework (neuron_frameworks) or the plan")
    if not runtime.images_supported and profile.images_per_prompt.max:
        errors.append(f"{where}/images_per_prompt: max must be 0: {runtime.images_reason}")
    if settings.framework == "nxdi":
        text = (settings.config or {}).get("text_config", {})
        if text.get("tp_degree", profile.tensor_parallel_size) != profile.tensor_parallel_size:
            errors.append(f"{where}/neuron/config: text_config.tp_degree {text['tp_degree']} is not the "
                          f"tensor_parallel_size {profile.tensor_parallel_size}")
        seqs = profile.vllm_args.get("max-num-seqs")
        if seqs is not None and text.get("batch_size", seqs) != seqs:
            errors.append(f"{where}/neuron/config: text_config.batch_size {text['batch_size']} is not vllm_args "
                          f"max-num-seqs {seqs}")
    return errors


def _consistency_errors(catalog: Catalog, document: dict[str, Any]) -> list[str]:
    """Rules JSON schema cannot express: references between entries and ordered bounds."""
    errors = []
    for name, framework in catalog.neuron_frameworks.items():
        if framework.image.replace(DLC_REGISTRY_PLACEHOLDER, "").count("{"):
            errors.append(f"neuron_frameworks/{name}/image: the only placeholder is {DLC_REGISTRY_PLACEHOLDER}")
        if DLC_REGISTRY_PLACEHOLDER in framework.image and not catalog.aws_dlc_default_account:
            errors.append(f"neuron_frameworks/{name}/image: names {DLC_REGISTRY_PLACEHOLDER} but aws_dlc_registry is missing")
    for model in catalog.models.values():
        arch = model.architecture
        for name, profile in model.profiles.items():
            where = f"models/{model.id}/profiles/{name}"
            if profile.neuron:
                raw_env = document["models"][model.id]["profiles"][name].get("env", {})
                errors += _neuron_errors(where, profile, raw_env, catalog.neuron_frameworks)
            if profile.checkpoint_quantization and not profile.quantization:
                errors.append(f"{where}/checkpoint_quantization: needs quantization, the weights' precision in memory")
            instance = catalog.instance_types.get(profile.instance_type)
            if instance is None:
                errors.append(f"{where}/instance_type: {profile.instance_type!r} is not in instance_types")
            elif instance.accelerator != profile.accelerator:
                errors.append(
                    f"{where}/instance_type: {profile.instance_type} is a {instance.accelerator} instance, "
                    f"not {profile.accelerator}"
                )
            elif profile.devices and profile.devices > instance.devices:
                errors.append(f"{where}/devices: {profile.devices} exceeds the {instance.devices} of {instance.name}")
            for key, bounded in (("max_model_len", profile.max_model_len), ("images_per_prompt", profile.images_per_prompt)):
                if bounded.default > bounded.max:
                    errors.append(f"{where}/{key}: default {bounded.default} exceeds max {bounded.max}")
            if profile.max_model_len.max > arch.max_context:
                errors.append(
                    f"{where}/max_model_len: max {profile.max_model_len.max} exceeds the model's "
                    f"context of {arch.max_context}"
                )
            if profile.images_per_prompt.max > model.max_images_per_prompt:
                errors.append(
                    f"{where}/images_per_prompt: max {profile.images_per_prompt.max} exceeds the model's "
                    f"{model.max_images_per_prompt}"
                )
    return errors


def parse_catalog(document: Any) -> Catalog:
    """Validate a parsed catalog document and build the typed catalog, or raise CatalogError."""
    errors = _schema_errors(document)
    if errors:
        raise CatalogError("model catalog is invalid:\n  " + "\n  ".join(errors))
    defaults = document["defaults"]
    frameworks = {
        name: NeuronFramework(name=name, image=raw["image"], env=dict(raw["env"]), cache=raw["cache"],
                              images_supported=raw["images"]["supported"], images_reason=raw["images"].get("reason"))
        for name, raw in document.get("neuron_frameworks", {}).items()
    }
    registry = document.get("aws_dlc_registry", {})
    models = {}
    for model_id, raw in document["models"].items():
        models[model_id] = Model(
            id=model_id,
            display_name=raw["display_name"],
            hf_repo=raw["hf_repo"],
            revision=raw["revision"],
            architecture=Architecture(**raw["architecture"]),
            takes_images=raw["images"]["supported"],
            max_images_per_prompt=raw["images"]["max_per_prompt"],
            profiles={
                name: _profile(name, profile, raw["hf_repo"], defaults["gpu_memory_utilization"], frameworks)
                for name, profile in raw["profiles"].items()
            },
        )
    catalog = Catalog(
        version=document["catalog_version"],
        hf_token_secret_name=defaults["hf_token_secret"]["name"],
        hf_token_secret_key=defaults["hf_token_secret"]["key"],
        runtime_reserve_gib_per_device=defaults["runtime_reserve_gib_per_device"],
        kubernetes_version=defaults["kubernetes_version"],
        instance_types={name: InstanceType(name=name, **raw) for name, raw in document["instance_types"].items()},
        models=models,
        neuron_frameworks=frameworks,
        aws_dlc_default_account=registry.get("default_account", ""),
        aws_dlc_accounts=dict(registry.get("accounts", {})),
    )
    errors = _consistency_errors(catalog, document)
    if errors:
        raise CatalogError("model catalog is inconsistent:\n  " + "\n  ".join(errors))
    return catalog


def _document(path: Path) -> dict[str, Any]:
    """The catalog file as data, read once per version of the file in a process (DAG files need
    it at every parse) with libyaml's loader where PyYAML has one (several times faster than the
    pure-Python loader). Shared: copy it before changing it."""
    return _parsed(path, path.stat().st_mtime_ns)


@cache
def _parsed(path: Path, mtime_ns: int) -> dict[str, Any]:
    try:
        return yaml.load(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError as exc:
        raise CatalogError(f"model catalog {path} is not valid YAML: {exc}") from exc


def load_catalog(path: Path = CATALOG_PATH) -> Catalog:
    """Load and validate the catalog file."""
    return parse_catalog(copy.deepcopy(_document(path)))


@cache
def default_catalog() -> Catalog:
    """The shipped catalog, loaded once per process."""
    return load_catalog()


def profile_names(path: Path = CATALOG_PATH) -> list[str]:
    """Every profile name of the catalog's models (gpu, gpu-p4d, neuron, ...), without validation:
    the params form offers them at DAG parse time."""
    document = _document(path)
    return sorted({name for model in document["models"].values() for name in model["profiles"]})


def catalog_index(path: Path = CATALOG_PATH) -> tuple[list[str], list[str]]:
    """Model ids and instance type names, without validation: DAG files need them at parse
    time, cheaply; the plan task validates the whole catalog when a run starts."""
    document = _document(path)
    return list(document["models"]), sorted(document["instance_types"])

"""The model catalog: which models we serve, on which accelerators, with which settings.

The catalog is data (``include/catalog/models.yaml``) so that adding a model or a profile is a
reviewable YAML change, not code. It is validated against a JSON schema and a few cross-field
rules every time it is loaded, because a typo in it would otherwise surface hours later as a
pod that never schedules.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

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


@dataclass(frozen=True)
class NeuronSettings:
    framework: str
    compile_budget_s: int
    config: dict[str, Any]


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

    def profile(self, accelerator: str) -> Profile:
        try:
            return self.profiles[accelerator]
        except KeyError:
            raise CatalogError(
                f"model {self.id!r} has no {accelerator!r} profile; it has: {', '.join(sorted(self.profiles))}"
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
    import jsonschema

    schema = json.loads(SCHEMA_PATH.read_text())
    validator = jsonschema.Draft202012Validator(schema)
    return [
        f"{'/'.join(str(p) for p in error.absolute_path) or '<root>'}: {error.message}"
        for error in sorted(validator.iter_errors(document), key=lambda e: list(map(str, e.absolute_path)))
    ]


def _profile(accelerator: str, raw: dict[str, Any], model_repo: str, gpu_util: float) -> Profile:
    raw = dict(raw)
    neuron = raw.pop("neuron", None)
    return Profile(
        accelerator=accelerator,
        hf_repo=raw.pop("hf_repo", model_repo),
        max_model_len=Bounded(**raw.pop("max_model_len")),
        images_per_prompt=Bounded(**raw.pop("images_per_prompt")),
        gpu_memory_utilization=raw.pop("gpu_memory_utilization", gpu_util),
        neuron=NeuronSettings(**neuron) if neuron else None,
        **raw,
    )


def _consistency_errors(catalog: Catalog) -> list[str]:
    """Rules JSON schema cannot express: references between entries and ordered bounds."""
    errors = []
    for model in catalog.models.values():
        arch = model.architecture
        for accelerator, profile in model.profiles.items():
            where = f"models/{model.id}/profiles/{accelerator}"
            instance = catalog.instance_types.get(profile.instance_type)
            if instance is None:
                errors.append(f"{where}/instance_type: {profile.instance_type!r} is not in instance_types")
            elif instance.accelerator != accelerator:
                errors.append(
                    f"{where}/instance_type: {profile.instance_type} is a {instance.accelerator} instance, "
                    f"not {accelerator}"
                )
            elif profile.devices and profile.devices > instance.devices:
                errors.append(f"{where}/devices: {profile.devices} exceeds the {instance.devices} of {instance.name}")
            for name, bounded in (("max_model_len", profile.max_model_len), ("images_per_prompt", profile.images_per_prompt)):
                if bounded.default > bounded.max:
                    errors.append(f"{where}/{name}: default {bounded.default} exceeds max {bounded.max}")
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
                accelerator: _profile(accelerator, profile, raw["hf_repo"], defaults["gpu_memory_utilization"])
                for accelerator, profile in raw["profiles"].items()
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
    )
    errors = _consistency_errors(catalog)
    if errors:
        raise CatalogError("model catalog is inconsistent:\n  " + "\n  ".join(errors))
    return catalog


def load_catalog(path: Path = CATALOG_PATH) -> Catalog:
    """Load and validate the catalog file."""
    try:
        document = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise CatalogError(f"model catalog {path} is not valid YAML: {exc}") from exc
    return parse_catalog(document)


@cache
def default_catalog() -> Catalog:
    """The shipped catalog, loaded once per process."""
    return load_catalog()


def catalog_index(path: Path = CATALOG_PATH) -> tuple[list[str], list[str]]:
    """Model ids and instance type names, without validation: DAG files need them at parse
    time, cheaply; the plan task validates the whole catalog when a run starts."""
    document = yaml.safe_load(path.read_text())
    return list(document["models"]), sorted(document["instance_types"])

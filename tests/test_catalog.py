"""The catalog loads, and a broken one is refused with a message naming the spot."""

from __future__ import annotations

import copy

import pytest
import yaml

from llm_on_eks.catalog import CATALOG_PATH, CatalogError, default_catalog, parse_catalog


@pytest.fixture
def document() -> dict:
    return yaml.safe_load(CATALOG_PATH.read_text())


def test_shipped_catalog_has_the_required_entries():
    catalog = default_catalog()
    assert {"llama4-scout", "llama4-maverick", "deepseek-r1-distill-qwen-32b", "llama-3-8b"} <= set(catalog.models)
    maverick = catalog.model("llama4-maverick")
    assert maverick.profile("gpu").hf_repo.endswith("-FP8")
    assert maverick.profile("gpu").instance_type == "p5.48xlarge"
    assert maverick.profile("neuron").instance_type == "trn2.48xlarge"
    assert catalog.model("deepseek-r1-distill-qwen-32b").profile("gpu").instance_type == "p4d.24xlarge"
    assert catalog.instance_type(catalog.model("llama-3-8b").profile("gpu").instance_type).devices == 1
    # AWS's instance data (16 Trainium2 devices) over the ai-on-eks Trainium2 guide's 32.
    assert catalog.instance_type("trn2.48xlarge").devices == 16
    # The ai-on-eks GPU guide's key, stored once (its Trainium2 guide double-encodes it).
    assert (catalog.hf_token_secret_name, catalog.hf_token_secret_key) == ("hf-token", "token")


def test_every_profile_carries_what_deployment_needs():
    for model in default_catalog().models.values():
        assert model.architecture.kv_heads and model.architecture.head_dim
        for profile in model.profiles.values():
            assert profile.image and profile.startup_budget_s >= 60
            assert profile.max_model_len.default <= profile.max_model_len.max
            if profile.accelerator == "neuron":
                assert profile.neuron and profile.neuron.compile_budget_s > 0


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d["models"]["llama4-scout"].pop("hf_repo"), "models/llama4-scout: 'hf_repo' is a required property"),
        (lambda d: d["models"]["llama4-scout"]["architecture"].update(kv_heads=0),
         "models/llama4-scout/architecture/kv_heads: 0 is less than the minimum of 1"),
        (lambda d: d["models"]["llama4-scout"]["profiles"]["gpu"].update(dtype="int3"),
         "models/llama4-scout/profiles/gpu/dtype: 'int3' is not one of"),
        (lambda d: d["models"]["llama4-scout"]["profiles"]["gpu"].update(colour="red"),
         "Additional properties are not allowed ('colour' was unexpected)"),
        (lambda d: d["models"]["llama4-scout"]["profiles"]["neuron"].pop("neuron"),
         "models/llama4-scout/profiles/neuron: 'neuron' is a required property"),
        (lambda d: d["models"].update({"Bad_Name": d["models"]["llama-3-8b"]}), "models: 'Bad_Name' does not match"),
    ],
)
def test_schema_failures_name_the_spot(document, mutate, message):
    broken = copy.deepcopy(document)
    mutate(broken)
    with pytest.raises(CatalogError, match="model catalog is invalid") as excinfo:
        parse_catalog(broken)
    assert message in str(excinfo.value)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d["models"]["llama4-scout"]["profiles"]["gpu"].update(instance_type="p9.huge"),
         "models/llama4-scout/profiles/gpu/instance_type: 'p9.huge' is not in instance_types"),
        (lambda d: d["models"]["llama4-scout"]["profiles"]["gpu"].update(instance_type="trn2.48xlarge"),
         "trn2.48xlarge is a neuron instance, not gpu"),
        (lambda d: d["models"]["llama-3-8b"]["profiles"]["gpu"]["max_model_len"].update(max=9000, default=9000),
         "max 9000 exceeds the model's context of 8192"),
        (lambda d: d["models"]["llama4-scout"]["profiles"]["gpu"]["max_model_len"].update(default=2000000),
         "default 2000000 exceeds max 1000000"),
    ],
)
def test_inconsistencies_are_refused(document, mutate, message):
    broken = copy.deepcopy(document)
    mutate(broken)
    with pytest.raises(CatalogError, match="inconsistent") as excinfo:
        parse_catalog(broken)
    assert message in str(excinfo.value)

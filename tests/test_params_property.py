"""The deploy form, property-based (hypothesis): confs drawn from each param's own JSON schema
and kept when the form accepts them, as Airflow's trigger validation would. Every such conf
either fails the plan with an error naming a form field, or plans with external names that pass
every target's rules; and two different identities never share a name within its scope.

The strategies are built from the Param schemas here (a small converter for the keywords the
form uses) rather than by hypothesis-jsonschema, whose 0.23.1 release does not run on current
hypothesis. Patterns go through hypothesis's ``from_regex`` unanchored, as JSON Schema's
``pattern`` searches: that is how a trailing newline reached the plan before."""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from llm_on_eks import naming
from llm_on_eks.inputs import Allowed
from llm_on_eks.params import deploy_form
from llm_on_eks.plan import PlanError, build_plan
from tests.test_inputs import INSTANCE_TYPES, MODELS
from tests.test_naming import RULES, _names, assert_valid_names

FORM = deploy_form(MODELS, "llama4-scout", INSTANCE_TYPES)
IDENTITY = ("cluster_name", "region", "namespace", "deployment_name")
# Reproducible in CI (the same examples every run), many more than the hand-made tables.
SETTINGS = settings(max_examples=300, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


def _strategy(schema: dict[str, Any]) -> st.SearchStrategy:
    """Values for one param's JSON schema (enum, type with null, pattern, bounds, arrays)."""
    types = schema.get("type", [])
    types = [types] if isinstance(types, str) else list(types)
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    options = []
    if "null" in types:
        options.append(st.none())
    if "boolean" in types:
        options.append(st.booleans())
    if "integer" in types:
        options.append(st.integers(schema.get("minimum"), schema.get("maximum")))
    if "number" in types:
        low = schema.get("minimum", schema.get("exclusiveMinimum"))
        options.append(st.floats(low, schema.get("maximum"), exclude_min="exclusiveMinimum" in schema,
                                 allow_nan=False, allow_infinity=False))
    if "string" in types:
        options.append(st.from_regex(schema["pattern"]) if "pattern" in schema else st.text(max_size=50))
    if "array" in types:
        options.append(st.lists(_strategy(schema["items"]), max_size=3, unique=schema.get("uniqueItems", False)))
    return st.one_of(options)


# What Airflow checks each value against at trigger time (Param.resolve: jsonschema.validate).
VALIDATORS = {name: jsonschema.Draft202012Validator(p.schema, format_checker=jsonschema.FormatChecker())
              for name, p in FORM.items()}
DEFAULTS = {name: p.value for name, p in FORM.items()}


@st.composite
def confs(draw, fields=tuple(FORM)) -> dict[str, Any]:
    """A conf of some of the form's fields, accepted by the form, over the form's defaults (a
    trigger need not send every field; Airflow fills in the rest)."""
    chosen = draw(st.lists(st.sampled_from(fields), unique=True, max_size=len(fields)))
    conf = {name: draw(_strategy(FORM[name].schema)) for name in {*chosen, *IDENTITY}}
    assume(all(VALIDATORS[name].is_valid(value) for name, value in conf.items()))
    return {**DEFAULTS, **conf}


@SETTINGS
@given(confs())
def test_an_accepted_conf_plans_with_valid_names_or_is_refused_naming_a_field(conf):
    try:
        plan = build_plan(conf, allowed=Allowed())
    except PlanError as exc:
        assert any(field in str(exc) for field in FORM), f"no field named in: {exc}"
        return
    assert_valid_names(plan)
    assert (plan["kubernetes"]["namespace"], plan["aws"]["region"]) == (conf["namespace"], conf["region"])


def _identity(conf: dict[str, Any]) -> tuple[str, str, str, str]:
    """The identity a plan names things by: an empty deployment name is the model's default one."""
    default = {"deployment_name": naming.default_deployment_name(conf["model"], conf["accelerator"])}
    return tuple(conf[k] or default.get(k) for k in IDENTITY)


@SETTINGS
@given(confs(fields=IDENTITY), confs(fields=IDENTITY))
def test_two_identities_never_share_a_name_in_its_scope(one, other):
    a, b = _identity(one), _identity(other)
    assume(a != b)
    names_a, names_b = _names(*a), _names(*b)
    for target, (_, key, scope) in RULES.items():
        if scope(*a) == scope(*b) and key(*a) != key(*b):
            assert names_a[target] != names_b[target], (target, a, b)


@pytest.mark.parametrize("conf", [
    {"namespace": "llm\n", "cluster_name": "c", "region": "us-west-2", "deployment_name": "d"},
    {"namespace": "llm", "cluster_name": "c\n", "region": "us-west-2", "deployment_name": "d"},
])
def test_the_trailing_newline_the_form_lets_through_is_refused_by_the_plan(conf):
    """What the property found first: JSON Schema's pattern searches, and ``$`` matches before a
    final newline, so only the plan's whole-string check stands between it and the cluster."""
    with pytest.raises(PlanError, match="namespace|cluster_name"):
        build_plan(conf, allowed=Allowed())

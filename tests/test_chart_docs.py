"""The chart's README is generated from values.yaml (scripts/chart-docs) and is not stale; every
value has a `# --` description; values.yaml and values.schema.json declare the same keys.
Fast: no helm binary, no servers."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "chart-docs"
CHART = ROOT / "include" / "charts" / "vllm-serving"


def _load_chart_docs():
    loader = importlib.machinery.SourceFileLoader("chart_docs", str(SCRIPT))
    module = importlib.util.module_from_spec(importlib.util.spec_from_loader("chart_docs", loader))
    sys.modules["chart_docs"] = module  # dataclasses look their module up there
    loader.exec_module(module)
    return module


chart_docs = _load_chart_docs()


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=60)


@pytest.fixture
def chart_copy(tmp_path) -> Path:
    return Path(shutil.copytree(CHART, tmp_path / "vllm-serving"))


def test_readme_is_generated_from_values():
    result = run("--check")
    assert result.returncode == 0, f"README.md is stale, run scripts/chart-docs:\n{result.stdout}{result.stderr}"


def test_every_value_has_a_description():
    text = (CHART / "values.yaml").read_text()
    found = chart_docs.descriptions(text)
    assert sorted(found) == sorted(chart_docs.key_paths(yaml.safe_load(text)))
    assert [key for key, description in found.items() if not description] == []


def test_readme_lists_every_value_once():
    readme = (CHART / "README.md").read_text()
    listed = [line.split("|")[1].strip() for line in readme.splitlines() if line.startswith("| ") and "`" in line]
    assert listed == list(chart_docs.descriptions((CHART / "values.yaml").read_text()))


def _schema_paths(schema: dict, definitions: dict, prefix: str = "") -> list[str]:
    if "$ref" in schema:
        schema = definitions[schema["$ref"].removeprefix("#/definitions/")]
    paths = []
    for key, sub in schema.get("properties", {}).items():
        paths += [prefix + key, *_schema_paths(sub, definitions, f"{prefix}{key}.")]
    return paths


def test_schema_declares_exactly_the_documented_keys():
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert sorted(_schema_paths(schema, schema.get("definitions", {}))) == sorted(chart_docs.key_paths(values))


def test_check_fails_with_a_diff_when_the_readme_is_stale(chart_copy):
    values = chart_copy / "values.yaml"
    values.write_text(values.read_text().replace("# -- Port of the OpenAI-compatible API.",
                                                 "# -- Port of the OpenAI-compatible API (changed)."))
    result = run("--check", "--chart", str(chart_copy))
    assert result.returncode == 1
    assert "+| service.port | int | `8000` | Port of the OpenAI-compatible API (changed). |" in result.stdout
    assert run("--chart", str(chart_copy)).returncode == 0
    assert run("--check", "--chart", str(chart_copy)).returncode == 0


def test_a_value_without_a_description_fails(chart_copy):
    values = chart_copy / "values.yaml"
    values.write_text(values.read_text() + "\nextra:\n  # a comment, not a description\n  key: 1\n")
    result = run("--check", "--chart", str(chart_copy))
    assert result.returncode == 1 and "keys without a `# --` description: extra, extra.key" in result.stderr
    readme = (chart_copy / "README.md").read_text()
    assert run("--chart", str(chart_copy)).returncode == 1
    assert (chart_copy / "README.md").read_text() == readme

"""Our vLLM chart renders for every catalog entry, passes strict schema validation, and the
API server of the local control plane accepts every release in a server-side dry run."""

from __future__ import annotations

import subprocess

import kubernetes_validate
import pytest
import yaml

from llm_on_eks.catalog import default_catalog
from llm_on_eks.kube.helm_values import CHART_DIR, helm_values
from llm_on_eks.plan import build_plan
from tests.integration.sandbox_cluster import SCRIPT

KUBERNETES_VERSION = "1.34.0"  # the sandbox's minor version (scripts/sandbox/versions.env)
ENTRIES = [(m.id, a) for m in default_catalog().models.values() for a in m.profiles]
BASE = {"cluster_name": "c1", "region": "us-west-2"}


@pytest.fixture(scope="module")
def helm() -> str:
    return subprocess.run([str(SCRIPT), "bin", "helm"], check=True, capture_output=True, text=True).stdout.strip()


def values_for(model_id: str, accelerator: str, **changes) -> dict:
    values = helm_values(build_plan({**BASE, "model": model_id, "accelerator": accelerator}))
    values.update(changes)
    return values


def render(helm: str, values: dict, tmp_path, *extra: str) -> subprocess.CompletedProcess:
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump(values))
    return subprocess.run([helm, "template", values["deploymentName"], str(CHART_DIR), "--namespace", "llm-serving",
                           "--values", str(path), *extra], capture_output=True, text=True, timeout=60)


def rendered_objects(helm: str, values: dict, tmp_path) -> list[dict]:
    result = render(helm, values, tmp_path)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@pytest.mark.parametrize(("model", "accelerator"), ENTRIES)
@pytest.mark.parametrize("nodes", [1, 2])
def test_renders_and_passes_strict_validation(helm, tmp_path, model, accelerator, nodes):
    objects = rendered_objects(helm, values_for(model, accelerator, nodes=nodes), tmp_path)
    kinds = {o["kind"] for o in objects}
    assert kinds == {"Service", "Deployment" if nodes == 1 else "LeaderWorkerSet"}
    for obj in objects:
        if obj["kind"] != "LeaderWorkerSet":  # a CRD: validated by the API server below
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
    server = next(o for o in objects if o["kind"] != "Service")
    pod = server["spec"]["template"]["spec"] if nodes == 1 else server["spec"]["leaderWorkerTemplate"]["leaderTemplate"]["spec"]
    container = pod["containers"][0]
    plan_args = values_for(model, accelerator)["vllm"]["args"]
    assert f"--max-model-len={plan_args['max-model-len']}" in container["args"]
    assert f"--tensor-parallel-size={plan_args['tensor-parallel-size']}" in container["args"]
    assert container["startupProbe"]["httpGet"]["path"] == "/health"
    env = {e["name"]: e for e in container["env"]}
    assert env["HF_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "hf-token", "key": "token"}
    assert ("NEURON_COMPILED_ARTIFACTS" in env) == (accelerator == "neuron")
    assert server["metadata"]["labels"]["llm-on-eks.io/managed-by"] == "llm-on-eks"
    assert server["metadata"]["annotations"]["llm-on-eks.io/idle-ttl-minutes"] == "60"


def test_startup_budget_covers_maverick_two_hours(helm, tmp_path):
    objects = rendered_objects(helm, values_for("llama4-maverick", "gpu"), tmp_path)
    probe = next(o for o in objects if o["kind"] == "Deployment")["spec"]["template"]["spec"]["containers"][0]["startupProbe"]
    assert probe["periodSeconds"] * probe["failureThreshold"] >= 7200


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"neuron": {"compiledArtifacts": ""}}, "neuron.compiledArtifacts is required"),
        ({"model": {"name": "m", "source": "s3://bucket/model"}}, "/model/source"),
        ({"image": {"repository": "vllm/vllm-openai", "tag": "latest"}}, "/image/tag"),
        ({"hfTokenValue": "hf_secret"}, "hfTokenValue"),
    ],
)
def test_invariants_fail_the_render(helm, tmp_path, changes, message):
    result = render(helm, values_for("llama4-scout", "neuron", **changes), tmp_path)
    assert result.returncode != 0 and message in result.stderr


@pytest.mark.parametrize(("model", "accelerator"), ENTRIES)
@pytest.mark.parametrize("nodes", [1, 2])
def test_api_server_accepts_the_release(sandbox_cluster, tmp_path, model, accelerator, nodes):
    values = values_for(model, accelerator, nodes=nodes)
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump(values))
    result = sandbox_cluster.helm_run("install", values["deploymentName"], str(CHART_DIR), "--namespace", "default",
                                      "--values", str(path), "--dry-run=server", check=False)
    assert result.returncode == 0, result.stderr

"""Our vLLM chart renders for every catalog entry, passes strict schema validation, and the
API server of the local control plane accepts every release in a server-side dry run. Names and
selectors agree with what the pipeline looks up (kube/readiness.py), and the readiness probe and
resources come from values. Every test here runs the helm CLI (scripts/sandbox-cluster builds it)."""

from __future__ import annotations

import subprocess
from types import SimpleNamespace

import kubernetes_validate
import pytest
import yaml

from llm_on_eks.catalog import default_catalog
from llm_on_eks.kube import readiness
from llm_on_eks.kube.helm_values import CHART_DIR, helm_command, helm_values
from llm_on_eks.plan import build_plan
from tests.integration.sandbox_cluster import SCRIPT

pytestmark = pytest.mark.integration

KUBERNETES_VERSION = "1.34.0"  # the sandbox's minor version (scripts/sandbox/versions.env)
ENTRIES = [(m.id, a) for m in default_catalog().models.values() for a in m.profiles]
BASE = {"cluster_name": "c1", "region": "us-west-2"}
CHART_DEFAULTS = yaml.safe_load((CHART_DIR / "values.yaml").read_text())


@pytest.fixture(scope="module")
def helm() -> str:
    return subprocess.run([str(SCRIPT), "bin", "helm"], check=True, capture_output=True, text=True).stdout.strip()


def values_for(model_id: str, accelerator: str, **changes) -> dict:
    values = helm_values(build_plan({**BASE, "model": model_id, "accelerator": accelerator})["release"])
    values.update(changes)
    return values


def render(helm: str, values: dict, tmp_path, *extra: str, release: str | None = None) -> subprocess.CompletedProcess:
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump(values))
    return subprocess.run([helm, "template", release or values["deploymentName"], str(CHART_DIR), "--namespace",
                           "llm-serving", "--values", str(path), *extra], capture_output=True, text=True, timeout=60)


def rendered_objects(helm: str, values: dict, tmp_path) -> list[dict]:
    result = render(helm, values, tmp_path)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def pod_templates(server: dict) -> dict[str, dict]:
    """The server's pod templates by role: "pod" for a Deployment, "leader"/"worker" for an LWS."""
    if server["kind"] == "Deployment":
        return {"pod": server["spec"]["template"]}
    lws = server["spec"]["leaderWorkerTemplate"]
    return {"leader": lws["leaderTemplate"], "worker": lws["workerTemplate"]}


def readiness_selector(release: str) -> dict[str, str]:
    """The label selector kube/readiness.py lists a release's serving pods with, as a dict."""
    selectors = []

    class Core:
        def list_namespaced_pod(self, namespace, label_selector):
            selectors.append(label_selector)
            return SimpleNamespace(items=[])

    readiness.describe_pods(Core(), "llm-serving", release)
    (selector,) = selectors
    return dict(term.split("=", 1) for term in selector.split(","))


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
    neuron = build_plan({**BASE, "model": model, "accelerator": accelerator})["neuron"]
    framework = neuron["framework"] if neuron else None
    # NxD Inference loads traced artifacts; optimum-neuron reads its S3 compile cache.
    assert ("NEURON_COMPILED_ARTIFACTS" in env) == (framework == "nxdi")
    assert ("NEURON_COMPILE_CACHE_URL" in env) == (framework == "optimum")
    assert server["metadata"]["labels"]["llm-on-eks.io/managed-by"] == "llm-on-eks"
    assert server["metadata"]["annotations"]["llm-on-eks.io/idle-ttl-minutes"] == "60"
    # Weights from S3 go to vLLM's streamer; no volume is mounted for them.
    source = values_for(model, accelerator)["model"]["source"]
    if source.startswith("s3://"):
        assert {f"--model={source}", "--load-format=runai_streamer"} <= set(container["args"])
        assert [m["name"] for m in container["volumeMounts"]] == ["shm"]


def test_startup_budget_covers_maverick_two_hours(helm, tmp_path):
    objects = rendered_objects(helm, values_for("llama4-maverick", "gpu"), tmp_path)
    probe = next(o for o in objects if o["kind"] == "Deployment")["spec"]["template"]["spec"]["containers"][0]["startupProbe"]
    assert probe["periodSeconds"] * probe["failureThreshold"] >= 7200


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        # Each Neuron framework keeps its compiled model its own way (issue 15: optimum has no artifacts).
        ({"neuron": {"framework": "nxdi", "compiledArtifacts": ""}}, "neuron.compiledArtifacts is required"),
        ({"neuron": {"framework": "optimum", "compileCacheUrl": ""}}, "neuron.compileCacheUrl is required"),
        ({"neuron": {"compiledArtifacts": "s3://bucket/x/"}}, "neuron.framework (optimum or nxdi) is required"),
        ({"neuron": {"framework": "optimum", "compileCacheUrl": "s3://b/c/", "compiledArtifacts": "s3://b/a/"}},
         "neuron.compiledArtifacts is NxD Inference's"),
        ({"model": {"name": "m", "source": "s3://bucket/model"}}, "/model/source"),
        ({"model": {"name": "m", "source": "s3://bucket/model/"}}, "set vllm.args.load-format to runai_streamer"),
        ({"image": {"repository": "vllm/vllm-openai", "tag": "latest"}}, "/image/tag"),
        ({"hfTokenValue": "hf_secret"}, "hfTokenValue"),
        ({"schedulerName": "my-scheduler"}, "schedulerName"),
        ({"resources": {"requests": {}, "limits": {"cpu": "4"}}}, "resources.limits must request the accelerator"),
        ({"resources": {"requests": {"aws.amazon.com/neuron": "8"}, "limits": {"aws.amazon.com/neuron": "16"}}},
         "must equal resources.limits"),
        ({"labels": {"app.kubernetes.io/instance": "other"}}, "labels must not set app.kubernetes.io/instance"),
        ({"readinessProbe": {"httpGet": {"path": "health", "port": "http"}}}, "/readinessProbe/httpGet/path"),
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


@pytest.mark.parametrize("nodes", [1, 2])
def test_names_and_selectors_agree_with_what_the_pipeline_looks_up(helm, tmp_path, nodes):
    """Every object is named after the release, which is the plan's deployment name; the
    Deployment's selector, the Service's selector and readiness.py's pod selector match the
    pods' labels; a multi-node Service selects only the leaders, which serve the API."""
    plan = build_plan({**BASE, "model": "llama4-scout", "accelerator": "gpu"})
    plan["release"]["nodes"] = nodes
    values = helm_values(plan["release"])
    release = helm_command(plan["release"])[3]  # helm upgrade --install <release> ...
    assert release == values["deploymentName"]
    objects = rendered_objects(helm, values, tmp_path)
    assert [o["metadata"]["name"] for o in objects] == [release, release]
    selector = readiness_selector(release)
    assert selector == {"app.kubernetes.io/name": "vllm-serving", "app.kubernetes.io/instance": release}
    for obj in objects:
        assert selector.items() <= obj["metadata"]["labels"].items()
        assert obj["metadata"]["annotations"]["llm-on-eks.io/deployment"] == release
    service = next(o for o in objects if o["kind"] == "Service")
    server = next(o for o in objects if o["kind"] != "Service")
    templates = pod_templates(server)
    for template in templates.values():
        assert selector.items() <= template["metadata"]["labels"].items()
    if nodes == 1:
        assert server["spec"]["selector"]["matchLabels"] == selector
        assert service["spec"]["selector"] == selector
    else:
        assert service["spec"]["selector"] == {**selector, "role": "leader"}
        assert service["spec"]["selector"].items() <= templates["leader"]["metadata"]["labels"].items()
        assert not service["spec"]["selector"].items() <= templates["worker"]["metadata"]["labels"].items()
        assert templates["worker"]["metadata"]["labels"]["role"] == "worker"


def test_a_release_named_otherwise_than_deployment_name_fails(helm, tmp_path):
    result = render(helm, values_for("llama4-scout", "gpu"), tmp_path, release="another-name")
    assert result.returncode != 0
    assert 'deploymentName "llama4-scout-gpu" must equal the Helm release name "another-name"' in result.stderr


@pytest.mark.parametrize("nodes", [1, 2])
def test_readiness_probe_comes_from_values(helm, tmp_path, nodes):
    """The chart's default probes vLLM's GET /health; values replace it field by field; the
    startup probe still comes from startup.*; LeaderWorkerSet workers serve no API and have no probe."""
    def probes(values):
        templates = pod_templates(next(o for o in rendered_objects(helm, values, tmp_path) if o["kind"] != "Service"))
        server = templates.get("pod") or templates["leader"]
        if "worker" in templates:
            assert "readinessProbe" not in templates["worker"]["spec"]["containers"][0]
        container = server["spec"]["containers"][0]
        return container["readinessProbe"], container["startupProbe"]

    default = CHART_DEFAULTS["readinessProbe"]
    assert default["httpGet"] == {"path": "/health", "port": "http"}
    values = values_for("llama4-scout", "gpu", nodes=nodes)
    readiness_probe, startup_probe = probes(values)
    assert readiness_probe == default
    assert startup_probe["periodSeconds"] == values["startup"]["periodSeconds"]
    assert startup_probe["periodSeconds"] * startup_probe["failureThreshold"] >= values["startup"]["budgetSeconds"]

    custom = {"httpGet": {"path": "/health", "port": 8000}, "initialDelaySeconds": 5, "periodSeconds": 7,
              "timeoutSeconds": 3, "successThreshold": 2, "failureThreshold": 9}
    assert probes(values_for("llama4-scout", "gpu", nodes=nodes, readinessProbe=custom))[0] == custom
    assert probes(values_for("llama4-scout", "gpu", nodes=nodes, readinessProbe={"periodSeconds": 5}))[0] == {
        **default, "periodSeconds": 5}


@pytest.mark.parametrize(("model", "accelerator"), ENTRIES)
@pytest.mark.parametrize("nodes", [1, 2])
def test_resources_come_from_values(helm, tmp_path, model, accelerator, nodes):
    """Every pod requests the plan's accelerators per node, requests equal to limits, as the
    chart rendered them before resources became a value; other resources render as given."""
    plan = build_plan({**BASE, "model": model, "accelerator": accelerator})
    resource = {"gpu": "nvidia.com/gpu", "neuron": "aws.amazon.com/neuron"}[plan["profile"]["accelerator"]]
    count = str(plan["profile"]["accelerators_per_node"])
    values = values_for(model, accelerator, nodes=nodes)
    expected = values["resources"]
    # Host memory is requested too on Neuron profiles (the optimum-neuron blueprint's 384Gi/1Ti).
    assert expected["requests"][resource] == expected["limits"][resource] == count
    server = next(o for o in rendered_objects(helm, values, tmp_path) if o["kind"] != "Service")
    for template in pod_templates(server).values():
        assert template["spec"]["containers"][0]["resources"] == expected

    given = {"requests": {resource: count, "cpu": "32", "memory": "256Gi"}, "limits": {resource: count, "memory": "512Gi"}}
    server = next(o for o in rendered_objects(helm, values_for(model, accelerator, nodes=nodes, resources=given), tmp_path)
                  if o["kind"] != "Service")
    for template in pod_templates(server).values():
        assert template["spec"]["containers"][0]["resources"] == given

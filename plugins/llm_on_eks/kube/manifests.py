"""Kubernetes objects a deployment creates outside its Helm release, built from the plan.

The same builders feed the dry run and the real steps. The HF token never appears here: the
Secret is shown with its value redacted, and pods read it through ``secretKeyRef``.
"""

from __future__ import annotations

import hashlib
import shlex
from typing import Any

from llm_on_eks.kube.helm_values import resources, server_args
from llm_on_eks.naming import COMPLETION_MARKER_ANNOTATION, MANAGED_BY_KEY, PROJECT, fsx_pv_name
from llm_on_eks.plan import Plan

REDACTED = "<redacted>"
SHM_SIZE = "64Gi"
COMPILE_DIR = "/compiled"
COMPILE_PORT = 8000
# The serving container's command (include/charts/vllm-serving/templates/_helpers.tpl, podSpec).
SERVER_COMMAND = ["python3", "-m", "vllm.entrypoints.openai.api_server"]


def _meta(plan: Plan, name: str, component: str) -> dict[str, Any]:
    """Labels naming the deployment, but not the chart's app name: the release's Service and
    readiness select ``app.kubernetes.io/name=vllm-serving``, and must never pick up a Job pod
    (a Neuron compile pod even listens on the serving port)."""
    kube = plan["kubernetes"]
    return {
        "name": name,
        "namespace": kube["namespace"],
        "labels": {**kube["labels"], "app.kubernetes.io/name": f"llm-on-eks-{component}",
                   "app.kubernetes.io/instance": kube["release"], "app.kubernetes.io/component": component},
    }


def hf_token_env(plan: Plan) -> list[dict[str, Any]]:
    """Both names the HF libraries read, from the one documented secret key."""
    ref = {"secretKeyRef": {"name": plan["hf_token"]["k8s_secret"]["name"], "key": plan["hf_token"]["k8s_secret"]["key"]}}
    return [{"name": "HF_TOKEN", "valueFrom": ref}, {"name": "HUGGING_FACE_HUB_TOKEN", "valueFrom": ref}]


def hf_token_secret(plan: Plan, token: str = REDACTED) -> dict[str, Any]:
    """The token secret; ``stringData`` so the API server encodes it once (ai-on-eks's Trainium2 guide encodes it twice)."""
    secret = plan["hf_token"]["k8s_secret"]
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": _meta(plan, secret["name"], "hf-token"), "stringData": {secret["key"]: token}}


def _accelerator_pod_spec(plan: Plan, container: dict[str, Any], volumes: list[dict[str, Any]]) -> dict[str, Any]:
    kube, profile = plan["kubernetes"], plan["profile"]
    count = str(profile["accelerators_per_node"])
    container["resources"] = {"requests": {kube["accelerator_resource"]: count},
                              "limits": {kube["accelerator_resource"]: count}}
    return {
        "restartPolicy": "Never",
        "nodeSelector": dict(kube["node_selector"]),
        "tolerations": [dict(t) for t in kube["tolerations"]],
        "containers": [container],
        "volumes": volumes,
    }


def _job(plan: Plan, name: str, component: str, pod_spec: dict[str, Any], deadline_s: int,
         marker: str) -> dict[str, Any]:
    """``marker`` is the S3 object the Job writes last; it is also on the Job, for whoever looks
    (and for the local stack's stand-in, which writes it where kwok runs no containers)."""
    meta = _meta(plan, name, component)
    meta["annotations"] = {COMPLETION_MARKER_ANNOTATION: marker}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": meta,
        "spec": {
            "backoffLimit": 1,
            "activeDeadlineSeconds": deadline_s,
            "ttlSecondsAfterFinished": 86400,
            "template": {"metadata": {"labels": meta["labels"]}, "spec": pod_spec},
        },
    }


def server_command(plan: Plan) -> list[str]:
    """The vLLM server's command line for a hub model source, as the chart renders it: --model and
    --revision, --port, then the server flags by name (Helm ranges over a map in key order; true
    renders a bare flag, false none)."""
    model = plan["model"]
    flags = [f"--{k}" if v is True else f"--{k}={v}" for k, v in sorted(server_args(plan).items()) if v is not False]
    return [*SERVER_COMMAND, f"--model={model['hf_repo']}", f"--revision={model['revision']}",
            f"--port={COMPILE_PORT}", *flags]


def neuron_compile_job(plan: Plan) -> dict[str, Any]:
    """Compile for Neuron on the trn2 node group into the content-addressed S3 prefix, by starting
    the server with exactly the serving pods' flags and stopping it once it answers /health: a
    compile with any other flag would not be the one the server looks up.

    - optimum: optimum-neuron compiles inside `vllm serve` (`optimum-cli export neuron` does not
      export Llama 4: the ai-on-eks guide "Llama 4 Inference with vLLM on AWS Trainium") and writes
      its NEFFs to the Neuron compile cache, here the S3 prefix (NEURON_COMPILE_CACHE_URL, the
      guide's recommended S3-backed cache); the serving pods read the same cache.
    - nxdi: NxD Inference traces into an empty NEURON_COMPILED_ARTIFACTS (Neuron vLLM user guide),
      a local directory synced to the prefix afterwards; the serving pods load it from there.

    The marker is written last, after the artifacts: its presence means they are whole.
    """
    neuron, profile = plan["neuron"], plan["profile"]
    marker = f"s3://{plan['storage']['artifact_bucket']}/{neuron['marker_key']}"
    health = f"urllib.request.urlopen('http://localhost:{COMPILE_PORT}/health', timeout=10)"
    lines = [
        "set -euo pipefail",
        f"{shlex.join(server_command(plan))} &",
        "server=$!",
        f'until python3 -c "import urllib.request; {health}" 2>/dev/null; do kill -0 $server || exit 1; sleep 30; done',
        "kill $server; wait $server || true",
    ]
    traced_locally = neuron["cache_env"] == "NEURON_COMPILED_ARTIFACTS"
    if traced_locally:
        lines.append(f"aws s3 sync {COMPILE_DIR} {shlex.quote(neuron['artifacts_uri'])}")
    lines.append(f"echo '{{\"hash\": \"{neuron['hash']}\"}}' | aws s3 cp - {shlex.quote(marker)}")
    cache = {"name": neuron["cache_env"], "value": COMPILE_DIR if traced_locally else neuron["artifacts_uri"]}
    env = [*hf_token_env(plan), cache, {"name": "AWS_DEFAULT_REGION", "value": plan["aws"]["region"]},
           *({"name": k, "value": v} for k, v in profile["env"].items())]
    mounts = [{"name": "shm", "mountPath": "/dev/shm"}]
    volumes = [{"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": SHM_SIZE}}]
    if traced_locally:
        mounts.insert(0, {"name": "compiled", "mountPath": COMPILE_DIR})
        volumes.insert(0, {"name": "compiled", "emptyDir": {}})
    container = {"name": "compile", "image": profile["image"], "command": ["bash", "-c", "\n".join(lines)], "env": env,
                 "volumeMounts": mounts}
    name = f"{plan['deployment']}-compile-{neuron['hash'][:8]}"
    pod_spec = _accelerator_pod_spec(plan, container, volumes)
    # Compiling and sharding hold the whole model in host memory, and the host OOM killer ends a
    # compile silently (aws-neuron-sdk#1222): the pod reserves the profile's host memory, as the
    # serving pod does (kube.helm_values.resources).
    container["resources"] = resources(plan)
    return _job(plan, name, "neuron-compile", pod_spec, neuron["budget_s"], marker)


def fsx_volume(plan: Plan, fsx: dict[str, Any]) -> list[dict[str, Any]]:
    """Static PV + PVC for the FSx file system (FSx CSI driver), pre-bound to each other.

    Shared by every deployment in the namespace that reads from this file system, so they carry
    the managed-by label but no deployment label: removing one deployment must not take them.
    """
    spec, namespace = plan["storage"]["fsx"], plan["kubernetes"]["namespace"]
    pv_name = fsx_pv_name(spec["pvc_name"], namespace)
    capacity = f"{spec['storage_capacity_gib']}Gi"
    labels = {MANAGED_BY_KEY: PROJECT, "app.kubernetes.io/component": "model-weights"}
    pv = {
        "apiVersion": "v1", "kind": "PersistentVolume",
        "metadata": {"name": pv_name, "labels": labels},
        "spec": {
            "capacity": {"storage": capacity}, "volumeMode": "Filesystem", "accessModes": ["ReadWriteMany"],
            "persistentVolumeReclaimPolicy": "Retain", "storageClassName": "",
            "mountOptions": ["flock"],
            "claimRef": {"namespace": namespace, "name": spec["pvc_name"]},
            "csi": {"driver": "fsx.csi.aws.com", "volumeHandle": fsx["file_system_id"],
                    "volumeAttributes": {"dnsname": fsx["dns_name"], "mountname": fsx["mount_name"]}},
        },
    }
    pvc = {
        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": spec["pvc_name"], "namespace": namespace, "labels": labels},
        "spec": {"accessModes": ["ReadWriteMany"], "storageClassName": "", "volumeName": pv_name,
                 "resources": {"requests": {"storage": capacity}}},
    }
    return [pv, pvc]


def stage_weights_job(plan: Plan) -> dict[str, Any]:
    """Download the repo at its revision onto FSx, then write the marker listing files and sizes."""
    spec, model = plan["storage"]["fsx"], plan["model"]
    target = spec["model_path"]
    # The FSx path /models is linked to s3://<bucket>/models/, so the marker's S3 key is its path.
    marker = f"{spec['mount_path']}/{spec['marker_key']}"
    script = "\n".join([
        "set -euo pipefail",
        f"hf download {shlex.quote(model['hf_repo'])} --revision {shlex.quote(model['revision'])} --local-dir {shlex.quote(target)}",
        "python3 - <<'PY'",
        "import json, os, sys",
        f"root, marker = {target!r}, {marker!r}",
        "files = {os.path.relpath(os.path.join(d, f), root): os.path.getsize(os.path.join(d, f))",
        "         for d, _, names in os.walk(root) for f in names if not f.startswith('.')}",
        "json.dump({'files': files, 'bytes': sum(files.values())}, open(marker + '.tmp', 'w'))",
        "os.replace(marker + '.tmp', marker)",
        "PY",
    ])
    container = {
        "name": "stage", "image": plan["profile"]["image"], "command": ["bash", "-c", script],
        "env": [*hf_token_env(plan), {"name": "HF_HUB_ENABLE_HF_TRANSFER", "value": "1"}],
        "resources": {"requests": {"cpu": "4", "memory": "16Gi"}},
        "volumeMounts": [{"name": "fsx", "mountPath": spec["mount_path"]}],
    }
    pod_spec = {
        "restartPolicy": "Never",
        "containers": [container],
        "volumes": [{"name": "fsx", "persistentVolumeClaim": {"claimName": spec["pvc_name"]}}],
    }
    digest = hashlib.sha256(f"{model['hf_repo']}@{model['revision']}".encode()).hexdigest()[:8]
    return _job(plan, f"{plan['deployment']}-stage-{digest}", "stage-weights", pod_spec, spec["budget_s"],
                f"s3://{plan['storage']['artifact_bucket']}/{spec['marker_key']}")

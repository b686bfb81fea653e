"""Kubernetes objects a deployment creates outside its Helm release, built from the plan's sections.

The same builders feed the dry run and the real steps. The HF token never appears here: the
Secret is shown with its value redacted, and pods read it through ``secretKeyRef``.
"""

from __future__ import annotations

import hashlib
import shlex
from typing import Any

from llm_on_eks.naming import COMPLETION_MARKER_ANNOTATION, MANAGED_BY_KEY, PROJECT, fsx_pv_name, k8s_labels
from llm_on_eks.plan.types import (
    FsxSection,
    ModelSection,
    NeuronSection,
    ReleaseSpec,
    S3StreamSection,
    SecretRef,
    Target,
)

REDACTED = "<redacted>"
SHM_SIZE = "64Gi"
COMPILE_DIR = "/compiled"
COMPILE_PORT = 8000
# The serving container's command (include/charts/vllm-serving/templates/_helpers.tpl, podSpec).
SERVER_COMMAND = ["python3", "-m", "vllm.entrypoints.openai.api_server"]


def _meta(namespace: str, deployment: str, name: str, component: str) -> dict[str, Any]:
    """Labels naming the deployment (its release is named after it), but not the chart's app
    name: the release's Service and readiness select ``app.kubernetes.io/name=vllm-serving``, and
    must never pick up a Job pod (a Neuron compile pod even listens on the serving port)."""
    return {
        "name": name,
        "namespace": namespace,
        "labels": {**k8s_labels(deployment), "app.kubernetes.io/name": f"llm-on-eks-{component}",
                   "app.kubernetes.io/instance": deployment, "app.kubernetes.io/component": component},
    }


def hf_token_env(secret: SecretRef) -> list[dict[str, Any]]:
    """Both names the HF libraries read, from the one documented secret key."""
    ref = {"secretKeyRef": {"name": secret["name"], "key": secret["key"]}}
    return [{"name": "HF_TOKEN", "valueFrom": ref}, {"name": "HUGGING_FACE_HUB_TOKEN", "valueFrom": ref}]


def hf_token_secret(target: Target, secret: SecretRef, token: str = REDACTED) -> dict[str, Any]:
    """The token secret in the deployment's namespace; ``stringData`` so the API server encodes it
    once (ai-on-eks's Trainium2 guide encodes it twice)."""
    meta = _meta(target["access"]["namespace"], target["deployment"], secret["name"], "hf-token")
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque", "metadata": meta,
            "stringData": {secret["key"]: token}}


def _job(release: ReleaseSpec, name: str, component: str, pod_spec: dict[str, Any], deadline_s: int,
         marker: str) -> dict[str, Any]:
    """``marker`` is the S3 object the Job writes last; it is also on the Job, for whoever looks
    (and for the local stack's stand-in, which writes it where kwok runs no containers)."""
    meta = _meta(release["namespace"], release["deployment"], name, component)
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


def server_command(release: ReleaseSpec, model: ModelSection) -> list[str]:
    """The vLLM server's command line for a hub model source, as the chart renders it: --model and
    --revision, --port, then the server flags by name (Helm ranges over a map in key order; true
    renders a bare flag, false none)."""
    args = sorted(release["server_args"].items())
    flags = [f"--{k}" if v is True else f"--{k}={v}" for k, v in args if v is not False]
    return [*SERVER_COMMAND, f"--model={model['hf_repo']}", f"--revision={model['revision']}",
            f"--port={COMPILE_PORT}", *flags]


def neuron_compile_job(release: ReleaseSpec, model: ModelSection, neuron: NeuronSection,
                       bucket: str) -> dict[str, Any]:
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
    marker = f"s3://{bucket}/{neuron['marker_key']}"
    health = f"urllib.request.urlopen('http://localhost:{COMPILE_PORT}/health', timeout=10)"
    lines = [
        "set -euo pipefail",
        f"{shlex.join(server_command(release, model))} &",
        "server=$!",
        f'until python3 -c "import urllib.request; {health}" 2>/dev/null; do kill -0 $server || exit 1; sleep 30; done',
        "kill $server; wait $server || true",
    ]
    traced_locally = neuron["cache_env"] == "NEURON_COMPILED_ARTIFACTS"
    if traced_locally:
        lines.append(f"aws s3 sync {COMPILE_DIR} {shlex.quote(neuron['artifacts_uri'])}")
    lines.append(f"echo '{{\"hash\": \"{neuron['hash']}\"}}' | aws s3 cp - {shlex.quote(marker)}")
    cache = {"name": neuron["cache_env"], "value": COMPILE_DIR if traced_locally else neuron["artifacts_uri"]}
    # The release's environment: the profile's, and the region the S3 cache is read in.
    env = [*hf_token_env(release["hf_token_secret"]), cache,
           *({"name": k, "value": v} for k, v in release["env"].items())]
    mounts = [{"name": "shm", "mountPath": "/dev/shm"}]
    volumes = [{"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": SHM_SIZE}}]
    if traced_locally:
        mounts.insert(0, {"name": "compiled", "mountPath": COMPILE_DIR})
        volumes.insert(0, {"name": "compiled", "emptyDir": {}})
    # Compiling and sharding hold the whole model in host memory, and the host OOM killer ends a
    # compile silently (aws-neuron-sdk#1222): the pod reserves the serving pod's accelerators and
    # host memory (the release's resources).
    container = {"name": "compile", "image": release["image"], "command": ["bash", "-c", "\n".join(lines)],
                 "env": env, "volumeMounts": mounts,
                 "resources": release["resources"]}
    pod_spec = {"restartPolicy": "Never", "nodeSelector": release["node_selector"],
                "tolerations": release["tolerations"], "containers": [container], "volumes": volumes}
    name = f"{release['deployment']}-compile-{neuron['hash'][:8]}"
    return _job(release, name, "neuron-compile", pod_spec, neuron["budget_s"], marker)


# Copies the repo's top-level files from the hub into S3 one at a time, so a node's disk needs room
# for one shard only (a system node has 50 GiB; Scout's checkpoint is 203 GiB). vLLM lists the S3
# prefix without recursion (its runai_utils.list_safetensors), so subfolders, such as a Meta-format
# original/ copy as large as the checkpoint, are left out. A file already in S3 at its size is
# kept: a retried Job carries on where the last one stopped. The marker is written last.
S3_STAGING_SCRIPT = """\
import json, os, sys, tempfile
import boto3
from huggingface_hub import HfApi, hf_hub_download
repo, revision, bucket, prefix, marker = sys.argv[1:6]
s3, files = boto3.client("s3"), {}
info = HfApi().model_info(repo, revision=revision, files_metadata=True)
for sibling in info.siblings:
    name, size = sibling.rfilename, sibling.size
    if "/" in name or name.startswith("."):
        continue
    key, files[name] = f"{prefix}{name}", size
    try:
        if s3.head_object(Bucket=bucket, Key=key)["ContentLength"] == size:
            print(f"{name}: in s3://{bucket}/{key}", flush=True)
            continue
    except s3.exceptions.ClientError:
        pass
    with tempfile.TemporaryDirectory(dir="/scratch") as scratch:
        path = hf_hub_download(repo, name, revision=info.sha, local_dir=scratch)
        s3.upload_file(path, bucket, key)
    print(f"{name}: {size} bytes to s3://{bucket}/{key}", flush=True)
body = json.dumps({"files": files, "bytes": sum(files.values()), "commit": info.sha})
s3.put_object(Bucket=bucket, Key=marker, Body=body.encode())
"""


def stage_weights_to_s3_job(release: ReleaseSpec, model: ModelSection, spec: S3StreamSection) -> dict[str, Any]:
    """Copy the repo at its revision into the S3 prefix the serving pods stream from, on the
    system nodes (no accelerator needed: neither the release's node selector nor its tolerations),
    with the nodes' IAM role; then write the marker listing files and sizes."""
    bucket, _, prefix = spec["uri"].removeprefix("s3://").partition("/")
    args = [model["hf_repo"], model["revision"], bucket, prefix, spec["marker_key"]]
    container = {
        "name": "stage", "image": release["image"], "command": ["python3", "-c", S3_STAGING_SCRIPT, *args],
        # Xet's parallel download (huggingface_hub replaced hf_transfer with it) and the bucket's region.
        "env": [*hf_token_env(release["hf_token_secret"]), {"name": "HF_XET_HIGH_PERFORMANCE", "value": "1"},
                *({"name": k, "value": v} for k, v in release["env"].items() if k.startswith("AWS_"))],
        "resources": {"requests": {"cpu": "2", "memory": "8Gi", "ephemeral-storage": "20Gi"}},
        "volumeMounts": [{"name": "scratch", "mountPath": "/scratch"}],
    }
    pod_spec = {"restartPolicy": "Never", "containers": [container],
                "volumes": [{"name": "scratch", "emptyDir": {"sizeLimit": "40Gi"}}]}
    digest = hashlib.sha256(f"{model['hf_repo']}@{model['revision']}".encode()).hexdigest()[:8]
    return _job(release, f"{release['deployment']}-stage-s3-{digest}", "stage-weights", pod_spec, spec["budget_s"],
                f"s3://{bucket}/{spec['marker_key']}")


def fsx_volume(spec: FsxSection, namespace: str, fsx: dict[str, Any]) -> list[dict[str, Any]]:
    """Static PV + PVC for the FSx file system (FSx CSI driver), pre-bound to each other.

    Shared by every deployment in the namespace that reads from this file system, so they carry
    the managed-by label but no deployment label: removing one deployment must not take them.
    """
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


def stage_weights_job(release: ReleaseSpec, model: ModelSection, spec: FsxSection, bucket: str) -> dict[str, Any]:
    """Download the repo at its revision onto FSx, then write the marker listing files and sizes."""
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
        "name": "stage", "image": release["image"], "command": ["bash", "-c", script],
        "env": [*hf_token_env(release["hf_token_secret"]), {"name": "HF_HUB_ENABLE_HF_TRANSFER", "value": "1"}],
        "resources": {"requests": {"cpu": "4", "memory": "16Gi"}},
        "volumeMounts": [{"name": "fsx", "mountPath": spec["mount_path"]}],
    }
    pod_spec = {
        "restartPolicy": "Never",
        "containers": [container],
        "volumes": [{"name": "fsx", "persistentVolumeClaim": {"claimName": spec["pvc_name"]}}],
    }
    digest = hashlib.sha256(f"{model['hf_repo']}@{model['revision']}".encode()).hexdigest()[:8]
    return _job(release, f"{release['deployment']}-stage-{digest}", "stage-weights", pod_spec, spec["budget_s"],
                f"s3://{bucket}/{spec['marker_key']}")

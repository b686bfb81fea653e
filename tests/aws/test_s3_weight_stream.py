"""Weights streamed from S3, for real: the staging Job's own script copies a checkpoint from the
hub into the local AWS's S3 (the hub is local_stack.hub, a stand-in: nothing here reaches the
hub), and vLLM's CPU build serves it with the release's own flags through the Run:ai model
streamer (runai-model-streamer and its S3 package from PyPI).

kwok runs no containers, so the Job's command runs here, under .venv-vllm's Python, which has
the image's huggingface_hub and boto3 (the vllm-openai image installs runai-model-streamer[s3]).
"""

from __future__ import annotations

import json
import subprocess
import urllib.request

from llm_on_eks.kube.manifests import stage_weights_to_s3_job
from llm_on_eks.plan import build_plan
from local_stack import hub
from local_stack.vllm import MODELS, VLLM_PYTHON, ensure_tiny_models, s3_streamer_env, start_server
from tests.aws.conftest import client

REGION = "us-east-1"


def run_job_command(job: dict, hub_url: str, aws_url: str, tmp_path) -> subprocess.CompletedProcess:
    """The Job's container command and variables, with the stand-ins' endpoints and test keys."""
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["command"][0] == "python3"
    env = {e["name"]: e.get("value", "hf_test_token") for e in container["env"]}  # the token: a secretKeyRef
    env |= {"HF_ENDPOINT": hub_url, "HF_HOME": str(tmp_path / "hf"), "AWS_ENDPOINT_URL": aws_url,
            "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "PATH": "/usr/bin:/bin"}
    (tmp_path / "scratch").mkdir(exist_ok=True)
    script = container["command"][2].replace('dir="/scratch"', f'dir="{tmp_path / "scratch"}"')
    return subprocess.run([str(VLLM_PYTHON), "-c", script, *container["command"][3:]], env=env,
                          capture_output=True, text=True, timeout=300)


def test_staged_weights_are_streamed_from_s3_by_the_served_model(moto_url, tmp_path):
    ensure_tiny_models()
    plan = build_plan({"model": "llama-3-8b", "cluster_name": "c1", "region": REGION})
    spec, release = plan["storage"]["s3_stream"], plan["release"]
    bucket, _, prefix = spec["uri"].removeprefix("s3://").partition("/")
    s3 = client(moto_url, "s3", REGION)
    s3.create_bucket(Bucket=bucket)
    checkpoint = MODELS / "tiny-llama"  # served as the catalog's repo: its files, not its size
    server, hub_url = hub.serve({plan["model"]["hf_repo"]: checkpoint})
    try:
        job = stage_weights_to_s3_job(release, plan["model"], spec)
        first = run_job_command(job, hub_url, moto_url, tmp_path)
        assert first.returncode == 0, first.stderr
        # A retried Job keeps what is already there, then writes the marker again.
        again = run_job_command(job, hub_url, moto_url, tmp_path)
        assert again.returncode == 0 and "bytes to" not in again.stdout, again.stdout + again.stderr
    finally:
        server.shutdown()
    files = {f.name: f.stat().st_size for f in checkpoint.iterdir() if not f.name.startswith(".")}
    listed = {o["Key"].removeprefix(prefix): o["Size"] for o in s3.list_objects_v2(Bucket=bucket, Prefix=prefix)["Contents"]}
    marker = spec["marker_key"].removeprefix(prefix)
    assert listed.pop(marker) > 0 and listed == files
    assert json.loads(s3.get_object(Bucket=bucket, Key=spec["marker_key"])["Body"].read())["files"] == files

    # The release's flags for the weights (the GPU-sized ones, e.g. max-model-len 8192, stay out).
    args = release["server_args"]
    vllm = start_server("tiny-llama", [args["served-model-name"]], use_netns=False,
                        weights=["--model", release["model_source"], "--load-format", args["load-format"],
                                 "--model-loader-extra-config", args["model-loader-extra-config"]],
                        extra_env={**s3_streamer_env(moto_url), **release["env"]})
    try:
        body = json.dumps({"model": args["served-model-name"], "max_tokens": 4,
                           "messages": [{"role": "user", "content": "Which weights?"}]}).encode()
        request = urllib.request.Request(f"{vllm.base_url}/v1/chat/completions", body,
                                         {"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as response:
            answer = json.load(response)
        assert answer["choices"][0]["message"]["content"] and answer["usage"]["completion_tokens"] == 4
        log = vllm.log_path.read_text(errors="replace")
        assert "Loading safetensors using Runai Model Streamer: 100%" in log
    finally:
        vllm.stop()

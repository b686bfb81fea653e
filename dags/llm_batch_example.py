"""
### llm_batch_example

A DAG of a team's own that needs Llama 4 for the length of its run, and no longer: a small batch
of chat completions written to the deployment's artifact bucket. `llm_endpoint` brings the model
up through `deploy_model` (or adopts it when it serves already), holds it while the batch runs,
so the idle teardown and `teardown_deployment` leave it alone, and releases it at the end, even
after a failure. Once nobody holds it the idle teardown removes it after its idle TTL
(`when_released="teardown"` removes it at once instead).

    airflow dags trigger llm_batch_example --conf '{"prompts": ["Summarize: ..."]}'
"""

from __future__ import annotations

import json
from datetime import timedelta

import pendulum
from airflow.sdk import DAG, Param, get_current_context, task

from llm_on_eks.factory import llm_endpoint

DAG_ID = "llm_batch_example"
PROMPTS = ["Summarize in one sentence why the sky is blue.",
           "Summarize in one sentence what Apache Airflow does.",
           "Summarize in one sentence what a vLLM server serves."]


@task
def complete(endpoint: dict, params: dict | None = None) -> str:
    """Each prompt's answer, one JSON line each, to s3://<artifact bucket>/batches/<dag>/<run>.jsonl."""
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    from llm_on_eks.serving.endpoint import openai_client_for

    with openai_client_for(endpoint) as client:
        lines = []
        for prompt in params["prompts"]:
            reply = client.chat.completions.create(model=endpoint["model"], max_tokens=params["max_tokens"],
                                                   messages=[{"role": "user", "content": prompt}])
            lines.append(json.dumps({"prompt": prompt, "answer": reply.choices[0].message.content,
                                     "tokens": reply.usage.completion_tokens if reply.usage else None}))
    context = get_current_context()
    key = f"batches/{context['dag'].dag_id}/{context['run_id']}.jsonl"
    access = endpoint["access"]
    S3Hook(aws_conn_id=access["aws_conn_id"], region_name=access["region"]).load_string(
        "\n".join(lines) + "\n", key, bucket_name=endpoint["artifact_bucket"], replace=True)
    print(f"{len(lines)} answers from {endpoint['model']} ({endpoint['deployment']})")
    return f"s3://{endpoint['artifact_bucket']}/{key}"


with DAG(
    dag_id=DAG_ID,
    doc_md=__doc__,
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    default_args={"owner": "ml-platform", "retries": 2, "retry_delay": timedelta(minutes=1)},
    tags=["llm", "example"],
    params={
        "model": Param("llama4-scout", type="string", title="Model"),
        "accelerator": Param("gpu", type="string", enum=["gpu", "neuron"], title="Accelerator"),
        "cluster_name": Param("llm-on-eks", type="string", title="EKS cluster"),
        "region": Param("us-west-2", type="string", title="AWS region"),
        "namespace": Param("llm", type="string", title="Kubernetes namespace"),
        "deploy": Param({}, type="object", title="More deploy fields",
                        description="Any other field of deploy_model's form (deployment_name, idle_ttl_minutes, ...)."),
        "prompts": Param(PROMPTS, type="array", items={"type": "string"}, minItems=1, title="Prompts"),
        "max_tokens": Param(64, type="integer", minimum=1, maximum=4096, title="Max tokens per answer"),
    },
):
    with llm_endpoint(model="{{ params.model }}", accelerator="{{ params.accelerator }}",
                      cluster_name="{{ params.cluster_name }}", region="{{ params.region }}",
                      namespace="{{ params.namespace }}", overrides="{{ params.deploy | tojson }}") as llm:
        complete(llm.endpoint)

"""The trigger form of the deploy DAGs.

Typed params make the Airflow UI render a form and refuse malformed conf at trigger time
(`airflow dags trigger --conf` included). What a schema cannot judge, because it depends on
the catalog and on arithmetic (does TP divide the heads, does the context fit), the plan task
refuses before any resource exists. No secret is ever a param: the HF token is named by
connection id or Secrets Manager id only.
"""

from __future__ import annotations

from airflow.sdk import Param

from llm_on_eks.naming import DEPLOYMENT_NAME_MAX, DEPLOYMENT_NAME_PATTERN
from llm_on_eks.plan import DEFAULTS

# The longest context any catalog model has (Llama 4 Scout, 10M tokens).
MAX_CONTEXT = 10_485_760
KV_CACHE_DTYPES = ["auto", "fp8", "fp8_e4m3", "fp8_e5m2"]
REGION_PATTERN = r"^[a-z]{2}(-gov|-iso[a-z]*)?-[a-z]+-[0-9]$"
CLUSTER_NAME_PATTERN = r"^[0-9A-Za-z][A-Za-z0-9\-_]{0,99}$"
DNS_LABEL_PATTERN = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"
ARN_PATTERN = r"^arn:aws[a-z-]*:iam::[0-9]{12}:role/.+$"


def _optional(type_: str, **schema) -> dict:
    return {"type": ["null", type_], **schema}


def deploy_params(model_ids: list[str], default_model: str, instance_types: list[str]) -> dict[str, Param]:
    """The params form of a deploy DAG offering ``model_ids``."""
    return {
        # -- Model
        "model": Param(default_model, type="string", enum=model_ids, title="Model",
                       description="Catalog id of the model to serve.", section="Model"),
        "accelerator": Param(DEFAULTS["accelerator"], type="string", enum=["gpu", "neuron"], title="Accelerator",
                             description="gpu: NVIDIA (p5/p4d/g5/g6e); neuron: AWS Trainium2 (trn2).", section="Model"),
        "instance_type": Param(None, **_optional("string"), enum=[None, *instance_types], title="Instance type",
                               description="Override the profile's instance type (same accelerator).", section="Model"),
        "deployment_name": Param(None, **_optional("string", pattern=DEPLOYMENT_NAME_PATTERN, maxLength=DEPLOYMENT_NAME_MAX),
                                 title="Deployment name",
                                 description="Names the Helm release, node group and tags. Default: <model>-<accelerator>.",
                                 section="Model"),
        # -- Cluster
        "cluster_name": Param(DEFAULTS["cluster_name"], type="string", pattern=CLUSTER_NAME_PATTERN, title="EKS cluster",
                              section="Cluster"),
        "region": Param(DEFAULTS["region"], type="string", pattern=REGION_PATTERN, title="AWS region", section="Cluster"),
        "create_cluster": Param(DEFAULTS["create_cluster"], type="boolean", title="Create the cluster if missing",
                                description="Off: the cluster must exist (no EKS create permission needed).",
                                section="Cluster"),
        "kubernetes_version": Param(None, **_optional("string", pattern=r"^1\.[0-9]+$"), title="Kubernetes version",
                                    section="Cluster"),
        "cluster_role_arn": Param(None, **_optional("string", pattern=ARN_PATTERN), title="Cluster IAM role ARN",
                                  section="Cluster"),
        "node_role_arn": Param(None, **_optional("string", pattern=ARN_PATTERN), title="Node IAM role ARN",
                               section="Cluster"),
        "subnet_ids": Param([], type="array", items={"type": "string", "pattern": r"^subnet-[0-9a-f]+$"},
                            title="Subnet ids", description="Default: the cluster's own subnets.", section="Cluster"),
        "security_group_ids": Param([], type="array", items={"type": "string", "pattern": r"^sg-[0-9a-f]+$"},
                                    title="Security group ids", section="Cluster"),
        "fsx_subnet_id": Param(None, **_optional("string", pattern=r"^subnet-[0-9a-f]+$"), title="FSx subnet id",
                               section="Cluster"),
        "artifact_bucket": Param(None, **_optional("string", pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$"),
                                 title="S3 bucket for weights and Neuron artifacts",
                                 description="Default: llm-on-eks-<cluster>-<region>.", section="Cluster"),
        "namespace": Param(DEFAULTS["namespace"], type="string", pattern=DNS_LABEL_PATTERN, title="Kubernetes namespace",
                           section="Cluster"),
        "aws_conn_id": Param(DEFAULTS["aws_conn_id"], type="string", title="Airflow AWS connection", section="Cluster"),
        "kubernetes_conn_id": Param(None, **_optional("string"), title="Airflow Kubernetes connection",
                                    description="Empty: reach the EKS cluster with the AWS connection.",
                                    section="Cluster"),
        "hf_token_conn_id": Param(DEFAULTS["hf_token_conn_id"], type="string", title="HF token connection",
                                  description="Airflow connection whose password is the Hugging Face token.",
                                  section="Cluster"),
        "hf_token_secret_id": Param(None, **_optional("string"), title="HF token Secrets Manager id",
                                    description="Read the token from this secret instead of the connection.",
                                    section="Cluster"),
        # -- Serving overrides
        "max_model_len": Param(None, **_optional("integer", minimum=1, maximum=MAX_CONTEXT), title="max_model_len",
                               description="Default: the profile's. Checked against memory by the plan.",
                               section="Serving overrides"),
        "tensor_parallel_size": Param(None, **_optional("integer", minimum=1, maximum=128),
                                      title="Tensor parallel size", section="Serving overrides"),
        "kv_cache_dtype": Param(None, **_optional("string"), enum=[None, *KV_CACHE_DTYPES], title="KV-cache dtype",
                                description="fp8 roughly doubles the context that fits.", section="Serving overrides"),
        "images_per_prompt": Param(None, **_optional("integer", minimum=0, maximum=10), title="Images per prompt",
                                   section="Serving overrides"),
        "gpu_memory_utilization": Param(None, **_optional("number", minimum=0.5, maximum=0.98),
                                        title="GPU memory utilisation", section="Serving overrides"),
        "endpoint_url": Param(None, **_optional("string", pattern=r"^https?://"), title="Endpoint base URL",
                              description="For clusters exposed through an ingress; default: the API server's "
                                          "service proxy.", section="Serving overrides"),
        # -- Checks
        "smoke_test": Param(DEFAULTS["smoke_test"], type="boolean", title="Smoke test", section="Checks"),
        "benchmark": Param(DEFAULTS["benchmark"], type="boolean", title="Benchmark", section="Checks"),
        "benchmark_concurrency": Param(DEFAULTS["benchmark_concurrency"], type="integer", minimum=1, maximum=256, section="Checks"),
        "benchmark_num_prompts": Param(DEFAULTS["benchmark_num_prompts"], type="integer", minimum=1, maximum=10_000, section="Checks"),
        "benchmark_input_len": Param(DEFAULTS["benchmark_input_len"], type="integer", minimum=1, maximum=MAX_CONTEXT, section="Checks"),
        "benchmark_output_len": Param(DEFAULTS["benchmark_output_len"], type="integer", minimum=1, maximum=32_768, section="Checks"),
        "benchmark_slo_p99_ttft_ms": Param(None, **_optional("number", exclusiveMinimum=0),
                                           title="SLO: p99 TTFT (ms)", description="Fail the run when missed.",
                                           section="Checks"),
        # -- Lifecycle
        "idle_ttl_minutes": Param(DEFAULTS["idle_ttl_minutes"], type="integer", minimum=5, maximum=43_200, title="Idle TTL (minutes)",
                                  description="The idle teardown removes the deployment after this long unused.",
                                  section="Lifecycle"),
        "protected": Param(DEFAULTS["protected"], type="boolean", title="Protect from idle teardown", section="Lifecycle"),
        "dry_run": Param(DEFAULTS["dry_run"], type="boolean", title="Dry run",
                         description="Plan and describe every step without creating anything.", section="Lifecycle"),
    }

"""The trigger form of the deploy DAGs.

Typed params make the Airflow UI render a form and refuse malformed conf at trigger time
(`airflow dags trigger --conf` included). What a schema cannot judge, because it depends on
the catalog and on arithmetic (does TP divide the heads, does the context fit), the plan task
refuses before any resource exists. No secret is ever a param: the HF token is named by
connection id or Secrets Manager id only.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import Param
from airflow.sdk.exceptions import ParamValidationError

from llm_on_eks.catalog import catalog_index, profile_names
from llm_on_eks.inputs import InputError, check_known, schema
from llm_on_eks.naming import DEPLOYMENT_NAME_MAX
from llm_on_eks.plan import DEFAULTS, WEIGHT_SOURCES

# The longest context any catalog model has (Llama 4 Scout, 10M tokens).
MAX_CONTEXT = 10_485_760
KV_CACHE_DTYPES = ["auto", "fp8", "fp8_e4m3", "fp8_e5m2"]
ALLOWED_CONNS = ("Only ids the Airflow deployment allows ([llm_on_eks] allowed_conn_ids; default aws_default, "
                 "kubernetes_default, hf_default, llm_on_eks_*).")


def _optional(type_: str, **schema) -> dict:
    return {"type": ["null", type_], **schema}


def _where(section: str) -> dict[str, Param]:
    """Where a deployment is and how to reach it: the same fields, defaults and rules in the deploy
    and the teardown form, so a teardown finds what a deploy made."""
    return {
        "cluster_name": Param(DEFAULTS["cluster_name"], type="string", **schema("cluster_name"), title="EKS cluster",
                              section=section),
        "region": Param(DEFAULTS["region"], type="string", **schema("region"), title="AWS region", section=section),
        "namespace": Param(DEFAULTS["namespace"], type="string", **schema("namespace"), title="Kubernetes namespace",
                           section=section),
        "aws_conn_id": Param(DEFAULTS["aws_conn_id"], type="string", **schema("aws_conn_id"), title="Airflow AWS connection",
                             description=ALLOWED_CONNS, section=section),
        "kubernetes_conn_id": Param(None, **_optional("string", **schema("kubernetes_conn_id")),
                                    title="Airflow Kubernetes connection",
                                    description="Empty: reach the EKS cluster with the AWS connection. " + ALLOWED_CONNS,
                                    section=section),
        "artifact_bucket": Param(None, **_optional("string", **schema("artifact_bucket")),
                                 title="S3 bucket for weights and Neuron artifacts",
                                 description="Default: llm-on-eks-<cluster>-<region>.", section=section),
    }


def _model(model_ids: list[str], default_model: str, instance_types: list[str]) -> dict[str, Param]:
    return {
        "model": Param(default_model, type="string", enum=model_ids, title="Model",
                       description="Catalog id of the model to serve.", section="Model"),
        "accelerator": Param(DEFAULTS["accelerator"], type="string", enum=["gpu", "neuron"], title="Accelerator",
                             description="gpu: NVIDIA (p5/p4d/g5/g6e); neuron: AWS Trainium2 (trn2).", section="Model"),
        "profile": Param(None, **_optional("string"), enum=[None, *profile_names()], title="Catalog profile",
                         description="A named profile of the model (gpu-p4d: Scout on 8x A100; neuron-nxdi: NxD "
                                     "Inference); it sets the accelerator. Empty: the accelerator's default profile.",
                         section="Model"),
        "instance_type": Param(None, **_optional("string"), enum=[None, *instance_types], title="Instance type",
                               description="Override the profile's instance type (same accelerator).", section="Model"),
        "weights": Param(None, **_optional("string"), enum=[None, *WEIGHT_SOURCES], title="Weight source",
                         description="Where a GPU profile's serving pods load weights from: fsx (staged on FSx for "
                                     "Lustre), s3_stream (staged in the artifact bucket, streamed by vLLM's Run:ai "
                                     "model streamer) or hub (downloaded at every start). Empty: the profile's; the "
                                     "plan summary compares them. Neuron profiles load what neuron_compile made.",
                         section="Model"),
        "deployment_name": Param(None, **_optional("string", **schema("deployment_name"), maxLength=DEPLOYMENT_NAME_MAX),
                                 title="Deployment name",
                                 description="Names the Helm release, node group and tags. Default: <model>-<profile>.",
                                 section="Model"),
    }


def _cluster() -> dict[str, Param]:
    return {
        "create_cluster": Param(DEFAULTS["create_cluster"], type="boolean", title="Create the cluster if missing",
                                description="Off: the cluster must exist (no EKS create permission needed).",
                                section="Cluster"),
        "grant_cluster_access": Param(DEFAULTS["grant_cluster_access"], type="boolean",
                                      title="Grant the Airflow identity access to the cluster",
                                      description="On a cluster that does not let it in: add an EKS access entry "
                                                  "with AmazonEKSClusterAdminPolicy. Off: the run stops saying what "
                                                  "to add.",
                                      section="Cluster"),
        "cluster_quiet_minutes": Param(DEFAULTS["cluster_quiet_minutes"], type="integer", minimum=0, maximum=43_200,
                                       title="Remove the cluster after (minutes without a deployment)",
                                       description="On a cluster this run creates: the idle teardown removes it, "
                                                   "its FSx and system nodes, once no deployment has used it this "
                                                   "long. 0: never.",
                                       section="Cluster"),
        "kubernetes_version": Param(None, **_optional("string", **schema("kubernetes_version")), title="Kubernetes version",
                                    section="Cluster"),
        "cluster_role_arn": Param(None, **_optional("string", **schema("cluster_role_arn")), title="Cluster IAM role ARN",
                                  section="Cluster"),
        "node_role_arn": Param(None, **_optional("string", **schema("node_role_arn")), title="Node IAM role ARN",
                               description="Needed when the node group has to be created.", section="Cluster"),
        "subnet_ids": Param([], type="array", items={"type": "string", **schema("subnet_ids")}, uniqueItems=True,
                            title="Subnet ids", description="Default: the cluster's own subnets.", section="Cluster"),
        "security_group_ids": Param([], type="array", items={"type": "string", **schema("security_group_ids")},
                                    uniqueItems=True,
                                    title="Security group ids", section="Cluster"),
        "fsx_subnet_id": Param(None, **_optional("string", **schema("fsx_subnet_id")), title="FSx subnet id",
                               section="Cluster"),
        "capacity_reservation_id": Param(None, **_optional("string", **schema("capacity_reservation_id")),
                                         title="Capacity reservation id",
                                         description="An active On-Demand Capacity Reservation or Capacity Block "
                                                     "for ML (cr-...) holding the accelerator nodes' instance type "
                                                     "and count; the node group goes in its availability zone. "
                                                     "Which of the two it is is read from AWS. Empty: on-demand "
                                                     "capacity.",
                                         section="Cluster"),
        "nodepool": Param(None, **_optional("string", **schema("nodepool")), title="NodePool (EKS Auto Mode)",
                          description="On an EKS Auto Mode cluster: an existing NodePool to run the accelerator "
                                      "nodes in (it must allow the instance type, and its taints must be the "
                                      "accelerator's). Empty: one is made for the deployment and removed with it. "
                                      "Off Auto Mode: leave empty (a managed node group is made).",
                          section="Cluster"),
        "hf_token_conn_id": Param(DEFAULTS["hf_token_conn_id"], type="string", **schema("hf_token_conn_id"),
                                  title="HF token connection",
                                  description="Airflow connection whose password is the Hugging Face token. "
                                              + ALLOWED_CONNS,
                                  section="Cluster"),
        "hf_token_secret_id": Param(None, **_optional("string", **schema("hf_token_secret_id")),
                                    title="HF token Secrets Manager id",
                                    description="Read the token from this secret instead of the connection "
                                                "(ids the Airflow deployment allows: [llm_on_eks] allowed_secret_ids, "
                                                "default llm-on-eks/*).",
                                    section="Cluster"),
    }


def _serving_overrides() -> dict[str, Param]:
    return {
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
        "endpoint_url": Param(None, **_optional("string", **schema("endpoint_url")), title="Endpoint base URL",
                              description="For clusters exposed through an ingress; default: the API server's "
                                          "service proxy.", section="Serving overrides"),
    }


def _checks() -> dict[str, Param]:
    return {
        "preflight_proceed_on_unknown": Param(
            DEFAULTS["preflight_proceed_on_unknown"], type="boolean", title="Proceed when preflight cannot tell",
            description="Off: a vCPU quota or HF token check AWS does not answer stops the run before anything "
                        "is created. On: go ahead anyway.", section="Checks"),
        "smoke_test": Param(DEFAULTS["smoke_test"], type="boolean", title="Smoke test", section="Checks"),
        "benchmark": Param(DEFAULTS["benchmark"], type="boolean", title="Benchmark", section="Checks"),
        "benchmark_concurrency": Param(DEFAULTS["benchmark_concurrency"], type="integer", minimum=1, maximum=256, section="Checks"),
        "benchmark_num_prompts": Param(DEFAULTS["benchmark_num_prompts"], type="integer", minimum=1, maximum=10_000, section="Checks"),
        "benchmark_input_len": Param(DEFAULTS["benchmark_input_len"], type="integer", minimum=1, maximum=MAX_CONTEXT, section="Checks"),
        "benchmark_output_len": Param(DEFAULTS["benchmark_output_len"], type="integer", minimum=1, maximum=32_768, section="Checks"),
        "benchmark_slo_p99_ttft_ms": Param(None, **_optional("number", exclusiveMinimum=0),
                                           title="SLO: p99 TTFT (ms)", description="Fail the run when missed.",
                                           section="Checks"),
    }


def _lifecycle() -> dict[str, Param]:
    return {
        "idle_ttl_minutes": Param(DEFAULTS["idle_ttl_minutes"], type="integer", minimum=5, maximum=43_200, title="Idle TTL (minutes)",
                                  description="The idle teardown removes the deployment after this long unused.",
                                  section="Lifecycle"),
        "protected": Param(DEFAULTS["protected"], type="boolean", title="Protect from idle teardown", section="Lifecycle"),
        "teardown_on_failure": Param(DEFAULTS["teardown_on_failure"], type="boolean", title="Tear down on failure",
                                     description="Off: a failed deploy's node group is marked failed and the idle "
                                                 "teardown removes it after a grace period. On: removed at once.",
                                     section="Lifecycle"),
        "dry_run": Param(DEFAULTS["dry_run"], type="boolean", title="Dry run",
                         description="Plan and describe every step without creating anything.", section="Lifecycle"),
    }


def deploy_form(model_ids: list[str], default_model: str, instance_types: list[str]) -> dict[str, Param]:
    """The params form of a deploy DAG offering ``model_ids``, section by section."""
    return {**_model(model_ids, default_model, instance_types), **_where("Cluster"), **_cluster(),
            **_serving_overrides(), **_checks(), **_lifecycle()}


def teardown_form() -> dict[str, Param]:
    """The params form of teardown_deployment: which deployment, and what goes beyond its release."""
    return {
        "deployment_name": Param("", type="string", **schema("deployment_name"), maxLength=DEPLOYMENT_NAME_MAX,
                                 title="Deployment name", description="As deployed (default there: <model>-<profile>).",
                                 section="Deployment"),
        **_where("Deployment"),
        "delete_nodegroup": Param(True, type="boolean", title="Delete the node group",
                                  description="The deployment's accelerator nodes: what costs money.",
                                  section="What goes"),
        "delete_fsx": Param(False, type="boolean", title="Delete the FSx file system",
                            description="Only if llm-on-eks made it and no other deployment uses it.",
                            section="What goes"),
        "delete_cluster": Param(False, type="boolean", title="Delete the cluster",
                                description="Only if llm-on-eks created it and no other node group is left on it.",
                                section="What goes"),
        "delete_artifacts": Param(False, type="boolean", title="Delete the artifact bucket",
                                  description="Compiled Neuron artifacts and staged weights are costly to rebuild.",
                                  section="What goes"),
        "dry_run": Param(DEFAULTS["dry_run"], type="boolean", title="Dry run",
                         description="List what would go and why each kept thing is kept; remove nothing.",
                         section="What goes"),
    }


def deploy_request(request: dict[str, Any]) -> dict[str, Any]:
    """A deploy's params from ``request`` (e.g. ``llm_endpoint``'s), checked as the deploy_model
    form checks a trigger's conf: an unknown key or a value outside its field's schema is refused,
    naming the field; what is not given takes the form's default."""
    from airflow.sdk.definitions.param import ParamsDict

    model_ids, instance_types = catalog_index()
    form = deploy_form(model_ids, model_ids[0], instance_types)
    check_known(request, form)
    params = ParamsDict(form)
    for key, value in request.items():
        try:
            params[key] = value
        except ParamValidationError as exc:
            raise InputError(str(exc).split("\n\n")[0]) from None  # the field and why, not the schema dump
    return params.validate()

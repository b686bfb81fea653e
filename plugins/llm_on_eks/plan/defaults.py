"""Every default of a run and every constant the plan is built from, in one place: the params
form shows ``DEFAULTS``, and the plan falls back to them for a conf that leaves a key out (an API
trigger need not send every field)."""

from __future__ import annotations

from typing import Any

# 9: weights streamed from S3 (storage.s3_stream, weights_options); 8: the cluster's removal once
# unused (quiet_minutes); 7: the predicted cold start; 6: the NodePool (EKS Auto Mode); 5: the node
# groups' capacity reservation and launch template; 4: typed target, release and smoke-test
# sections; 3: named profiles, Neuron frameworks
PLAN_VERSION = 9
SERVING_PORT = 8000
# Where FSx for Lustre is mounted in the staging Job; the serving pods read the claim directly.
FSX_MOUNT_PATH = "/fsx"
# ai-on-eks blueprint FSx defaults (infra/base/terraform fsx-for-lustre.tf): PERSISTENT_2,
# 2400 GiB, 500 MB/s/TiB.
FSX_STORAGE_GIB = 2400
FSX_THROUGHPUT_PER_TIB = 500
# Downloading ~400 GiB (Maverick FP8) onto FSx or into S3: the staging Job's deadline and its
# wait, one number.
STAGING_BUDGET_S = 6 * 3600
# Where a GPU profile's serving pods may load weights from (the weights param); a Neuron profile's
# are what its compile made (neuron_compiled).
WEIGHT_SOURCES = ("fsx", "s3_stream", "hub")
# Storage list prices in us-east-1, for estimates only: FSx for Lustre PERSISTENT_2 SSD per
# GB-month by throughput per TiB (aws.amazon.com/fsx/lustre/pricing); S3 Standard, first 50 TB
# (aws.amazon.com/s3/pricing). A month is 730 hours on both pages.
FSX_GB_MONTH_USD = {125: 0.145, 250: 0.210, 500: 0.340, 1000: 0.600}
S3_GB_MONTH_USD = 0.023
HOURS_PER_MONTH = 730
# vLLM's Run:ai model streamer (--load-format runai_streamer, vLLM docs "Loading models with
# Run:ai Model Streamer"): how many reads run at once (the docs' example: 16) and the CPU buffer
# it may fill, capped so a small node (g5.2xlarge: 32 GiB) keeps memory for the server; a profile
# may set its own (catalog `streamer`).
STREAMER_CONCURRENCY = 16
STREAMER_MEMORY_LIMIT_GIB = 8
NODE_DISK_GIB = 500

# EKS managed node group settings per accelerator: the AMI type carrying the drivers (not the
# device plugin: llm_on_eks.kube.device_plugins), the taint that keeps other pods off, and the
# extended resource to request.
ACCELERATORS = {
    "gpu": {"ami_type": "AL2023_x86_64_NVIDIA", "taint_key": "nvidia.com/gpu", "resource": "nvidia.com/gpu"},
    "neuron": {"ami_type": "AL2023_x86_64_NEURON", "taint_key": "aws.amazon.com/neuron", "resource": "aws.amazon.com/neuron"},
}
# What the cluster needs for accelerator pods beyond what EKS installs: the FSx CSI driver where
# weights are staged on FSx (ai-on-eks blueprint add-ons; AWS docs "Amazon FSx for Lustre CSI driver").
ADDONS = {
    "gpu": ["vpc-cni", "coredns", "kube-proxy", "aws-fsx-csi-driver"],
    "neuron": ["vpc-cni", "coredns", "kube-proxy"],
}

# The NodeClass an EKS Auto Mode cluster makes when its built-in node pools are on, and a
# NodePool of ours launches from (EKS user guide, "Create a Node Class for Amazon EKS").
AUTO_MODE_NODE_CLASS = "default"

# The cluster's system node group: untainted nodes for what tolerates no accelerator taint
# (coredns, the FSx weight-staging Job at 4 CPU / 16 GiB, controllers). One per cluster we create,
# shared by its deployments: tagged with the cluster and a role, never with one deployment.
SYSTEM_INSTANCE_TYPE = "m6i.xlarge"  # 4 vCPU, 16 GiB
# On-demand list prices in us-east-1 (aws.amazon.com/ec2/pricing, aws.amazon.com/eks/pricing),
# for estimates only. A cluster we create adds its control plane and system nodes.
SYSTEM_HOURLY_USD = 0.192
SYSTEM_SCALING = {"min_size": 1, "max_size": 3, "desired_size": 2}
EKS_CONTROL_PLANE_HOURLY_USD = 0.10
CLUSTER_HOURLY_USD = round(EKS_CONTROL_PLANE_HOURLY_USD + SYSTEM_HOURLY_USD * SYSTEM_SCALING["desired_size"], 3)
# A network made with the cluster (no subnets given) bills its NAT gateway and the gateway's public
# IPv4 address (aws.amazon.com/vpc/pricing: $0.045 per NAT gateway hour, $0.005 per public IPv4 hour).
NETWORK_HOURLY_USD = 0.045 + 0.005

DEFAULTS: dict[str, Any] = {
    "accelerator": "gpu",
    "cluster_name": "llm-inference",
    "region": "us-west-2",
    "create_cluster": False,
    "grant_cluster_access": False,
    "cluster_quiet_minutes": 0,
    "namespace": "llm-serving",
    "aws_conn_id": "aws_default",
    "hf_token_conn_id": "hf_default",
    "preflight_proceed_on_unknown": False,
    "smoke_test": True,
    "benchmark": False,
    "benchmark_concurrency": 4,
    "benchmark_num_prompts": 32,
    "benchmark_input_len": 256,
    "benchmark_output_len": 128,
    "idle_ttl_minutes": 60,
    "protected": False,
    "teardown_on_failure": False,
    "dry_run": False,
}


class PlanError(ValueError):
    """The run's params cannot become a deployment; the message says what to change."""


def param(params: dict[str, Any], name: str) -> Any:
    """A run's value for ``name``, or its default: a missing key and an empty optional are alike."""
    value = params.get(name)
    return DEFAULTS.get(name) if value is None or value == "" else value


def is_true(value: Any) -> bool:
    """A switch as a param, a conf value or a rendered template gives it: a bool, or its text
    (``"{{ params.delete_cluster }}"`` renders to "True")."""
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes", "on")
    return bool(value)

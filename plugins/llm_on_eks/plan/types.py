"""The plan's sections, typed: the document stays plain JSON for XCom, and a reader (or a type
checker) sees every field in one place. A step is handed the sections it acts on; the teardown's
``...Ref`` sections are the part of the deploy sections a teardown needs, so a deploy's failure
path hands its own sections to the same teardown steps."""

from __future__ import annotations

from typing import Any, TypedDict

from llm_on_eks.plan.cold_start import ColdStartSection
from llm_on_eks.sizing import SizingSection


class ClusterAccess(TypedDict):
    """How a cluster-side step or trigger reaches the API server: a Kubernetes connection, or
    the EKS cluster through the AWS connection (``llm_on_eks.kube.access``)."""

    kubernetes_conn_id: str | None
    aws_conn_id: str
    region: str
    cluster: str
    namespace: str


class Target(TypedDict):
    """What every step of a deployment knows: which one, whether for real, and how to reach its
    cluster (a step renews the deployment's Lease there). No deployment: the removal of an
    unused cluster."""

    deployment: str | None
    dry_run: bool
    access: ClusterAccess


class ModelSection(TypedDict):
    id: str
    display_name: str
    hf_repo: str
    revision: str
    revision_pinned: bool
    takes_images: bool


class ProfileSection(TypedDict):
    name: str  # the catalog profile: gpu, gpu-p4d, neuron, neuron-nxdi
    accelerator: str
    instance_type: str
    nodes: int
    accelerators_per_node: int
    tensor_parallel_size: int
    pipeline_parallel_size: int
    dtype: str
    quantization: str | None
    # The checkpoint's own quantization method (vLLM reads it from config.json; no --quantization).
    checkpoint_quantization: str | None
    kv_cache_dtype: str
    max_model_len: int
    images_per_prompt: int
    weights: str  # "neuron_compiled" | "fsx" | "hub"
    image: str
    vllm_args: dict[str, Any]
    env: dict[str, str]
    startup_budget_s: int
    # Host memory of a Neuron pod ({"request", "limit"}, e.g. "384Gi"): sharding loads the whole
    # model into host RAM, and a pod without a request is BestEffort, the first evicted.
    host_memory: dict[str, str] | None


class AwsSection(TypedDict):
    conn_id: str
    region: str


class ClusterRef(TypedDict):
    name: str


class ClusterSection(ClusterRef):
    create: bool
    # Add an access entry for the Airflow identity when the cluster does not let it in.
    grant_access: bool
    # A created cluster's opt-in to removal once unused this long (0: off; naming.QUIET_MINUTES_KEY).
    quiet_minutes: int
    version: str
    role_arn: str | None
    subnet_ids: list[str]
    security_group_ids: list[str]
    # The EKS add-ons the deployment needs (llm_on_eks.plan.sections.ADDONS).
    addons: list[str]


class NodegroupRef(TypedDict):
    """What a delete step needs of a node group: its name, and the tags that say it is ours."""

    name: str
    role: str  # "accelerator" | "system"
    # Who owns it: the tags it is created with, and the ones an existing group must carry.
    tags: dict[str, str]
    # The launch template made for it when it launches into a capacity reservation (named after
    # it, with the cluster: launch template names are per region); None for the system group.
    launch_template: str | None


class NodegroupSpec(NodegroupRef):
    """A managed node group as both its ensure and its delete step see it: the accelerator
    group of a deployment, or the system group of a cluster. The two differ only in data."""

    instance_type: str
    ami_type: str
    capacity_type: str
    disk_size_gib: int
    scaling: dict[str, int]
    labels: dict[str, str]
    taints: list[dict[str, str]]
    node_role_arn: str | None
    subnet_ids: list[str]
    # The On-Demand Capacity Reservation or Capacity Block its nodes launch into (which of the two
    # is read from AWS at run time); None: on-demand capacity. The system group never has one.
    capacity_reservation_id: str | None
    # The accelerator group is sized by the plan; the system group's size is left to whoever
    # changed it (an autoscaler).
    enforce_size: bool
    # The system group is made only on clusters this project creates; elsewhere it is checked for.
    only_on_own_cluster: bool
    hourly_usd: float


class NodePoolRef(TypedDict):
    """What a teardown needs of the deployment's NodePool: its name (removed only when its labels
    say it is this deployment's)."""

    name: str


class NodePoolSpec(NodePoolRef):
    """The Karpenter NodePool the accelerator nodes come from on an EKS Auto Mode cluster."""

    # Named in the params: used as it is, never changed or removed; else made for the deployment.
    given: bool
    instance_type: str
    labels: dict[str, str]
    taints: list[dict[str, str]]
    # The most capacity it may launch: the deployment's nodes' devices (Karpenter NodePool limits).
    limits: dict[str, str]
    node_class: str


class FsxRef(TypedDict):
    name: str
    pvc_name: str


class FsxSection(FsxRef):
    deployment_type: str
    storage_capacity_gib: int
    throughput_per_tib: int
    subnet_id: str | None
    security_group_ids: list[str]
    data_repository_path: str
    file_system_path: str
    mount_path: str
    model_path: str
    marker_key: str
    budget_s: int
    # Who uses the shared file system: this deployment's ``used-by`` tag (naming.fsx_user).
    user: str


class S3StreamSection(TypedDict):
    """Weights staged once into the artifact bucket and streamed from there by vLLM's Run:ai model
    streamer (--load-format runai_streamer)."""

    uri: str  # s3://<bucket>/models/<repo>/<revision>/: vLLM lists it, not recursively
    marker_key: str
    budget_s: int
    concurrency: int
    memory_limit_bytes: int


class WeightOption(TypedDict):
    """One weight source, predicted for this deployment: the plan summary compares them."""

    weights: str
    weight_load_s: int
    ttft_s: int
    storage_usd_month: float
    storage: str  # what is billed, in words


class StorageRef(TypedDict):
    artifact_bucket: str
    fsx: FsxRef | None


class StorageSection(StorageRef):
    fsx: FsxSection | None  # type: ignore[misc]  # narrows StorageRef.fsx
    s3_stream: S3StreamSection | None


class NeuronSection(TypedDict):
    framework: str  # "optimum" | "nxdi"
    config: dict[str, Any] | None  # NxD Inference's neuron config; None for optimum
    # Everything that changes the compiled output; ``hash`` is its digest and names the S3 prefix.
    identity: dict[str, Any]
    hash: str
    artifacts_uri: str
    # The variable naming artifacts_uri to vLLM: NEURON_COMPILE_CACHE_URL (optimum's compile cache,
    # filled while vllm serve compiles) or NEURON_COMPILED_ARTIFACTS (NxD Inference, traced before).
    cache_env: str
    marker_key: str
    budget_s: int


class SecretRef(TypedDict):
    name: str
    key: str


class HfTokenRef(TypedDict):
    k8s_secret: SecretRef


class HfTokenSection(HfTokenRef):
    conn_id: str
    secrets_manager_id: str | None


class KubernetesRef(TypedDict):
    conn_id: str | None
    namespace: str
    release: str  # the Helm release; the chart names its Deployment/LWS and Service after it
    labels: dict[str, str]


class KubernetesSection(KubernetesRef):
    node_selector: dict[str, str]
    tolerations: list[dict[str, str]]
    accelerator_resource: str


class ServingSection(TypedDict):
    port: int
    served_model_name: str
    takes_images: bool
    base_url: str | None
    namespace: str
    release: str  # the Service is named after the release


class ReleaseSpec(TypedDict):
    """What the serving pods run, and the Jobs that prepare for them run alike: the Helm
    release's values are this, renamed to the chart's keys (llm_on_eks.kube.helm_values)."""

    name: str
    namespace: str
    deployment: str
    image: str
    nodes: int
    accelerator: str
    served_model_name: str
    # Where vLLM loads weights from: a claim path (pvc://claim/path) or the hub (hf://repo@revision).
    model_source: str
    # vLLM's flags for the serving pods and the Neuron compile Job alike (the Job must compile with
    # exactly the flags the server looks up, or the server recompiles).
    server_args: dict[str, Any]
    env: dict[str, str]
    resources: dict[str, dict[str, str]]
    node_selector: dict[str, str]
    tolerations: list[dict[str, str]]
    labels: dict[str, str]
    hf_token_secret: SecretRef
    # The chart's `neuron` values: the framework and where its compiled output lives.
    neuron: dict[str, str]
    startup_budget_s: int
    port: int
    idle_ttl_minutes: int
    protected: bool


class BenchmarkSection(TypedDict):
    enabled: bool
    concurrency: int
    num_prompts: int
    input_len: int
    output_len: int
    slo_p99_ttft_ms: float | None


class SmokeTestSection(TypedDict):
    enabled: bool
    images_per_prompt: int


class PreflightSection(TypedDict):
    proceed_on_unknown: bool


class LifecycleSection(TypedDict):
    idle_ttl_minutes: int
    protected: bool


class Plan(TypedDict):
    plan_version: int
    catalog_version: Any
    deployment: str
    dry_run: bool
    target: Target
    model: ModelSection
    profile: ProfileSection
    sizing: SizingSection
    aws: AwsSection
    cluster: ClusterSection
    nodegroup: NodegroupSpec
    system_nodegroup: NodegroupSpec
    nodepool: NodePoolSpec
    storage: StorageSection
    cold_start: ColdStartSection
    weights_options: list[WeightOption]
    neuron: NeuronSection | None
    hf_token: HfTokenSection
    kubernetes: KubernetesSection
    serving: ServingSection
    release: ReleaseSpec
    preflight: PreflightSection
    smoke_test: SmokeTestSection
    benchmark: BenchmarkSection
    lifecycle: LifecycleSection
    tags: dict[str, str]


class TeardownPlan(TypedDict):
    """What a teardown acts on. Built from the deployment's identity with the same naming rules a
    deploy uses, so a teardown finds everything by name and tags without remembering anything:
    after a failed deploy, an Airflow restart, or from another Airflow."""

    deployment: str
    dry_run: bool
    reason: str
    target: Target
    aws: AwsSection
    cluster: ClusterRef
    nodegroup: NodegroupRef
    system_nodegroup: NodegroupRef
    nodepool: NodePoolRef
    storage: StorageRef
    kubernetes: KubernetesRef
    hf_token: HfTokenRef

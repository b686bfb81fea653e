"""Names, tags and labels shared by every step.

Every resource a deployment owns is found again by these names and tags, never by remembering
ids between runs: that is what makes each step safe to retry and to re-run, and what the idle
teardown uses to discover deployments.
"""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime

PROJECT = "llm-on-eks"
LABEL_PREFIX = "llm-on-eks.io"
MANAGED_BY_KEY = f"{LABEL_PREFIX}/managed-by"
DEPLOYMENT_KEY = f"{LABEL_PREFIX}/deployment"
CLUSTER_KEY = f"{LABEL_PREFIX}/cluster"
NAMESPACE_KEY = f"{LABEL_PREFIX}/namespace"
REGION_KEY = f"{LABEL_PREFIX}/region"
# On a deployment's node group while its last deploy run has failed; removed when one succeeds.
FAILED_AT_KEY = f"{LABEL_PREFIX}/failed-at"
ACCELERATOR_KEY = f"{LABEL_PREFIX}/accelerator"
IDLE_TTL_ANNOTATION = f"{LABEL_PREFIX}/idle-ttl-minutes"
PROTECTED_ANNOTATION = f"{LABEL_PREFIX}/protected"
# The S3 object a weight Job writes last: its presence means the Job's artifacts are whole.
COMPLETION_MARKER_ANNOTATION = f"{LABEL_PREFIX}/completion-marker"
# The LeaderWorkerSet API a multi-node release is made of: group, version, plural (LWS v0.7).
LWS_GROUP, LWS_VERSION, LWS_PLURAL = "leaderworkerset.x-k8s.io", "v1", "leaderworkersets"
# The cluster's shared system node group carries a role instead of a deployment.
ROLE_KEY = f"{LABEL_PREFIX}/role"
SYSTEM_ROLE = "system"
# Set once, when a resource is created: which run made it and when. A retry (Airflow clears a
# task's XComs between tries) or a resumed deferral tells "created by this run" from
# "adopted" by these tags, never from memory.
CREATED_BY_RUN_KEY = f"{LABEL_PREFIX}/created-by-run"
CREATED_AT_KEY = f"{LABEL_PREFIX}/created-at"
# On a cluster of ours, the opt-in to its removal once no deployment has used it for this many
# minutes (deploy_* param cluster_quiet_minutes, or a tag put on by hand); and the time the idle
# teardown first found it unused, kept there, with the cluster, rather than in Airflow.
QUIET_MINUTES_KEY = f"{LABEL_PREFIX}/remove-when-quiet-minutes"
QUIET_SINCE_KEY = f"{LABEL_PREFIX}/quiet-since"

# The deployment name becomes the Helm release (at most 53 characters, Helm docs "helm install")
# and the Service the chart names after it, a DNS-1035 label (Kubernetes docs, "Object Names and
# IDs"); 40 leaves room for the Job suffixes ("-compile-" and a hash). Pattern bodies are anchored
# by llm_on_eks.inputs, which checks every input against them.
DEPLOYMENT_NAME_MAX = 40
DEPLOYMENT_NAME_BODY = r"[a-z]([-a-z0-9]{0,38}[a-z0-9])?"
# RFC 1123 label: namespaces, label-safe names (Kubernetes docs, "Object Names and IDs").
DNS_LABEL_BODY = r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?"
# RFC 1123 subdomain: PersistentVolume and PersistentVolumeClaim names.
DNS_SUBDOMAIN_BODY = r"(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
# EKS node group names: 1-63 alphanumerics, '-' and '_', starting alphanumeric (EKS API, CreateNodegroup).
NODEGROUP_BODY = r"[A-Za-z0-9][A-Za-z0-9_-]{0,62}"
# EC2 launch template names: 3-128 letters, digits and ()./-_ (EC2 API reference, CreateLaunchTemplate).
LAUNCH_TEMPLATE_BODY = r"[A-Za-z0-9()./_-]{3,128}"
# S3 general purpose bucket names (S3 User Guide, "General purpose bucket naming rules"): 3-63
# lowercase letters, digits, '.' and '-', a letter or digit at both ends, no '..', not an IPv4
# address, none of the reserved prefixes and suffixes.
S3_BUCKET_BODY = (r"(?!xn--|sthree-|amzn-s3-demo-)(?!.*\.\.)(?![0-9]+\.[0-9]+\.[0-9]+\.[0-9]+$)"
                  r"(?!.*(-s3alias|--ol-s3|\.mrap|--x-s3|--table-s3)$)[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
# Namespaces that belong to the cluster itself (Kubernetes docs, "Namespaces": the initial ones).
RESERVED_NAMESPACES = frozenset({"default", "kube-system", "kube-public", "kube-node-lease"})
# Hex digits of the identity's hash in a name that had to be shortened or altered.
HASH_LEN = 8


def default_deployment_name(model_id: str, accelerator: str) -> str:
    return f"{model_id}-{accelerator}"[:DEPLOYMENT_NAME_MAX].rstrip("-")


def check_deployment_name(name: str) -> None:
    if not re.fullmatch(DEPLOYMENT_NAME_BODY, name):
        raise ValueError(
            f"deployment name {name!r} must be 1-{DEPLOYMENT_NAME_MAX} lowercase letters, digits or '-', "
            "starting with a letter and not ending with '-'"
        )


def identity_hash(*parts: str) -> str:
    """A short digest of the whole identity; the NUL separator keeps ("a-b", "c") and ("a", "b-c") apart."""
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:HASH_LEN]


def _fit(text: str, identity: tuple[str, ...], max_len: int, *, prefix: str = "", suffix: str = "",
         lowercase: bool = False, invalid: str = r"[^A-Za-z0-9-]") -> str:
    """``prefix + text + suffix`` when ``text`` is valid as it is and fits; otherwise ``text``
    lowercased (if the target wants it), its invalid characters replaced by '-', cut to fit, and
    followed by the hash of the full identity. A name passed through unchanged differs from every
    other unchanged one because the text does; an altered one carries its identity's hash, so two
    identities reach one name only if the input literally ends with another identity's hash."""
    clean = re.sub(invalid, "-", text.lower() if lowercase else text)
    if clean == text and len(prefix) + len(text) + len(suffix) <= max_len:
        return f"{prefix}{text}{suffix}"
    room = max_len - len(prefix) - len(suffix) - HASH_LEN - 1
    head = clean[:room].strip("-_.")
    return f"{prefix}{head}{'-' if head else ''}{identity_hash(*identity)}{suffix}"


def nodegroup_name(cluster: str, region: str, namespace: str, deployment: str) -> str:
    """``<namespace>_<deployment>-nodes``: node groups are per cluster, so the name must tell
    namespaces apart; '_' is in neither a namespace nor a deployment name, which keeps
    ("a-b", "c") and ("a", "b-c") apart."""
    return _fit(f"{namespace}_{deployment}", (cluster, region, namespace, deployment), 63, suffix="-nodes",
                invalid=r"[^A-Za-z0-9_-]")


def launch_template_name(cluster: str, region: str, namespace: str, deployment: str) -> str:
    """``<cluster>_<namespace>_<deployment>-nodes``: the launch template of the deployment's node
    group (made for a capacity reservation). Launch template names are per region, not per
    cluster, so the cluster is in it; '_' is in neither a namespace nor a deployment name, which
    keeps the three apart."""
    return _fit(f"{cluster}_{namespace}_{deployment}", (cluster, region, namespace, deployment), 128,
                suffix="-nodes", invalid=r"[^A-Za-z0-9_-]")


def nodepool_name(cluster: str, region: str, namespace: str, deployment: str) -> str:
    """``<namespace>.<deployment>``: the Karpenter NodePool made for a deployment on an EKS Auto
    Mode cluster. NodePools are cluster-wide and their name is the nodes' ``karpenter.sh/nodepool``
    label value (63 characters); '.' is in neither a namespace nor a deployment name."""
    return _fit(f"{namespace}.{deployment}", (cluster, region, namespace, deployment), 63, lowercase=True,
                invalid=r"[^a-z0-9.-]")


def system_nodegroup_name(cluster: str, region: str) -> str:
    """The cluster's one system node group."""
    return _fit(cluster, (cluster, region), 63, suffix="-system", invalid=r"[^A-Za-z0-9_-]")


def role_name(cluster: str, region: str, kind: str) -> str:
    """``llm-on-eks-<cluster>-<region>-<kind>``: the IAM role (``kind`` cluster or node) made with a
    cluster. Role names are global to the account, clusters are regional; IAM allows 64
    characters of ``[\\w+=,.@-]`` (IAM API, CreateRole)."""
    return _fit(f"{cluster}-{region}", (cluster, region, kind), 64, prefix=f"{PROJECT}-", suffix=f"-{kind}",
                invalid=r"[^A-Za-z0-9_+=,.@-]")


def fsx_name(cluster: str) -> str:
    """The cluster's shared FSx file system (its Name tag: up to 256 characters, any text)."""
    return f"{cluster}-model-weights"


def fsx_claim_name(cluster: str, region: str) -> str:
    """The PersistentVolumeClaim each namespace reads the file system through: a DNS label, the
    cluster name lowercased (with a hash when that changed it)."""
    return _fit(cluster, (cluster, region), 63, suffix="-model-weights", lowercase=True)


def fsx_pv_name(claim: str, namespace: str) -> str:
    """PersistentVolumes are cluster-wide and bind to one claim: one per namespace using the file
    system. A DNS subdomain; '.' is in neither part, so (claim, namespace) pairs never meet."""
    return f"{namespace}.{claim}"


def artifact_bucket(cluster: str, region: str) -> str:
    """``llm-on-eks-<cluster>-<region>``: the region always kept whole (buckets are global, one
    per cluster and region), the cluster part lowercased and cut, with a hash, when it must be."""
    return _fit(cluster, (cluster, region), 63, prefix=f"{PROJECT}-", suffix=f"-{region}", lowercase=True)


def fsx_user(namespace: str, deployment: str) -> str:
    """How a deployment names itself in the file system's used-by tags."""
    return f"{namespace}/{deployment}"


def lease_name(deployment: str) -> str:
    """The Kubernetes Lease that lets one deploy or teardown of a deployment act at a time."""
    return f"{PROJECT}-{deployment}"


def aws_tags(deployment: str, cluster: str, namespace: str, region: str) -> dict[str, str]:
    """Tags on every AWS resource a deployment creates: how ensure-steps, the teardown and the
    idle teardown's discovery find them and the deployment they belong to."""
    return {MANAGED_BY_KEY: PROJECT, DEPLOYMENT_KEY: deployment, CLUSTER_KEY: cluster, NAMESPACE_KEY: namespace,
            REGION_KEY: region}


def cluster_tags(cluster: str, region: str) -> dict[str, str]:
    """Tags of what is made with a cluster and goes with it: its network and IAM roles."""
    return {MANAGED_BY_KEY: PROJECT, CLUSTER_KEY: cluster, REGION_KEY: region}


def system_tags(cluster: str) -> dict[str, str]:
    """Tags of the cluster's system node group: shared by the cluster's deployments."""
    return {MANAGED_BY_KEY: PROJECT, CLUSTER_KEY: cluster, ROLE_KEY: SYSTEM_ROLE}


def creation_tags(run_id: str, now: datetime) -> dict[str, str]:
    """Added to a create request's tags; AWS tag values allow the characters of a run id."""
    return {CREATED_BY_RUN_KEY: run_id[:256], CREATED_AT_KEY: now.astimezone(UTC).isoformat(timespec="seconds")}


def is_managed(labels_or_tags: dict[str, str] | None) -> bool:
    """Whether an AWS resource's tags or a Kubernetes object's labels say this project made it."""
    return (labels_or_tags or {}).get(MANAGED_BY_KEY) == PROJECT


def created_by_run(tags: dict[str, str] | None, run_id: str) -> bool:
    return (tags or {}).get(CREATED_BY_RUN_KEY) == run_id[:256]


def k8s_labels(deployment: str) -> dict[str, str]:
    """Labels on every Kubernetes object a deployment creates, for discovery and cleanup."""
    return {MANAGED_BY_KEY: PROJECT, DEPLOYMENT_KEY: deployment}

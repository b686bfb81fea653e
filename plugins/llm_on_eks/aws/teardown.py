"""What the AWS teardown may delete, decided from what AWS reports, never from memory.

- The node group of the deployment: always (when it carries the deployment's tag); then the
  launch template made for its capacity reservation, when it carries the deployment's tag too.
- The cluster's system node group: only together with the cluster (same opt-in, the cluster is
  this project's, no other node group is left on it), and only when it is this project's system
  node group of that cluster (managed-by, role and cluster tags).
- The cluster: only when this project created it (managed-by tag), the caller opted in, and no
  node group is left on it (another deployment's node group means it is still in use).
- The FSx file system: only when the caller opted in, it is this project's, and no other
  deployment's ``used-by`` tag remains on it.
- The cluster's network and IAM roles: only with the cluster (same opt-in), once it is gone,
  and only what carries this project's tags for that cluster.
- A cluster of ours left unused (the idle teardown, opted in per cluster): its FSx, system node
  group, the cluster, its network and roles, by the rules above; never its bucket.
- The artifact bucket: kept unless the caller opted in; then only if this project made it for
  this cluster. Compiled Neuron artifacts and staged weights are expensive to rebuild.

Something already gone is a success. EKS answers ResourceInUseException for many minutes
after a node group or add-on change (apache/airflow#73219): deletes are retried with backoff.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from llm_on_eks.aws.fsx_rules import USED_BY_PREFIX, tags_of, users_of
from llm_on_eks.naming import (
    CLUSTER_KEY,
    DEPLOYMENT_KEY,
    QUIET_MINUTES_KEY,
    QUIET_SINCE_KEY,
    ROLE_KEY,
    SYSTEM_ROLE,
    is_managed,
)


@dataclass(frozen=True)
class Decision:
    delete: bool
    reason: str


def nodegroup_decision(nodegroup: dict[str, Any] | None, deployment: str) -> Decision:
    if nodegroup is None:
        return Decision(False, "already gone")
    owner = (nodegroup.get("tags") or {}).get(DEPLOYMENT_KEY)
    if not is_managed(nodegroup.get("tags")) or owner != deployment:
        return Decision(False, f"not this deployment's (tagged {DEPLOYMENT_KEY}={owner}): left alone")
    return Decision(True, f"node group of {deployment}")


def launch_template_decision(template: dict[str, Any] | None, deployment: str) -> Decision:
    """A launch template of the node group's name (EC2's shape: a list of tags), once the node
    group is gone or going."""
    if template is None:
        return Decision(False, "none")
    tags = tags_of(template)
    owner = tags.get(DEPLOYMENT_KEY)
    if not is_managed(tags) or owner != deployment:
        return Decision(False, f"not this deployment's (tagged {DEPLOYMENT_KEY}={owner}): left alone")
    return Decision(True, f"launch template of {deployment}'s node group")


def system_nodegroup_decision(nodegroup: dict[str, Any] | None, cluster: dict[str, Any] | None,
                              other_nodegroups: list[str], opted_in: bool) -> Decision:
    """The shared system node group goes only with the cluster, just before it."""
    if nodegroup is None:
        return Decision(False, "already gone")
    if not opted_in:
        return Decision(False, "kept: it goes with the cluster, and delete_cluster is off")
    if cluster is None or not is_managed(cluster.get("tags")):
        return Decision(False, "kept: the cluster is not llm-on-eks's")
    tags = nodegroup.get("tags") or {}
    if not is_managed(tags) or tags.get(ROLE_KEY) != SYSTEM_ROLE or tags.get(CLUSTER_KEY) != cluster["name"]:
        return Decision(False, f"kept: not llm-on-eks's system node group of {cluster['name']}")
    if other_nodegroups:
        return Decision(False, f"kept: the cluster still carries node groups {other_nodegroups}")
    return Decision(True, "goes with the cluster: opted in, created by llm-on-eks, no other node group left")


def cluster_decision(cluster: dict[str, Any] | None, remaining_nodegroups: list[str], opted_in: bool) -> Decision:
    if cluster is None:
        return Decision(False, "already gone")
    if not opted_in:
        return Decision(False, "kept: delete_cluster is off")
    if not is_managed(cluster.get("tags")):
        return Decision(False, "kept: not created by llm-on-eks")
    if remaining_nodegroups:
        return Decision(False, f"kept: still carries node groups {remaining_nodegroups}")
    return Decision(True, "created by llm-on-eks, opted in, no node groups left")


def made_with_cluster_decision(found: bool, cluster: dict[str, Any] | None, opted_in: bool) -> Decision:
    """The network and roles made with the cluster (found by the cluster's tags) go after it."""
    if not found:
        return Decision(False, "already gone (or never made: given, or the cluster was adopted)")
    if not opted_in:
        return Decision(False, "kept: it goes with the cluster, and delete_cluster is off")
    if cluster is not None:
        return Decision(False, f"kept: cluster {cluster['name']} still exists")
    return Decision(True, "made by llm-on-eks with the cluster, which is gone")


def fsx_decision(file_system: dict[str, Any] | None, user: str | None, opted_in: bool) -> Decision:
    """``user``: the deployment tearing down, as ``naming.fsx_user`` names it (None: the removal
    of an unused cluster, no deployment's)."""
    if file_system is None:
        return Decision(False, "already gone")
    others = [u for u in users_of(file_system) if u != user]
    if not opted_in:
        return Decision(False, "kept: delete_fsx is off")
    if others:
        return Decision(False, f"kept: still used by {others}")
    return Decision(True, "opted in, no other deployment uses it")


def own_user_tags(file_system: dict[str, Any], user: str | None) -> list[str]:
    return [k for k in tags_of(file_system) if k == f"{USED_BY_PREFIX}{user}"]


def bucket_decision(tags: dict[str, str] | None, cluster: str, opted_in: bool) -> Decision:
    if tags is None:
        return Decision(False, "already gone")
    if not opted_in:
        return Decision(False, "kept: delete_artifacts is off (compiled artifacts and staged weights are costly)")
    if not is_managed(tags) or tags.get(CLUSTER_KEY) != cluster:
        return Decision(False, "kept: not made by llm-on-eks for this cluster")
    return Decision(True, "opted in, made by llm-on-eks for this cluster")


@dataclass(frozen=True)
class QuietVerdict:
    """Whether a cluster of ours goes for being unused, why, and the quiet-since tag to keep on it
    (None: none, the cluster is in use or not ours)."""

    remove: bool
    reason: str
    quiet_since: str | None


def quiet_cluster_decision(cluster: dict[str, Any] | None, users: list[str], now: datetime) -> QuietVerdict:
    """A cluster goes only when llm-on-eks created it, it opted in (``QUIET_MINUTES_KEY``), and no
    deployment has used it (a node group of a deployment, a user of its FSx) since the idle
    teardown first found it ACTIVE and unused, that many minutes ago."""
    if cluster is None:
        return QuietVerdict(False, "gone", None)
    tags = cluster.get("tags") or {}
    if not is_managed(tags):
        return QuietVerdict(False, "kept: not created by llm-on-eks, never removed", None)
    try:
        minutes = int(tags.get(QUIET_MINUTES_KEY) or 0)
    except ValueError:
        return QuietVerdict(False, f"kept: tag {QUIET_MINUTES_KEY}={tags[QUIET_MINUTES_KEY]!r} is not a number "
                                   f"of minutes", None)
    if minutes <= 0:
        return QuietVerdict(False, f"kept: its removal once unused is off (tag {QUIET_MINUTES_KEY}=<minutes>, "
                                   f"or deploy with cluster_quiet_minutes, turns it on)", None)
    if users:
        return QuietVerdict(False, f"kept: used by {', '.join(users)}", None)
    if cluster.get("status", "ACTIVE") != "ACTIVE":
        # CREATING: a deploy is making it (15 minutes on EKS) and makes its node group once it is
        # ACTIVE; UPDATING, DELETING: someone is at work on it. None of these is unused.
        return QuietVerdict(False, f"kept: {cluster['status']}", None)
    try:
        since = datetime.fromisoformat(tags[QUIET_SINCE_KEY])
    except (KeyError, ValueError):
        stamp = now.isoformat(timespec="seconds")
        return QuietVerdict(False, f"kept: unused from now; removed after {minutes} min without a deployment",
                            stamp)
    quiet = (now - since).total_seconds() / 60
    if quiet < minutes:
        return QuietVerdict(False, f"kept: unused {quiet:.0f} of {minutes} min", tags[QUIET_SINCE_KEY])
    return QuietVerdict(True, f"unused {quiet:.0f} min, removed after {minutes} min", tags[QUIET_SINCE_KEY])

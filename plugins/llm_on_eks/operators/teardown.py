"""The ``teardown_kube`` and ``teardown_aws`` task groups: the Helm release and the cluster objects
it leaves (Jobs, the token Secret, the FSx claim, our device plugin), then the node group, FSx,
the cluster's system node group and the cluster, and the artifact bucket.

What may be deleted is decided in ``llm_on_eks.kube.cleanup`` and ``llm_on_eks.aws.teardown``
from what the cluster and AWS report; these operators carry it out, or, in a dry run, report
exactly what they would delete and why each kept thing is kept (the same read-only calls). Something already gone is a success, deletes answered with
ResourceInUseException are retried with the provider's backoff, and every wait for "gone" runs
in the worker or deferred (the provider's EksDeleteNodegroupTrigger, our EksClusterDeletedTrigger
and FsxFileSystemDeletedTrigger). The opt-ins are templated, so a teardown DAG can take them
from its params.
"""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import Context
from airflow.sdk.exceptions import AirflowFailException

from llm_on_eks.aws import capacity, network, roles
from llm_on_eks.aws import eks as rules
from llm_on_eks.aws.teardown import (
    Decision,
    bucket_decision,
    cluster_decision,
    fsx_decision,
    made_with_cluster_decision,
    nodegroup_decision,
    own_user_tags,
    system_nodegroup_decision,
)
from llm_on_eks.kube.access import api_client, kubeconfig
from llm_on_eks.kube.cleanup import carry_out, plan_cleanup, release_decision, wait_pods_gone
from llm_on_eks.kube.helm import Helm
from llm_on_eks.naming import DEPLOYMENT_KEY, SYSTEM_ROLE, fsx_user, role_name
from llm_on_eks.operators.aws_wait import (
    EKS_HOOK,
    FSX_HOOK,
    S3_HOOK,
    AwsStepOperator,
    AwsWaitOperator,
    HookT,
    retry_in_use,
)
from llm_on_eks.operators.base import DeploymentStepOperator
from llm_on_eks.plan import is_true
from llm_on_eks.plan.types import ClusterRef, HfTokenRef, KubernetesRef, NodegroupRef, NodePoolRef, StorageRef, Target

if TYPE_CHECKING:  # the hooks' types, named as strings below: imported at run time only
    from airflow.providers.amazon.aws.hooks.eks import EksHook  # noqa: F401
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook  # noqa: F401

    from llm_on_eks.aws.fsx import FsxHook  # noqa: F401

# helm's own --timeout for the uninstall; then the pods get this long to go.
UNINSTALL_TIMEOUT_S = 600
PODS_GONE_S = 300


def _would(target: Target, result: dict[str, Any], delete: bool) -> dict[str, Any] | None:
    """In a dry run, what the step would do instead of doing it."""
    if not target["dry_run"]:
        return None
    return {**result, "action": ("would delete: " if delete else "") + result["action"]}


def _gone_before(target: Target, deployment_nodegroup: str, this: str | None) -> set[str]:
    """Node groups an earlier step of this teardown has deleted by the time a later one looks:
    none yet in a real run (they are gone), the deployment's own in a dry run, so that the dry
    run lists what the real run, in its order, would delete."""
    return {this} - {None} | ({deployment_nodegroup} if target["dry_run"] else set())


class _DeleteOperator(AwsWaitOperator[HookT]):
    """A delete that waits until its resource is gone: after a deferred wait, it is. A dry run
    makes the same read-only calls and decision and stops before the delete.

    :param cluster: the EKS cluster the deleted resource belongs to
    """

    template_fields = (*AwsWaitOperator.template_fields, "cluster")

    def __init__(self, *, cluster: ClusterRef, **kwargs) -> None:
        super().__init__(**kwargs)
        self.cluster = cluster

    def describe(self) -> Any:
        return self.run(None)

    def resume(self, context: Context, event: dict[str, Any]) -> Any:
        self.log.info("%s: deleted", self.gone())
        return {**self.gone(), "action": "deleted"}

    def gone(self) -> dict[str, Any]:
        """What this step deletes, as its result names it."""
        raise NotImplementedError


class DeleteNodegroupOperator(_DeleteOperator["EksHook"]):
    """Delete the node group ``nodegroup`` describes (the spec its ensure step created it from)
    and wait until it is gone: the deployment's accelerator group when it carries the
    deployment's tags; the cluster's system group only with the cluster (``delete_cluster``, the
    cluster is llm-on-eks's, no other node group left on it). Once the accelerator group is gone
    (or was already), the launch template made for its capacity reservation goes too, when it
    carries the deployment's tag.

    :param nodegroup: the node group to delete: its name, and the tags that say it is ours
    :param opted_in: the teardown's switch for this group (delete_nodegroup for the accelerator
        group, delete_cluster for the system group); may be a rendered template
    :param deployment_nodegroup: for the system group, the deployment's node group, which the
        step before deletes (a dry run counts it gone); default ``nodegroup``
    """

    template_fields = (*_DeleteOperator.template_fields, "nodegroup", "opted_in", "deployment_nodegroup")
    aws_hook_class = EKS_HOOK
    WAIT = (30, 60)

    def __init__(self, *, nodegroup: NodegroupRef, opted_in: Any = True,
                 deployment_nodegroup: NodegroupRef | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.nodegroup = nodegroup
        self.opted_in = opted_in
        self.deployment_nodegroup = deployment_nodegroup or nodegroup

    def gone(self) -> dict[str, Any]:
        return {"nodegroup": self.nodegroup["name"]}

    def decide(self, found: dict[str, Any] | None) -> Any:
        if self.nodegroup["role"] != SYSTEM_ROLE:
            decision = nodegroup_decision(found, self.nodegroup["tags"][DEPLOYMENT_KEY])
            if decision.delete and not is_true(self.opted_in):
                return Decision(False, "kept: delete_nodegroup is off")
            return decision
        eks, cluster_name = self.hook.conn, self.cluster["name"]
        cluster = rules.describe_cluster(eks, cluster_name) if found else None
        gone = _gone_before(self.target, self.deployment_nodegroup["name"], self.nodegroup["name"])
        others = [n for n in rules.list_nodegroups(eks, cluster_name) if n not in gone] if cluster else []
        return system_nodegroup_decision(found, cluster, others, is_true(self.opted_in))

    def run(self, context: Context) -> Any:
        from airflow.providers.amazon.aws.triggers.eks import EksDeleteNodegroupTrigger

        eks, cluster, name = self.hook.conn, self.cluster["name"], self.nodegroup["name"]
        found = rules.describe_nodegroup(eks, cluster, name)
        decision = self.decide(found)
        # The launch template goes with the node group, or after it when the node group is gone
        # already (a create refused after the template was made), when the switch is on.
        template_goes = is_true(self.opted_in) and (decision.delete or found is None)
        if would := _would(self.target, {"nodegroup": name, "action": decision.reason}, decision.delete):
            return {**would, **(self.launch_template() if template_goes else {})}
        if not decision.delete:
            self.log.info("node group %s/%s: %s", cluster, name, decision.reason)
            return {"nodegroup": name, "action": decision.reason, **(self.launch_template() if template_goes else {})}
        if found["status"] != "DELETING":
            self.log.info("deleting node group %s/%s", cluster, name)
            retry_in_use(self.log, lambda: eks.delete_nodegroup(clusterName=cluster, nodegroupName=name),
                         eks.exceptions.ResourceNotFoundException)
        self.wait(context, trigger=EksDeleteNodegroupTrigger, ids={"cluster_name": cluster, "nodegroup_name": name},
                  waiter=eks.get_waiter("nodegroup_deleted"), args={"clusterName": cluster, "nodegroupName": name},
                  what="node group gone", status_args=["nodegroup.status"])
        return self.resume(context, {})

    def resume(self, context: Context, event: dict[str, Any]) -> Any:
        return {**super().resume(context, event), **self.launch_template()}

    def launch_template(self) -> dict[str, Any]:
        """The launch template of the node group's name, gone or kept, for the step's result
        (nothing when there is none: the system group, a node group on on-demand capacity)."""
        name = self.nodegroup["launch_template"]
        removed = name and capacity.remove_launch_template(self.client("ec2"), name,
                                                           self.nodegroup["tags"][DEPLOYMENT_KEY], self.log,
                                                           self.target["dry_run"])
        return {"launch_template": removed} if removed else {}


class DeleteFsxOperator(_DeleteOperator["FsxHook"]):
    """Withdraw the deployment from the cluster's FSx file system; delete the file system when
    opted in and nobody else uses it.

    :param storage: the storage section: the file system's name (None: the plan has none)
    :param delete_fsx: the teardown's switch for the file system; may be a rendered template
    """

    template_fields = (*_DeleteOperator.template_fields, "storage", "delete_fsx")
    aws_hook_class = FSX_HOOK
    WAIT = (30, 60)

    def __init__(self, *, storage: StorageRef, delete_fsx: Any = False, **kwargs) -> None:
        super().__init__(**kwargs)
        self.storage = storage
        self.delete_fsx = delete_fsx

    def gone(self) -> dict[str, Any]:
        return {"file_system": self.storage["fsx"]["name"]}

    def run(self, context: Context) -> Any:
        from llm_on_eks.triggers.fsx import FsxFileSystemDeletedTrigger

        spec = self.storage["fsx"]
        if spec is None:
            # Not a skip: the steps after this one run only when every step before succeeded.
            return {"file_system": None, "action": "none in this plan"}
        hook = self.hook
        found = hook.find_file_systems(spec["name"], self.cluster["name"])
        if len(found) > 1:
            raise AirflowFailException(f"{len(found)} file systems tagged {spec['name']}: "
                                       f"{[f['FileSystemId'] for f in found]}; sort them out by hand")
        fs = found[0] if found else None
        user = fsx_user(self.access["namespace"], self.target["deployment"]) if self.target["deployment"] else None
        decision = fsx_decision(fs, user, is_true(self.delete_fsx))
        if would := _would(self.target, {"file_system": spec["name"], "action": decision.reason}, decision.delete):
            return would
        if fs is not None and own_user_tags(fs, user):
            hook.untag(fs["ResourceARN"], own_user_tags(fs, user))
        if not decision.delete:
            self.log.info("FSx %s: %s", spec["name"], decision.reason)
            return {"file_system": spec["name"], "file_system_id": fs and fs["FileSystemId"],
                    "action": decision.reason}
        fs_id = fs["FileSystemId"]
        if fs.get("Lifecycle") != "DELETING":
            self.log.info("deleting FSx %s (%s), no final backup: the weights live in S3", fs_id, spec["name"])
            hook.delete_file_system(fs_id)
        self.wait(context, trigger=FsxFileSystemDeletedTrigger, ids={"file_system_id": fs_id},
                  waiter=hook.get_waiter("file_system_deleted"), args={"FileSystemIds": [fs_id]},
                  what="file system gone", status_args=["FileSystems[0].Lifecycle"])
        return {**self.resume(context, {}), "file_system_id": fs_id}


class DeleteClusterOperator(_DeleteOperator["EksHook"]):
    """Delete the cluster only if llm-on-eks created it, the caller opted in, and no node group
    remains on it. Add-ons go with it.

    :param nodegroup: the deployment's node group, deleted by an earlier step (a dry run counts it gone)
    :param system_nodegroup: the cluster's system node group, deleted just before the cluster
    :param delete_cluster: the teardown's switch for the cluster; may be a rendered template
    """

    template_fields = (*_DeleteOperator.template_fields, "nodegroup", "system_nodegroup", "delete_cluster")
    aws_hook_class = EKS_HOOK
    WAIT = (30, 60)

    def __init__(self, *, nodegroup: NodegroupRef, system_nodegroup: NodegroupRef, delete_cluster: Any = False,
                 **kwargs) -> None:
        super().__init__(**kwargs)
        self.nodegroup = nodegroup
        self.system_nodegroup = system_nodegroup
        self.delete_cluster = delete_cluster

    def gone(self) -> dict[str, Any]:
        return {"cluster": self.cluster["name"]}

    def run(self, context: Context) -> Any:
        from llm_on_eks.triggers.eks import EksClusterDeletedTrigger

        eks, name, opted_in = self.hook.conn, self.cluster["name"], is_true(self.delete_cluster)
        cluster = rules.describe_cluster(eks, name)
        remaining = rules.list_nodegroups(eks, name) if cluster else []
        # Name what keeps the cluster: another deployment's node group, not the system one left
        # with it (delete_nodegroup of the system spec keeps it exactly while such a group remains).
        remaining = [n for n in remaining if n not in _gone_before(self.target, self.nodegroup["name"], None)]
        system = self.system_nodegroup["name"]
        others = [n for n in remaining if n != system]
        # A dry run has not deleted the system node group the step before would delete.
        if self.target["dry_run"] and system in remaining and system_nodegroup_decision(
                rules.describe_nodegroup(eks, name, system), cluster, others, opted_in).delete:
            remaining = others
        remaining = others or remaining
        decision = cluster_decision(cluster, remaining, opted_in)
        if would := _would(self.target, {"cluster": name, "action": decision.reason}, decision.delete):
            return would
        if not decision.delete:
            self.log.info("EKS cluster %s: %s", name, decision.reason)
            return {"cluster": name, "action": decision.reason}
        self.log.info("deleting EKS cluster %s (%s)", name, decision.reason)
        retry_in_use(self.log, lambda: eks.delete_cluster(name=name), eks.exceptions.ResourceNotFoundException)
        self.wait(context, trigger=EksClusterDeletedTrigger, ids={"cluster_name": name},
                  waiter=eks.get_waiter("cluster_deleted"), args={"name": name}, what="cluster gone",
                  status_args=["cluster.status"])
        return self.resume(context, {})


class _GoesWithClusterOperator(AwsStepOperator["EksHook"]):
    """Delete what was made with the cluster, once the cluster is gone (a dry run, in which the
    step before deleted nothing, counts the cluster gone when that step would delete it).

    :param cluster: the cluster it was made with
    :param delete_cluster: the teardown's switch for the cluster; may be a rendered template
    """

    template_fields = (*AwsStepOperator.template_fields, "cluster", "delete_cluster")
    aws_hook_class = EKS_HOOK

    def __init__(self, *, cluster: ClusterRef, delete_cluster: Any = False, **kwargs) -> None:
        super().__init__(**kwargs)
        self.cluster = cluster
        self.delete_cluster = delete_cluster

    def describe(self) -> Any:
        return self.run(None)

    @cached_property
    def remaining_cluster(self) -> dict[str, Any] | None:
        """The cluster as the step before left it (looked up once, for every resource decided)."""
        cluster = rules.describe_cluster(self.hook.conn, self.cluster["name"])
        if self.target["dry_run"] and cluster is not None and cluster_decision(cluster, [], True).delete:
            return None
        return cluster

    def decide(self, found: bool) -> Decision:
        return made_with_cluster_decision(found, self.remaining_cluster, is_true(self.delete_cluster))


class DeleteNetworkOperator(_GoesWithClusterOperator):
    """The VPC, subnets, gateways and route tables made with the cluster (``llm_on_eks.aws.network``)."""

    def run(self, context: Context) -> Any:
        ec2, name = self.client("ec2"), self.cluster["name"]
        vpc = network.find_vpc(ec2, name)
        decision = self.decide(vpc is not None)
        result = {"vpc": vpc and vpc["VpcId"], "action": decision.reason}
        if would := _would(self.target, result, decision.delete):
            return would
        if not decision.delete:
            self.log.info("network of %s: %s", name, decision.reason)
            return result
        return {**result, "action": "deleted", "deleted": network.delete_network(ec2, name, vpc, self.log)}


class DeleteRolesOperator(_GoesWithClusterOperator):
    """The cluster's and the nodes' IAM roles made with the cluster (``llm_on_eks.aws.roles``)."""

    def run(self, context: Context) -> Any:
        iam, name, region = self.client("iam"), self.cluster["name"], self.aws["region"]
        results = {}
        for kind in roles.ROLES:
            role = role_name(name, region, kind)
            try:
                found = iam.get_role(RoleName=role)["Role"]
            except iam.exceptions.NoSuchEntityException:
                found = None
            ours = found is not None and roles.is_ours(found, name, region)
            decision = self.decide(ours)
            results[kind] = {"role": role, "action": decision.reason}
            if found is not None and not ours:
                results[kind]["action"] = "kept: not llm-on-eks's for this cluster"
            elif would := _would(self.target, results[kind], decision.delete):
                results[kind] = would
            elif decision.delete:
                roles.delete_role(iam, role, self.log)
                results[kind]["action"] = "deleted"
        return results


class DeleteArtifactsOperator(AwsStepOperator["S3Hook"]):
    """Keep the artifact bucket unless opted in; then empty and delete it if llm-on-eks made it
    for this cluster (the target's).

    :param storage: the storage section: the artifact bucket's name
    :param delete_artifacts: the teardown's switch for the bucket; may be a rendered template
    """

    template_fields = (*AwsStepOperator.template_fields, "storage", "delete_artifacts")
    aws_hook_class = S3_HOOK

    def __init__(self, *, storage: StorageRef, delete_artifacts: Any = False, **kwargs) -> None:
        super().__init__(**kwargs)
        self.storage = storage
        self.delete_artifacts = delete_artifacts

    def describe(self) -> Any:
        return self.run(None)

    def run(self, context: Context) -> Any:
        from botocore.exceptions import ClientError

        bucket, s3 = self.storage["artifact_bucket"], self.hook.conn
        try:
            tags = {t["Key"]: t["Value"] for t in s3.get_bucket_tagging(Bucket=bucket)["TagSet"]}
        except ClientError as exc:
            code = exc.response["Error"]["Code"]
            if code == "NoSuchBucket":
                tags = None
            elif code == "NoSuchTagSet":
                tags = {}
            else:
                raise
        decision = bucket_decision(tags, self.access["cluster"], is_true(self.delete_artifacts))
        if would := _would(self.target, {"bucket": bucket, "action": decision.reason}, decision.delete):
            return would
        if not decision.delete:
            self.log.info("S3 bucket %s: %s", bucket, decision.reason)
            return {"bucket": bucket, "action": decision.reason}
        deleted = 0
        for _ in range(10_000):  # 1000 keys a page: ten million objects at most
            page = s3.list_objects_v2(Bucket=bucket)
            keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            if not keys:
                break
            s3.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})
            deleted += len(keys)
        s3.delete_bucket(Bucket=bucket)
        self.log.info("S3 bucket %s deleted with its %s objects", bucket, deleted)
        return {"bucket": bucket, "action": "deleted", "objects": deleted}


class UninstallReleaseOperator(DeploymentStepOperator):
    """Uninstall the deployment's Helm release (only one made from our chart, with our label),
    with helm waiting for its resources, then wait until its pods are gone: the node group must
    not go while a pod still writes to it. The release is named after the target's deployment,
    in the target's namespace."""

    def describe(self) -> Any:
        return self.run(None)

    def run(self, context: Context) -> Any:
        release, namespace = self.target["deployment"], self.access["namespace"]
        with kubeconfig(self.access) as config:
            helm = Helm(config, namespace)
            found = helm.release(release)
            values = helm.values(release, found["revision"]) if found else None
            delete, why = release_decision(found, values)
            result = {"release": release, "namespace": namespace, "action": why}
            if would := _would(self.target, result, delete):
                return would
            if not delete:
                self.log.info("release %s/%s: %s", namespace, release, why)
                return result
            self.log.info("uninstalling release %s/%s (%s)", namespace, release, why)
            helm.uninstall(release, UNINSTALL_TIMEOUT_S)
        with api_client(self.access) as api:
            left = wait_pods_gone(api, namespace, release, PODS_GONE_S)
        if left:
            raise AirflowFailException(f"release {release} uninstalled but pods {left} are still there after "
                                       f"{PODS_GONE_S} s: the node group is kept until they are gone")
        return {**result, "action": "uninstalled"}


class DeleteClusterObjectsOperator(DeploymentStepOperator):
    """What the release leaves in the cluster: its Jobs; the token Secret and FSx claim when no
    other deployment in the namespace uses them; our device plugin when no other deployment's
    nodes of that accelerator remain; the NodePool made for it (``llm_on_eks.kube.cleanup`` decides).

    :param kubernetes: the deployment's namespace
    :param storage: the storage section: the FSx claim's name
    :param hf_token: the HF token's Kubernetes Secret
    :param nodepool: the NodePool an EKS Auto Mode deployment's nodes come from
    """

    template_fields = (*DeploymentStepOperator.template_fields, "kubernetes", "storage", "hf_token", "nodepool")

    def __init__(self, *, kubernetes: KubernetesRef, storage: StorageRef, hf_token: HfTokenRef, nodepool: NodePoolRef,
                 **kwargs) -> None:
        super().__init__(**kwargs)
        self.kubernetes = kubernetes
        self.storage = storage
        self.hf_token = hf_token
        self.nodepool = nodepool

    def describe(self) -> Any:
        return self.run(None)

    def run(self, context: Context) -> Any:
        from kubernetes.client.exceptions import ApiException

        namespace = self.kubernetes["namespace"]
        with api_client(self.access) as api:
            try:
                actions = plan_cleanup(api, namespace, self.target["deployment"],
                                       self.hf_token["k8s_secret"]["name"], self.storage["fsx"]["pvc_name"],
                                       self.nodepool["name"])
            except ApiException as exc:
                if exc.status != 404:
                    raise
                return {"objects": [], "action": f"namespace {namespace} is gone"}
            if self.target["dry_run"]:
                return {"objects": [{**a, "result": ("would delete: " if a["delete"] else "") + a["why"]}
                                    for a in actions]}
            done = carry_out(api, namespace, actions)
        for action in done:
            self.log.info("%s %s: %s", action["kind"], action["name"], action["result"])
        return {"objects": done}

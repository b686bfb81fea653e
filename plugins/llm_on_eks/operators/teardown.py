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

from typing import Any

from llm_on_eks.operators.aws_wait import AwsWaitOperator, retry_in_use
from llm_on_eks.operators.base import PlanStepOperator
from llm_on_eks.plan import Plan

# helm's own --timeout for the uninstall; then the pods get this long to go.
UNINSTALL_TIMEOUT_S = 600
PODS_GONE_S = 300


def _flag(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes", "on")
    return bool(value)


def _would(plan: Plan, result: dict[str, Any], delete: bool) -> dict[str, Any] | None:
    """In a dry run, what the step would do instead of doing it."""
    if not plan["dry_run"]:
        return None
    return {**result, "action": ("would delete: " if delete else "") + result["action"]}


def _gone_before(plan: Plan, this: str | None) -> set[str]:
    """Node groups an earlier step of this teardown has deleted by the time a later one looks:
    none yet in a real run (they are gone), the deployment's own in a dry run, so that the dry
    run lists what the real run, in its order, would delete."""
    return {this} - {None} | ({plan["nodegroup"]["name"]} if plan["dry_run"] else set())


class _DeleteOperator(AwsWaitOperator):
    """A delete that waits until its resource is gone: after a deferred wait, it is. A dry run
    makes the same read-only calls and decision and stops before the delete."""

    def describe(self, plan: Plan) -> Any:
        return self.run(plan, None)

    def resume(self, plan: Plan, context: Any, event: dict[str, Any]) -> Any:
        self.log.info("%s: deleted", self.gone(plan))
        return {**self.gone(plan), "action": "deleted"}

    def gone(self, plan: Plan) -> dict[str, Any]:
        """What this step deletes, as its result names it."""
        raise NotImplementedError


class DeleteNodegroupOperator(_DeleteOperator):
    """Delete the node group ``nodegroup`` describes (the spec its ensure step created it from)
    and wait until it is gone: the deployment's accelerator group when it carries the
    deployment's tags; the cluster's system group only with the cluster (``delete_cluster``, the
    cluster is llm-on-eks's, no other node group left on it)."""

    template_fields = (*AwsWaitOperator.template_fields, "nodegroup", "opted_in")
    WAIT = (30, 60)

    def __init__(self, *, nodegroup: Any, opted_in: Any = True, **kwargs) -> None:
        """``opted_in``: the teardown's switch for this group (delete_nodegroup for the
        accelerator group, delete_cluster for the system group)."""
        super().__init__(**kwargs)
        self.nodegroup = nodegroup
        self.opted_in = opted_in

    def gone(self, plan: Plan) -> dict[str, Any]:
        return {"nodegroup": self.nodegroup["name"]}

    def decide(self, eks: Any, plan: Plan, found: dict[str, Any] | None) -> Any:
        from llm_on_eks.aws import eks as rules
        from llm_on_eks.aws.teardown import Decision, nodegroup_decision, system_nodegroup_decision
        from llm_on_eks.naming import DEPLOYMENT_KEY, SYSTEM_ROLE

        if self.nodegroup["role"] != SYSTEM_ROLE:
            decision = nodegroup_decision(found, self.nodegroup["tags"][DEPLOYMENT_KEY])
            if decision.delete and not _flag(self.opted_in):
                return Decision(False, "kept: delete_nodegroup is off")
            return decision
        cluster_name, name = plan["cluster"]["name"], self.nodegroup["name"]
        cluster = rules.describe_cluster(eks, cluster_name) if found else None
        others = [n for n in rules.list_nodegroups(eks, cluster_name) if n not in _gone_before(plan, name)] \
            if cluster else []
        return system_nodegroup_decision(found, cluster, others, _flag(self.opted_in))

    def run(self, plan: Plan, context: Any) -> Any:
        from airflow.providers.amazon.aws.hooks.eks import EksHook
        from airflow.providers.amazon.aws.triggers.eks import EksDeleteNodegroupTrigger

        from llm_on_eks.aws import eks as rules

        cluster, name = plan["cluster"]["name"], self.nodegroup["name"]
        eks = EksHook(**self.aws(plan)).conn
        found = rules.describe_nodegroup(eks, cluster, name)
        decision = self.decide(eks, plan, found)
        if would := _would(plan, {"nodegroup": name, "action": decision.reason}, decision.delete):
            return would
        if not decision.delete:
            self.log.info("node group %s/%s: %s", cluster, name, decision.reason)
            return {"nodegroup": name, "action": decision.reason}
        if found["status"] != "DELETING":
            self.log.info("deleting node group %s/%s", cluster, name)
            retry_in_use(self.log, lambda: eks.delete_nodegroup(clusterName=cluster, nodegroupName=name),
                         eks.exceptions.ResourceNotFoundException)
        self.wait(plan, context, trigger=EksDeleteNodegroupTrigger, ids={"cluster_name": cluster, "nodegroup_name": name},
                  waiter=eks.get_waiter("nodegroup_deleted"), args={"clusterName": cluster, "nodegroupName": name},
                  what="node group gone", status_args=["nodegroup.status"])
        return self.resume(plan, context, {})


class DeleteFsxOperator(_DeleteOperator):
    """Withdraw the deployment from the cluster's FSx file system; delete the file system when
    opted in and nobody else uses it."""

    template_fields = (*AwsWaitOperator.template_fields, "delete_fsx")
    WAIT = (30, 60)

    def __init__(self, *, delete_fsx: Any = False, **kwargs) -> None:
        super().__init__(**kwargs)
        self.delete_fsx = delete_fsx

    def gone(self, plan: Plan) -> dict[str, Any]:
        return {"file_system": plan["storage"]["fsx"]["name"]}

    def run(self, plan: Plan, context: Any) -> Any:
        from airflow.sdk.exceptions import AirflowFailException

        from llm_on_eks.aws.fsx import FsxHook
        from llm_on_eks.aws.teardown import fsx_decision, own_user_tags
        from llm_on_eks.naming import fsx_user
        from llm_on_eks.triggers.fsx import FsxFileSystemDeletedTrigger

        spec = plan["storage"]["fsx"]
        if spec is None:
            # Not a skip: the steps after this one run only when every step before succeeded.
            return {"file_system": None, "action": "none in this plan"}
        hook = FsxHook(**self.aws(plan))
        found = hook.find_file_systems(spec["name"], plan["cluster"]["name"])
        if len(found) > 1:
            raise AirflowFailException(f"{len(found)} file systems tagged {spec['name']}: "
                                       f"{[f['FileSystemId'] for f in found]}; sort them out by hand")
        fs = found[0] if found else None
        user = fsx_user(plan["kubernetes"]["namespace"], plan["deployment"])
        decision = fsx_decision(fs, user, _flag(self.delete_fsx))
        if would := _would(plan, {"file_system": spec["name"], "action": decision.reason}, decision.delete):
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
        self.wait(plan, context, trigger=FsxFileSystemDeletedTrigger, ids={"file_system_id": fs_id},
                  waiter=hook.get_waiter("file_system_deleted"), args={"FileSystemIds": [fs_id]},
                  what="file system gone", status_args=["FileSystems[0].Lifecycle"])
        return {**self.resume(plan, context, {}), "file_system_id": fs_id}


class DeleteClusterOperator(_DeleteOperator):
    """Delete the cluster only if llm-on-eks created it, the caller opted in, and no node group
    remains on it. Add-ons go with it."""

    template_fields = (*AwsWaitOperator.template_fields, "delete_cluster")
    WAIT = (30, 60)

    def __init__(self, *, delete_cluster: Any = False, **kwargs) -> None:
        super().__init__(**kwargs)
        self.delete_cluster = delete_cluster

    def gone(self, plan: Plan) -> dict[str, Any]:
        return {"cluster": plan["cluster"]["name"]}

    def run(self, plan: Plan, context: Any) -> Any:
        from airflow.providers.amazon.aws.hooks.eks import EksHook

        from llm_on_eks.aws import eks as rules
        from llm_on_eks.aws.teardown import cluster_decision, system_nodegroup_decision
        from llm_on_eks.triggers.eks import EksClusterDeletedTrigger

        name = plan["cluster"]["name"]
        eks = EksHook(**self.aws(plan)).conn
        cluster = rules.describe_cluster(eks, name)
        remaining = rules.list_nodegroups(eks, name) if cluster else []
        # Name what keeps the cluster: another deployment's node group, not the system one left
        # with it (delete_nodegroup of the system spec keeps it exactly while such a group remains).
        remaining = [n for n in remaining if n not in _gone_before(plan, None)]
        system = plan["system_nodegroup"]["name"]
        others = [n for n in remaining if n != system]
        # A dry run has not deleted the system node group the step before would delete.
        if plan["dry_run"] and system in remaining and system_nodegroup_decision(
                rules.describe_nodegroup(eks, name, system), cluster, others, _flag(self.delete_cluster)).delete:
            remaining = others
        remaining = others or remaining
        decision = cluster_decision(cluster, remaining, _flag(self.delete_cluster))
        if would := _would(plan, {"cluster": name, "action": decision.reason}, decision.delete):
            return would
        if not decision.delete:
            self.log.info("EKS cluster %s: %s", name, decision.reason)
            return {"cluster": name, "action": decision.reason}
        self.log.info("deleting EKS cluster %s (%s)", name, decision.reason)
        retry_in_use(self.log, lambda: eks.delete_cluster(name=name), eks.exceptions.ResourceNotFoundException)
        self.wait(plan, context, trigger=EksClusterDeletedTrigger, ids={"cluster_name": name},
                  waiter=eks.get_waiter("cluster_deleted"), args={"name": name}, what="cluster gone",
                  status_args=["cluster.status"])
        return self.resume(plan, context, {})


class DeleteArtifactsOperator(PlanStepOperator):
    """Keep the artifact bucket unless opted in; then empty and delete it if llm-on-eks made it
    for this cluster."""

    template_fields = (*PlanStepOperator.template_fields, "delete_artifacts")

    def __init__(self, *, delete_artifacts: Any = False, **kwargs) -> None:
        super().__init__(**kwargs)
        self.delete_artifacts = delete_artifacts

    def describe(self, plan: Plan) -> Any:
        return self.run(plan, None)

    def run(self, plan: Plan, context: Any) -> Any:
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook
        from botocore.exceptions import ClientError

        from llm_on_eks.aws.teardown import bucket_decision

        bucket = plan["storage"]["artifact_bucket"]
        s3 = S3Hook(**AwsWaitOperator.aws(plan)).get_conn()
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
        decision = bucket_decision(tags, plan["cluster"]["name"], _flag(self.delete_artifacts))
        if would := _would(plan, {"bucket": bucket, "action": decision.reason}, decision.delete):
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


class UninstallReleaseOperator(PlanStepOperator):
    """Uninstall the deployment's Helm release (only one made from our chart, with our label),
    with helm waiting for its resources, then wait until its pods are gone: the node group must
    not go while a pod still writes to it."""

    def describe(self, plan: Plan) -> Any:
        return self.run(plan, None)

    def run(self, plan: Plan, context: Any) -> Any:
        from airflow.sdk.exceptions import AirflowFailException

        from llm_on_eks.kube.access import api_client, cluster_access, kubeconfig_path
        from llm_on_eks.kube.cleanup import release_decision, wait_pods_gone
        from llm_on_eks.kube.helm import Helm

        kube = plan["kubernetes"]
        release, namespace = kube["release"], kube["namespace"]
        with kubeconfig_path(cluster_access(plan)) as kubeconfig:
            helm = Helm(kubeconfig, namespace)
            found = helm.release(release)
            values = helm.values(release, found["revision"]) if found else None
            delete, why = release_decision(found, values)
            result = {"release": release, "namespace": namespace, "action": why}
            if would := _would(plan, result, delete):
                return would
            if not delete:
                self.log.info("release %s/%s: %s", namespace, release, why)
                return result
            self.log.info("uninstalling release %s/%s (%s)", namespace, release, why)
            helm.uninstall(release, UNINSTALL_TIMEOUT_S)
        with api_client(cluster_access(plan)) as api:
            left = wait_pods_gone(api, namespace, release, PODS_GONE_S)
        if left:
            raise AirflowFailException(f"release {release} uninstalled but pods {left} are still there after "
                                       f"{PODS_GONE_S} s: the node group is kept until they are gone")
        return {**result, "action": "uninstalled"}


class DeleteClusterObjectsOperator(PlanStepOperator):
    """What the release leaves in the cluster: its Jobs; the token Secret and FSx claim when no
    other deployment in the namespace uses them; our device plugin when no other deployment's
    nodes of that accelerator remain (``llm_on_eks.kube.cleanup`` decides)."""

    def describe(self, plan: Plan) -> Any:
        return self.run(plan, None)

    def run(self, plan: Plan, context: Any) -> Any:
        from kubernetes.client.exceptions import ApiException

        from llm_on_eks.kube.access import api_client, cluster_access
        from llm_on_eks.kube.cleanup import carry_out, plan_cleanup

        kube = plan["kubernetes"]
        with api_client(cluster_access(plan)) as api:
            try:
                actions = plan_cleanup(api, kube["namespace"], plan["deployment"],
                                       plan["hf_token"]["k8s_secret"]["name"], plan["storage"]["fsx"]["pvc_name"])
            except ApiException as exc:
                if exc.status != 404:
                    raise
                return {"objects": [], "action": f"namespace {kube['namespace']} is gone"}
            if plan["dry_run"]:
                return {"objects": [{**a, "result": ("would delete: " if a["delete"] else "") + a["why"]}
                                    for a in actions]}
            done = carry_out(api, kube["namespace"], actions)
        for action in done:
            self.log.info("%s %s: %s", action["kind"], action["name"], action["result"])
        return {"objects": done}

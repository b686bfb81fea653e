"""The AWS half of a teardown: node group, FSx, the cluster's system node group and the
cluster, artifact bucket.

What may be deleted is decided in ``llm_on_eks.aws.teardown`` from what AWS reports; these
operators carry it out. Something already gone is a success, deletes answered with
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


def _flag(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes", "on")
    return bool(value)


class _DeleteOperator(AwsWaitOperator):
    """A delete that waits until its resource is gone: after a deferred wait, it is."""

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

    template_fields = (*AwsWaitOperator.template_fields, "nodegroup", "delete_cluster")
    WAIT = (30, 60)

    def __init__(self, *, nodegroup: Any, delete_cluster: Any = False, **kwargs) -> None:
        super().__init__(**kwargs)
        self.nodegroup = nodegroup
        self.delete_cluster = delete_cluster

    def gone(self, plan: Plan) -> dict[str, Any]:
        return {"nodegroup": self.nodegroup["name"]}

    def describe(self, plan: Plan) -> Any:
        from llm_on_eks.naming import SYSTEM_ROLE

        kwargs = {"clusterName": plan["cluster"]["name"], "nodegroupName": self.nodegroup["name"]}
        described = {"if_tagged": dict(self.nodegroup["tags"]),
                     "delete": {"service": "eks", "operation": "delete_nodegroup", "kwargs": kwargs},
                     "wait_for": "node group gone", "deferrable": self.deferrable}
        if self.nodegroup["role"] == SYSTEM_ROLE:
            described.update(delete_if="delete_cluster, the cluster is llm-on-eks's, no other node group left",
                             delete_cluster=_flag(self.delete_cluster))
        return described

    def decide(self, eks: Any, plan: Plan, found: dict[str, Any] | None) -> Any:
        from llm_on_eks.aws import eks as rules
        from llm_on_eks.aws.teardown import nodegroup_decision, system_nodegroup_decision
        from llm_on_eks.naming import DEPLOYMENT_KEY, SYSTEM_ROLE

        if self.nodegroup["role"] != SYSTEM_ROLE:
            return nodegroup_decision(found, self.nodegroup["tags"][DEPLOYMENT_KEY])
        cluster_name, name = plan["cluster"]["name"], self.nodegroup["name"]
        cluster = rules.describe_cluster(eks, cluster_name) if found else None
        others = [n for n in rules.list_nodegroups(eks, cluster_name) if n != name] if cluster else []
        return system_nodegroup_decision(found, cluster, others, _flag(self.delete_cluster))

    def run(self, plan: Plan, context: Any) -> Any:
        from airflow.providers.amazon.aws.hooks.eks import EksHook
        from airflow.providers.amazon.aws.triggers.eks import EksDeleteNodegroupTrigger

        from llm_on_eks.aws import eks as rules

        cluster, name = plan["cluster"]["name"], self.nodegroup["name"]
        eks = EksHook(**self.aws(plan)).conn
        found = rules.describe_nodegroup(eks, cluster, name)
        decision = self.decide(eks, plan, found)
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

    def enabled(self, plan: Plan) -> bool:
        return plan["storage"]["fsx"] is not None

    def gone(self, plan: Plan) -> dict[str, Any]:
        return {"file_system": plan["storage"]["fsx"]["name"]}

    def describe(self, plan: Plan) -> Any:
        return {"find": {"service": "fsx", "operation": "describe_file_systems",
                         "filter_by_tag": {"Name": plan["storage"]["fsx"]["name"]}},
                "untag": f"used-by/{plan['deployment']}",
                "delete_if": "delete_fsx and no other deployment's used-by tag", "delete_fsx": _flag(self.delete_fsx),
                "deferrable": self.deferrable}

    def run(self, plan: Plan, context: Any) -> Any:
        from airflow.sdk.exceptions import AirflowFailException

        from llm_on_eks.aws.fsx import FsxHook
        from llm_on_eks.aws.teardown import fsx_decision, own_user_tags
        from llm_on_eks.triggers.fsx import FsxFileSystemDeletedTrigger

        spec = plan["storage"]["fsx"]
        hook = FsxHook(**self.aws(plan))
        found = hook.find_file_systems(spec["name"], plan["cluster"]["name"])
        if len(found) > 1:
            raise AirflowFailException(f"{len(found)} file systems tagged {spec['name']}: "
                                       f"{[f['FileSystemId'] for f in found]}; sort them out by hand")
        fs = found[0] if found else None
        if fs is not None and own_user_tags(fs, plan["deployment"]):
            hook.untag(fs["ResourceARN"], own_user_tags(fs, plan["deployment"]))
        decision = fsx_decision(fs, plan["deployment"], _flag(self.delete_fsx))
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

    def describe(self, plan: Plan) -> Any:
        return {"delete_if": "delete_cluster, tagged managed-by llm-on-eks, no node groups left",
                "delete_cluster": _flag(self.delete_cluster),
                "delete": {"service": "eks", "operation": "delete_cluster", "kwargs": {"name": plan["cluster"]["name"]}},
                "deferrable": self.deferrable}

    def run(self, plan: Plan, context: Any) -> Any:
        from airflow.providers.amazon.aws.hooks.eks import EksHook

        from llm_on_eks.aws import eks as rules
        from llm_on_eks.aws.teardown import cluster_decision
        from llm_on_eks.triggers.eks import EksClusterDeletedTrigger

        name = plan["cluster"]["name"]
        eks = EksHook(**self.aws(plan)).conn
        cluster = rules.describe_cluster(eks, name)
        remaining = rules.list_nodegroups(eks, name) if cluster else []
        # Name what keeps the cluster: another deployment's node group, not the system one left
        # with it (delete_nodegroup of the system spec keeps it exactly while such a group remains).
        remaining = [n for n in remaining if n != plan["system_nodegroup"]["name"]] or remaining
        decision = cluster_decision(cluster, remaining, _flag(self.delete_cluster))
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
        return {"bucket": plan["storage"]["artifact_bucket"], "delete_artifacts": _flag(self.delete_artifacts),
                "delete_if": "delete_artifacts and tagged managed-by llm-on-eks for this cluster"}

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

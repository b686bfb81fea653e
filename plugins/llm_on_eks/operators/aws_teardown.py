"""AWS teardown steps of a deployment: node group, FSx, the cluster's system node group and the
cluster, artifact bucket.

What may be deleted is decided in ``llm_on_eks.aws.teardown`` from what AWS reports; these
operators carry it out. Something already gone is a success, deletes answered with
ResourceInUseException are retried with the provider's backoff, and every wait for "gone" runs
in the worker or deferred (the provider's EksDeleteNodegroupTrigger / EksDeleteClusterTrigger,
our FsxFileSystemDeletedTrigger). The opt-ins are templated, so a teardown DAG can take them
from its params.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from llm_on_eks.operators.aws_steps import _AwsStepOperator


def _flag(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes", "on")
    return bool(value)


def _retrying_in_use(log: Any, call, gone) -> bool:
    """Run ``call`` retrying ResourceInUseException with backoff; False when AWS says ``gone``."""
    import tenacity
    from airflow.providers.amazon.aws.utils import build_resource_in_use_retry_args

    try:
        for attempt in tenacity.Retrying(**build_resource_in_use_retry_args(log)):
            with attempt:
                call()
    except gone:
        return False
    return True


class DeleteNodegroupOperator(_AwsStepOperator):
    """Delete the deployment's node group and wait until it is gone."""

    WAIT = (30, 60)

    @staticmethod
    def target(plan: dict[str, Any]) -> dict[str, Any]:
        """The plan as this step sees it: the accelerator node group (a subclass names another)."""
        return plan

    def describe(self, plan: dict[str, Any]) -> Any:
        kwargs = {"clusterName": plan["cluster"]["name"], "nodegroupName": self.target(plan)["nodegroup"]["name"]}
        return {"if_tagged": {"deployment": plan["deployment"]},
                "delete": {"service": "eks", "operation": "delete_nodegroup", "kwargs": kwargs},
                "wait_for": "node group gone", "deferrable": self.deferrable}

    def decide(self, eks: Any, plan: dict[str, Any], found: dict[str, Any] | None) -> Any:
        from llm_on_eks.aws.teardown import nodegroup_decision

        return nodegroup_decision(found, plan["deployment"])

    def run(self, plan: dict[str, Any], context: Any) -> Any:
        from airflow.providers.amazon.aws.hooks.eks import EksHook
        from airflow.providers.amazon.aws.triggers.eks import EksDeleteNodegroupTrigger

        from llm_on_eks.aws import eks as rules

        plan = self.target(plan)
        cluster, name = plan["cluster"]["name"], plan["nodegroup"]["name"]
        eks = EksHook(**self.aws(plan)).conn
        found = rules.describe_nodegroup(eks, cluster, name)
        decision = self.decide(eks, plan, found)
        if not decision.delete:
            action = "deleted" if self._resume.get("waited") and found is None else decision.reason
            self.log.info("node group %s/%s: %s", cluster, name, action)
            return {"nodegroup": name, "action": action}
        if found["status"] != "DELETING":
            self.log.info("deleting node group %s/%s", cluster, name)
            _retrying_in_use(self.log, lambda: eks.delete_nodegroup(clusterName=cluster, nodegroupName=name),
                             eks.exceptions.ResourceNotFoundException)
        ids = {"cluster_name": cluster, "nodegroup_name": name}
        self.wait(plan, trigger=EksDeleteNodegroupTrigger, ids=ids, waiter=eks.get_waiter("nodegroup_deleted"),
                  args={"clusterName": cluster, "nodegroupName": name}, what="node group gone",
                  status_args=["nodegroup.status"], resume={})
        self.log.info("node group %s/%s deleted", cluster, name)
        return {"nodegroup": name, "action": "deleted"}


class DeleteSystemNodegroupOperator(DeleteNodegroupOperator):
    """Delete the cluster's shared system node group, only together with the cluster: opted in
    (``delete_cluster``), the cluster is llm-on-eks's, and no other node group is left on it."""

    template_fields = (*_AwsStepOperator.template_fields, "delete_cluster")

    def __init__(self, *, delete_cluster: Any = False, **kwargs) -> None:
        super().__init__(**kwargs)
        self.delete_cluster = delete_cluster

    @staticmethod
    def target(plan: dict[str, Any]) -> dict[str, Any]:
        from llm_on_eks.aws.api_calls import system_plan

        return system_plan(plan)

    def describe(self, plan: dict[str, Any]) -> Any:
        return {**super().describe(plan), "if_tagged": dict(self.target(plan)["tags"]),
                "delete_if": "delete_cluster, the cluster is llm-on-eks's, no other node group left",
                "delete_cluster": _flag(self.delete_cluster)}

    def decide(self, eks: Any, plan: dict[str, Any], found: dict[str, Any] | None) -> Any:
        from llm_on_eks.aws import eks as rules
        from llm_on_eks.aws.teardown import system_nodegroup_decision

        cluster_name, name = plan["cluster"]["name"], plan["nodegroup"]["name"]
        cluster = rules.describe_cluster(eks, cluster_name) if found else None
        others = [n for n in rules.list_nodegroups(eks, cluster_name) if n != name] if cluster else []
        return system_nodegroup_decision(found, cluster, others, _flag(self.delete_cluster))


class DeleteFsxOperator(_AwsStepOperator):
    """Withdraw the deployment from the cluster's FSx file system; delete the file system when
    opted in and nobody else uses it."""

    template_fields = (*_AwsStepOperator.template_fields, "delete_fsx")
    WAIT = (30, 60)

    def __init__(self, *, delete_fsx: Any = False, **kwargs) -> None:
        super().__init__(**kwargs)
        self.delete_fsx = delete_fsx

    def enabled(self, plan: dict[str, Any]) -> bool:
        return plan["storage"]["fsx"] is not None

    def describe(self, plan: dict[str, Any]) -> Any:
        return {"find": {"service": "fsx", "operation": "describe_file_systems",
                         "filter_by_tag": {"Name": plan["storage"]["fsx"]["name"]}},
                "untag": f"used-by/{plan['deployment']}",
                "delete_if": "delete_fsx and no other deployment's used-by tag", "delete_fsx": _flag(self.delete_fsx),
                "deferrable": self.deferrable}

    def run(self, plan: dict[str, Any], context: Any) -> Any:
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
            action = "deleted" if self._resume.get("waited") and fs is None else decision.reason
            self.log.info("FSx %s: %s", spec["name"], action)
            return {"file_system_id": fs and fs["FileSystemId"], "action": action}
        fs_id = fs["FileSystemId"]
        if fs.get("Lifecycle") != "DELETING":
            self.log.info("deleting FSx %s (%s), no final backup: the weights live in S3", fs_id, spec["name"])
            hook.delete_file_system(fs_id)
        self.wait(plan, trigger=FsxFileSystemDeletedTrigger, ids={"file_system_id": fs_id},
                  waiter=hook.get_waiter("file_system_deleted"), args={"FileSystemIds": [fs_id]},
                  what="file system gone", status_args=["FileSystems[0].Lifecycle"], resume={})
        self.log.info("FSx %s deleted", fs_id)
        return {"file_system_id": fs_id, "action": "deleted"}


class DeleteClusterOperator(_AwsStepOperator):
    """Delete the cluster only if llm-on-eks created it, the caller opted in, and no node group
    remains on it. Add-ons go with it."""

    template_fields = (*_AwsStepOperator.template_fields, "delete_cluster")
    WAIT = (30, 60)

    def __init__(self, *, delete_cluster: Any = False, **kwargs) -> None:
        super().__init__(**kwargs)
        self.delete_cluster = delete_cluster

    def describe(self, plan: dict[str, Any]) -> Any:
        return {"delete_if": "delete_cluster, tagged managed-by llm-on-eks, no node groups left",
                "delete_cluster": _flag(self.delete_cluster),
                "delete": {"service": "eks", "operation": "delete_cluster", "kwargs": {"name": plan["cluster"]["name"]}},
                "deferrable": self.deferrable}

    def run(self, plan: dict[str, Any], context: Any) -> Any:
        from airflow.providers.amazon.aws.hooks.eks import EksHook

        from llm_on_eks.aws import eks as rules
        from llm_on_eks.aws.api_calls import system_nodegroup_name
        from llm_on_eks.aws.teardown import cluster_decision

        name = plan["cluster"]["name"]
        eks = EksHook(**self.aws(plan)).conn
        cluster = rules.describe_cluster(eks, name)
        remaining = rules.list_nodegroups(eks, name) if cluster else []
        # Name what keeps the cluster: another deployment's node group, not the system one left
        # with it (delete_system_nodegroup keeps it exactly while such a group remains).
        system = system_nodegroup_name(name)
        remaining = [n for n in remaining if n != system] or remaining
        decision = cluster_decision(cluster, remaining, _flag(self.delete_cluster))
        if not decision.delete:
            self.log.info("EKS cluster %s: %s", name, decision.reason)
            return {"cluster": name, "action": decision.reason}
        if self.deferrable:
            # As the provider's EksDeleteClusterOperator does: the trigger deletes (retrying
            # ResourceInUseException) and waits, so the worker slot is free at once.
            from airflow.providers.amazon.aws.triggers.eks import EksDeleteClusterTrigger

            self.defer(trigger=EksDeleteClusterTrigger(cluster_name=name, waiter_delay=self.waiter_delay,
                                                       waiter_max_attempts=self.waiter_max_attempts,
                                                       force_delete_compute=False, **self.aws(plan)),
                       method_name="cluster_deleted",
                       timeout=timedelta(seconds=self.waiter_delay * self.waiter_max_attempts + 60))
        self.log.info("deleting EKS cluster %s (%s)", name, decision.reason)
        _retrying_in_use(self.log, lambda: eks.delete_cluster(name=name), eks.exceptions.ResourceNotFoundException)
        self.wait(plan, trigger=None, ids={}, waiter=eks.get_waiter("cluster_deleted"), args={"name": name},
                  what="cluster gone", status_args=["cluster.status"], resume={})
        return self.cluster_deleted(context, {"status": "deleted"})

    def cluster_deleted(self, context: Any, event: dict[str, Any] | None = None) -> Any:
        from airflow.sdk.exceptions import AirflowFailException

        if not event or event.get("status") != "deleted":
            raise AirflowFailException(f"EKS cluster {self.plan['cluster']['name']} was not deleted: {event}")
        self.log.info("EKS cluster %s deleted", self.plan["cluster"]["name"])
        return {"cluster": self.plan["cluster"]["name"], "action": "deleted"}


class DeleteArtifactsOperator(_AwsStepOperator):
    """Keep the artifact bucket unless opted in; then empty and delete it if llm-on-eks made it
    for this cluster."""

    template_fields = (*_AwsStepOperator.template_fields, "delete_artifacts")

    def __init__(self, *, delete_artifacts: Any = False, **kwargs) -> None:
        super().__init__(**kwargs)
        self.delete_artifacts = delete_artifacts

    def describe(self, plan: dict[str, Any]) -> Any:
        return {"bucket": plan["storage"]["artifact_bucket"], "delete_artifacts": _flag(self.delete_artifacts),
                "delete_if": "delete_artifacts and tagged managed-by llm-on-eks for this cluster"}

    def run(self, plan: dict[str, Any], context: Any) -> Any:
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook
        from botocore.exceptions import ClientError

        from llm_on_eks.aws.teardown import bucket_decision

        bucket = plan["storage"]["artifact_bucket"]
        s3 = S3Hook(**self.aws(plan)).get_conn()
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

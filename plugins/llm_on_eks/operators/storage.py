"""The ``storage`` task group: the artifact bucket, and FSx for Lustre linked to it.

Found by name and tags, adopted when they fit, created otherwise (see ``operators.provision``).
The bucket holds the Neuron compile cache and the weights FSx imports; the file system is one
per cluster, shared by its deployments through ``used-by`` tags.
"""

from __future__ import annotations

from typing import Any

from llm_on_eks.aws import api_calls
from llm_on_eks.operators.aws_wait import AwsWaitOperator, clean_up, client_token, creating_run_tags
from llm_on_eks.operators.base import PlanStepOperator
from llm_on_eks.plan import Plan


def _created_here(file_system: dict[str, Any], context: Any) -> bool:
    from llm_on_eks.aws.fsx import tags_of
    from llm_on_eks.naming import created_by_run

    return created_by_run(tags_of(file_system), context["run_id"])


class EnsureArtifactBucketOperator(PlanStepOperator):
    """The S3 bucket for the Neuron compile cache, staged-weight markers and FSx's data repository."""

    def describe(self, plan: Plan) -> Any:
        bucket = plan["storage"]["artifact_bucket"]
        return {"find": {"service": "s3", "operation": "head_bucket", "kwargs": {"Bucket": bucket}},
                "if_missing": [{"service": "s3", "operation": "create_bucket",
                                "kwargs": api_calls.create_bucket_request(plan)},
                               {"service": "s3", "operation": "put_bucket_tagging",
                                "kwargs": api_calls.bucket_tagging_request(plan)}],
                "prefixes": [{"service": "s3", "operation": "put_object", "kwargs": r}
                             for r in api_calls.artifact_prefix_requests(plan)]}

    def run(self, plan: Plan, context: Any) -> Any:
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook
        from airflow.sdk.exceptions import AirflowFailException
        from botocore.exceptions import ClientError

        bucket = plan["storage"]["artifact_bucket"]
        s3 = S3Hook(aws_conn_id=plan["aws"]["conn_id"], region_name=plan["aws"]["region"]).get_conn()
        action = "adopted"
        try:
            s3.head_bucket(Bucket=bucket)
        except ClientError as exc:
            code = exc.response["Error"]["Code"]
            if code in ("403", "AccessDenied", "Forbidden"):
                raise AirflowFailException(f"S3 bucket {bucket} exists but this connection may not use it "
                                           "(another account's, or no access): name another artifact_bucket") from None
            if code not in ("404", "NoSuchBucket", "NotFound"):
                raise
            self.log.info("creating S3 bucket %s in %s", bucket, plan["aws"]["region"])
            try:
                s3.create_bucket(**api_calls.create_bucket_request(plan))
                action = "created"
            except s3.exceptions.BucketAlreadyOwnedByYou:
                pass
            s3.put_bucket_tagging(**api_calls.bucket_tagging_request(plan, creating_run_tags(context)))
        created_prefixes = []
        for request in api_calls.artifact_prefix_requests(plan):
            try:
                s3.head_object(**request)
            except ClientError as exc:
                if exc.response["Error"]["Code"] not in ("404", "NoSuchKey", "NotFound"):
                    raise
                s3.put_object(**request, Body=b"")
                created_prefixes.append(request["Key"])
        self.log.info("S3 bucket %s %s; prefixes %s (new: %s)", bucket, action, list(api_calls.ARTIFACT_PREFIXES),
                      created_prefixes or "none")
        return {"bucket": bucket, "action": action, "prefixes": list(api_calls.ARTIFACT_PREFIXES),
                "created_prefixes": created_prefixes}


class EnsureFsxOperator(AwsWaitOperator):
    """FSx for Lustre linked to S3, for profiles that stage weights; others skip it.

    One file system per cluster (found by its Name, managed-by and cluster tags), one data
    repository association from its /models to the bucket's models/ prefix. Hands the
    Kubernetes step the file system id, DNS name and mount name."""

    WAIT = (30, 80)  # PERSISTENT_2 at 2.4 TiB: 10-20 minutes

    def describe(self, plan: Plan) -> Any:
        if plan["storage"]["fsx"] is None:
            return {"skip": f"the {plan['profile']['weights']} weight path needs no FSx"}
        name = plan["storage"]["fsx"]["name"]
        return {
            "find": {"service": "fsx", "operation": "describe_file_systems", "filter_by_tag": {"Name": name}},
            "if_missing": {"service": "fsx", "operation": "create_file_system",
                           "kwargs": api_calls.create_file_system_request(plan)},
            "wait_for": "file system AVAILABLE",
            "link": {"service": "fsx", "operation": "create_data_repository_association",
                     "kwargs": api_calls.create_data_repository_association_request(plan, "<file system id>")},
            "hands_on": ["file_system_id", "dns_name", "mount_name"],
            "deferrable": self.deferrable,
        }

    def run(self, plan: Plan, context: Any) -> Any:
        from airflow.sdk.exceptions import AirflowFailException

        from llm_on_eks.aws import fsx as fsx_rules
        from llm_on_eks.aws.fsx import FsxHook
        from llm_on_eks.naming import fsx_user
        from llm_on_eks.triggers.fsx import FsxAssociationAvailableTrigger, FsxFileSystemAvailableTrigger

        spec, cluster = plan["storage"]["fsx"], plan["cluster"]["name"]
        if spec is None:
            # Not a skip: a skipped task would skip the weight preparation downstream with it.
            self.log.info("the %s weight path needs no FSx", plan["profile"]["weights"])
            return {"fsx": None, "action": f"none needed for the {plan['profile']['weights']} weight path"}
        hook = FsxHook(**self.aws(plan))
        found = hook.find_file_systems(spec["name"], cluster)
        if len(found) > 1:
            raise AirflowFailException(f"{len(found)} FSx file systems are tagged {spec['name']} for {cluster}: "
                                       f"{[fs['FileSystemId'] for fs in found]}; delete the extra ones")
        created_now = False
        if found:
            fs = found[0]
            problems = _fsx_problems(fs, spec)
            if problems:
                raise AirflowFailException(f"FSx file system {fs['FileSystemId']} ({spec['name']}) cannot be adopted: "
                                           + "; ".join(problems))
        else:
            fs = self._create_file_system(plan, hook, context)
            created_now = True
        fs_id = fs["FileSystemId"]
        user = fsx_user(plan["kubernetes"]["namespace"], plan["deployment"])
        user_tag = fsx_rules.used_by_key(user)
        if user_tag not in fsx_rules.tags_of(fs):
            hook.tag(fs["ResourceARN"], {user_tag: "true"})
        if fs.get("Lifecycle") not in fsx_rules.USABLE or created_now:
            self.wait(plan, context, trigger=FsxFileSystemAvailableTrigger, ids={"file_system_id": fs_id},
                      waiter=hook.get_waiter("file_system_available"), args={"FileSystemIds": [fs_id]},
                      what="file system AVAILABLE", status_args=["FileSystems[0].Lifecycle"])
            fs = hook.file_system(fs_id)
        association, linked_now = self._ensure_association(plan, hook, fs_id, context)
        if association["Lifecycle"] not in fsx_rules.USABLE or linked_now:
            self.wait(plan, context, trigger=FsxAssociationAvailableTrigger,
                      ids={"association_id": association["AssociationId"]},
                      waiter=hook.get_waiter("association_available"),
                      args={"AssociationIds": [association["AssociationId"]]}, what="association AVAILABLE",
                      status_args=["Associations[0].Lifecycle"])
        mount_name = (fs.get("LustreConfiguration") or {}).get("MountName")
        if not mount_name:
            raise AirflowFailException(f"FSx file system {fs_id} reports no LustreConfiguration.MountName")
        action = "created" if _created_here(fs, context) else "adopted"
        self.log.info("FSx file system %s %s (%s), linked %s -> %s", fs_id, action, fs.get("Lifecycle"),
                      spec["file_system_path"], spec["data_repository_path"])
        return {"file_system_id": fs_id, "dns_name": fs["DNSName"], "mount_name": mount_name,
                "association_id": association["AssociationId"], "action": action,
                "users": sorted({*fsx_rules.users_of(fs), user})}

    def _create_file_system(self, plan: Plan, hook: Any, context: Any) -> dict[str, Any]:
        from airflow.providers.amazon.aws.hooks.eks import EksHook
        from airflow.sdk.exceptions import AirflowFailException

        from llm_on_eks.aws import eks as rules

        subnet, groups = plan["storage"]["fsx"]["subnet_id"], None
        cluster = rules.describe_cluster(EksHook(**self.aws(plan)).conn, plan["cluster"]["name"])
        if cluster is None:
            raise AirflowFailException(f"EKS cluster {plan['cluster']['name']} does not exist: FSx goes into its VPC")
        vpc = cluster.get("resourcesVpcConfig") or {}
        subnet = subnet or (vpc.get("subnetIds") or [None])[0]
        # The cluster security group is on every managed node: Lustre traffic (988, 1018-1023)
        # between nodes and the file system stays inside it.
        if vpc.get("clusterSecurityGroupId"):
            groups = [vpc["clusterSecurityGroupId"]]
        request = api_calls.create_file_system_request(plan, subnet_id=subnet, security_group_ids=groups,
                                                       token=client_token(context, "fsx"),
                                                       created=creating_run_tags(context))
        self.log.info("creating FSx for Lustre %s (%s, %s GiB) in %s", plan["storage"]["fsx"]["name"],
                      request["LustreConfiguration"]["DeploymentType"], request["StorageCapacity"], subnet)
        return hook.create_file_system(request)

    def _ensure_association(self, plan: Plan, hook: Any, fs_id: str, context: Any) -> tuple[dict, bool]:
        from airflow.sdk.exceptions import AirflowFailException

        spec = plan["storage"]["fsx"]
        for association in hook.associations(fs_id):
            if association["FileSystemPath"].rstrip("/") != spec["file_system_path"].rstrip("/"):
                continue
            if association["DataRepositoryPath"].rstrip("/") != spec["data_repository_path"].rstrip("/"):
                raise AirflowFailException(
                    f"FSx {fs_id}: {spec['file_system_path']} is linked to {association['DataRepositoryPath']}, "
                    f"the plan needs {spec['data_repository_path']}")
            if association["Lifecycle"] in ("FAILED", "MISCONFIGURED", "DELETING"):
                raise AirflowFailException(f"FSx {fs_id}: data repository association {association['AssociationId']} "
                                           f"is {association['Lifecycle']} {association.get('FailureDetails', '')}")
            return association, False
        self.log.info("linking FSx %s:%s to %s", fs_id, spec["file_system_path"], spec["data_repository_path"])
        request = api_calls.create_data_repository_association_request(plan, fs_id, token=client_token(context, "dra"))
        return hook.create_association(request), True

    def wait_failed(self, plan: Plan, context: Any, why: str, event: dict[str, Any] | None = None) -> None:
        from airflow.sdk.exceptions import AirflowFailException

        from llm_on_eks.aws.fsx import FsxHook

        hook = FsxHook(**self.aws(plan))
        for fs in hook.find_file_systems(plan["storage"]["fsx"]["name"], plan["cluster"]["name"]):
            if _created_here(fs, context) and fs.get("Lifecycle") not in ("AVAILABLE", "DELETING"):
                self.log.error("FSx %s did not become AVAILABLE: deleting it (%s)", fs["FileSystemId"], why)
                clean_up(self.log, lambda fs=fs: hook.delete_file_system(fs["FileSystemId"]))
                why += " (the file system this run created was deleted)"
        raise AirflowFailException(why)


def _fsx_problems(fs: dict[str, Any], spec: dict[str, Any]) -> list[str]:
    lustre, problems = fs.get("LustreConfiguration") or {}, []
    if lustre.get("DeploymentType") != spec["deployment_type"]:
        problems.append(f"deployment type {lustre.get('DeploymentType')}, the plan needs {spec['deployment_type']}")
    if fs.get("StorageCapacity", 0) < spec["storage_capacity_gib"]:
        problems.append(f"{fs.get('StorageCapacity')} GiB, the plan needs {spec['storage_capacity_gib']}")
    if fs.get("Lifecycle") in ("FAILED", "MISCONFIGURED", "MISCONFIGURED_UNAVAILABLE", "DELETING"):
        problems.append(f"lifecycle {fs['Lifecycle']} {fs.get('FailureDetails', '')}".strip())
    return problems

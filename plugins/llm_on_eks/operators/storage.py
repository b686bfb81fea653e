"""The ``storage`` task group: the artifact bucket, and FSx for Lustre linked to it.

Found by name and tags, adopted when they fit, created otherwise (``operators.ensure``). The
bucket holds the Neuron compile cache and the weights FSx imports; the file system is one per
cluster, shared by its deployments through ``used-by`` tags.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.sdk import Context
from airflow.sdk.exceptions import AirflowFailException

from llm_on_eks.aws import api_calls
from llm_on_eks.aws import eks as rules
from llm_on_eks.aws.fsx_rules import (
    USABLE,
    association_problems,
    file_system_problems,
    first_made,
    tags_of,
    used_by_key,
    users_of,
)
from llm_on_eks.naming import CREATED_BY_RUN_KEY
from llm_on_eks.operators.aws_wait import FSX_HOOK, S3_HOOK, AwsStepOperator, clean_up, client_token, creating_run_tags
from llm_on_eks.operators.ensure import EnsureOperator
from llm_on_eks.plan.types import ClusterSection, StorageSection

if TYPE_CHECKING:  # the hooks' types, named as strings below: imported at run time only
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook  # noqa: F401

    from llm_on_eks.aws.fsx import FsxHook  # noqa: F401


class EnsureArtifactBucketOperator(AwsStepOperator["S3Hook"]):
    """The S3 bucket for the Neuron compile cache, staged-weight markers and FSx's data repository.

    :param storage: the storage section: the artifact bucket's name
    :param tags: the owner tags a created bucket carries
    """

    template_fields = (*AwsStepOperator.template_fields, "storage", "tags")
    aws_hook_class = S3_HOOK

    def __init__(self, *, storage: StorageSection, tags: dict[str, str], **kwargs) -> None:
        super().__init__(**kwargs)
        self.storage = storage
        self.tags = tags

    def describe(self) -> Any:
        bucket = self.storage["artifact_bucket"]
        return {"find": {"service": "s3", "operation": "head_bucket", "kwargs": {"Bucket": bucket}},
                "if_missing": [{"service": "s3", "operation": "create_bucket",
                                "kwargs": api_calls.create_bucket_request(bucket, self.aws["region"])},
                               {"service": "s3", "operation": "put_bucket_tagging",
                                "kwargs": api_calls.bucket_tagging_request(bucket, self.tags)}],
                "prefixes": [{"service": "s3", "operation": "put_object", "kwargs": r}
                             for r in api_calls.artifact_prefix_requests(bucket)]}

    def run(self, context: Context) -> Any:
        from botocore.exceptions import ClientError

        bucket, region = self.storage["artifact_bucket"], self.aws["region"]
        s3 = self.hook.conn
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
            self.log.info("creating S3 bucket %s in %s", bucket, region)
            try:
                s3.create_bucket(**api_calls.create_bucket_request(bucket, region))
                action = "created"
            except s3.exceptions.BucketAlreadyOwnedByYou:
                # Another run made it meanwhile and tags it: PutBucketTagging replaces the whole
                # set (S3 API reference), so tagging it here would put this run down as its maker.
                self.log.info("S3 bucket %s appeared meanwhile: adopting it", bucket)
            if action == "created":
                s3.put_bucket_tagging(**api_calls.bucket_tagging_request(bucket, self.tags,
                                                                         creating_run_tags(context)))
        created_prefixes = []
        for request in api_calls.artifact_prefix_requests(bucket):
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


class EnsureFsxOperator(EnsureOperator["FsxHook"]):
    """FSx for Lustre linked to S3, for profiles that stage weights; others skip it.

    One file system per cluster (found by its Name, managed-by and cluster tags), one data
    repository association from its /models to the bucket's models/ prefix. Hands the
    Kubernetes step the file system id, DNS name and mount name. Two runs that both found none
    both create one: each looks again right after, both keep the first made (``first_made``),
    and the other's run deletes its own by the id its create returned.

    :param storage: the storage section: the file system to ensure (None: the weights need none)
    :param tags: the owner tags a created file system carries (the cluster's, not a deployment's)
    :param cluster: the EKS cluster: the file system is its, in its VPC
    """

    template_fields = (*EnsureOperator.template_fields, "storage", "tags", "cluster")
    aws_hook_class = FSX_HOOK
    WAIT = (30, 80)  # PERSISTENT_2 at 2.4 TiB: 10-20 minutes
    KIND = "FSx file system"
    READY = "AVAILABLE"
    # Kept after a failed wait: the file system is usable (the association's wait failed), or going.
    SPARED = frozenset({"AVAILABLE", "DELETING"})

    def __init__(self, *, storage: StorageSection, tags: dict[str, str], cluster: ClusterSection, **kwargs) -> None:
        super().__init__(**kwargs)
        self.storage = storage
        self.tags = tags
        self.cluster = cluster

    def describe(self) -> Any:
        spec = self.storage["fsx"]
        if spec is None:
            return {"skip": "the weights are not staged on FSx"}
        return {
            "find": {"service": "fsx", "operation": "describe_file_systems", "filter_by_tag": {"Name": spec["name"]}},
            "if_missing": {"service": "fsx", "operation": "create_file_system",
                           "kwargs": api_calls.create_file_system_request(spec, self.tags)},
            "wait_for": "file system AVAILABLE",
            "link": {"service": "fsx", "operation": "create_data_repository_association",
                     "kwargs": api_calls.create_data_repository_association_request(spec, "<file system id>",
                                                                                    tags=self.tags)},
            "hands_on": ["file_system_id", "dns_name", "mount_name"],
            "deferrable": self.deferrable,
        }

    def run(self, context: Context) -> Any:
        spec = self.storage["fsx"]
        if spec is None:
            # Not a skip: a skipped task would skip the weight preparation downstream with it.
            self.log.info("the weights are not staged on FSx: no file system needed")
            return {"fsx": None, "action": "none needed: the weights are not staged on FSx"}
        fs, action = self.ensure(context, spec["name"])
        fs_id = fs["FileSystemId"]
        association = self._ensure_association(context, fs_id)
        mount_name = (fs.get("LustreConfiguration") or {}).get("MountName")
        if not mount_name:
            raise AirflowFailException(f"FSx file system {fs_id} reports no LustreConfiguration.MountName")
        self.log.info("FSx file system %s %s (%s), linked %s -> %s", fs_id, action, fs.get("Lifecycle"),
                      spec["file_system_path"], spec["data_repository_path"])
        return {"file_system_id": fs_id, "dns_name": fs["DNSName"], "mount_name": mount_name,
                "association_id": association["AssociationId"], "action": action,
                "users": sorted({*users_of(fs), spec["user"]})}

    def find(self, name: str) -> dict[str, Any] | None:
        """The file system of that name; of several (two runs made one each), the first made."""
        found = self.hook.find_file_systems(name, self.cluster["name"])
        if not found:
            return None
        first = first_made(found)
        others = [f"{fs['FileSystemId']} (made by run {tags_of(fs).get(CREATED_BY_RUN_KEY)})" for fs in found
                  if fs is not first and fs.get("Lifecycle") != "DELETING"]
        if others:
            self.log.warning("FSx %s: %s is used; also tagged %s: %s, which its run deletes once it looks again "
                             "(delete it by hand if that run is gone)", name, first["FileSystemId"], name,
                             ", ".join(others))
        return first

    def create(self, name: str, context: Context) -> bool:
        """Create, then look again: when another run's file system was made first, this run's
        goes (by its own id: never the other's) and the other's is adopted."""
        made = self.send_create(name, context)["FileSystemId"]
        first = self.find(name)
        if first is None or first["FileSystemId"] == made:
            return True
        self.log.info("FSx %s: another run made %s first; deleting the one this run made, %s", name,
                      first["FileSystemId"], made)
        clean_up(self.log, lambda: self.hook.delete_file_system(made))
        return False

    def send_create(self, name: str, context: Context) -> dict[str, Any]:
        spec, groups = self.storage["fsx"], None
        cluster = rules.describe_cluster(self.client("eks"), self.cluster["name"])
        if cluster is None:
            raise AirflowFailException(f"EKS cluster {self.cluster['name']} does not exist: FSx goes into its VPC")
        vpc = cluster.get("resourcesVpcConfig") or {}
        subnet = spec["subnet_id"] or (vpc.get("subnetIds") or [None])[0]
        # The cluster security group is on every managed node: Lustre traffic (988, 1018-1023)
        # between nodes and the file system stays inside it.
        if vpc.get("clusterSecurityGroupId"):
            groups = [vpc["clusterSecurityGroupId"]]
        request = api_calls.create_file_system_request(spec, self.tags, subnet_id=subnet, security_group_ids=groups,
                                                       token=client_token(context, "fsx"),
                                                       created=creating_run_tags(context))
        self.log.info("creating FSx for Lustre %s (%s, %s GiB) in %s", name,
                      request["LustreConfiguration"]["DeploymentType"], request["StorageCapacity"], subnet)
        return self.hook.create_file_system(request)

    def problems(self, fs: dict[str, Any]) -> list[str]:
        return file_system_problems(fs, self.storage["fsx"])

    def refusal(self, fs: dict[str, Any], problems: list[str]) -> str:
        return (f"FSx file system {fs['FileSystemId']} ({self.storage['fsx']['name']}) cannot be adopted: "
                + "; ".join(problems))

    def update(self, fs: dict[str, Any]) -> bool:
        """Say that this deployment uses it (the teardown keeps it while anyone does)."""
        user_tag = used_by_key(self.storage["fsx"]["user"])
        if user_tag not in tags_of(fs):
            self.hook.tag(fs["ResourceARN"], {user_tag: "true"})
        return False

    def resource_tags(self, fs: dict[str, Any]) -> dict[str, str]:
        return tags_of(fs)

    def status(self, fs: dict[str, Any]) -> str | None:
        return fs.get("Lifecycle")

    def pending(self, fs: dict[str, Any]) -> bool:
        return fs.get("Lifecycle") not in USABLE

    def waiting(self, fs: dict[str, Any]) -> dict[str, Any]:
        from llm_on_eks.triggers.fsx import FsxFileSystemAvailableTrigger

        fs_id = fs["FileSystemId"]
        return {"trigger": FsxFileSystemAvailableTrigger, "ids": {"file_system_id": fs_id},
                "waiter": self.hook.get_waiter("file_system_available"), "args": {"FileSystemIds": [fs_id]},
                "what": "file system AVAILABLE", "status_args": ["FileSystems[0].Lifecycle"]}

    def result(self, fs: dict[str, Any], action: str) -> tuple[dict[str, Any], str]:
        return fs, action

    def cleanup_name(self) -> str:
        return self.storage["fsx"]["name"]

    def delete(self, fs: dict[str, Any]) -> None:
        self.hook.delete_file_system(fs["FileSystemId"])

    def _ensure_association(self, context: Context, fs_id: str) -> dict[str, Any]:
        """The link from the file system path to the bucket's prefix, made when missing; waited for
        until AVAILABLE."""
        from botocore.exceptions import ClientError

        from llm_on_eks.triggers.fsx import FsxAssociationAvailableTrigger

        spec = self.storage["fsx"]

        def linked() -> list[dict[str, Any]]:
            return [a for a in self.hook.associations(fs_id)
                    if a["FileSystemPath"].rstrip("/") == spec["file_system_path"].rstrip("/")]

        found = linked()
        if not found:
            self.log.info("linking FSx %s:%s to %s", fs_id, spec["file_system_path"], spec["data_repository_path"])
            try:
                association = self.hook.create_association(api_calls.create_data_repository_association_request(
                    spec, fs_id, token=client_token(context, "dra"), tags=self.tags))
            except ClientError as exc:
                # One association per file system path (FSx user guide, "Linking your file system
                # to an Amazon S3 bucket"): FSx refuses a second with BadRequest. Another run's,
                # made meanwhile, is judged and adopted as if found.
                found = linked() if exc.response["Error"]["Code"] == "BadRequest" else []
                if not found:
                    raise
                self.log.info("FSx %s:%s: another run linked it meanwhile: adopting it", fs_id,
                              spec["file_system_path"])
        if found and (problems := association_problems(found[0], spec)):
            raise AirflowFailException(f"FSx {fs_id}: " + "; ".join(problems))
        if found:
            association = found[0]
        if association["Lifecycle"] not in USABLE or not found:
            association_id = association["AssociationId"]
            self.wait(context, trigger=FsxAssociationAvailableTrigger, ids={"association_id": association_id},
                      waiter=self.hook.get_waiter("association_available"), args={"AssociationIds": [association_id]},
                      what="association AVAILABLE", status_args=["Associations[0].Lifecycle"])
        return association

"""FSx for Lustre, in the style of the Amazon provider's hooks: a thin, stateless wrapper over the
boto3 client, with waiters described in JSON (``waiters/fsx.json``) so the worker (a boto3
waiter) and the triggerer (an aiobotocore waiter) wait by the same rules.

The provider has no FSx hook, operator or trigger; this module and ``llm_on_eks.triggers.fsx``
are the smallest pieces the storage step needs. A file system belongs to a cluster (shared by its
deployments, tagged with the cluster, not one deployment); each deployment using it adds a
``used-by`` tag, which is how the teardown knows whether anyone else still needs it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

from llm_on_eks.naming import CLUSTER_KEY, LABEL_PREFIX, MANAGED_BY_KEY, PROJECT

USED_BY_PREFIX = f"{LABEL_PREFIX}/used-by/"
WAITERS = Path(__file__).with_name("waiters") / "fsx.json"
# Lifecycle states a file system or association can be used or waited out in; anything else
# (FAILED, MISCONFIGURED, DELETING) needs a human.
USABLE = {"AVAILABLE", "UPDATING"}


def used_by_key(user: str) -> str:
    """The tag of one user, ``naming.fsx_user``: namespace and deployment, so the same name in
    two namespaces is two users."""
    return f"{USED_BY_PREFIX}{user}"


def tags_of(resource: dict[str, Any]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in resource.get("Tags") or []}


def users_of(file_system: dict[str, Any]) -> list[str]:
    """Deployments that said they use this file system (their ``used-by`` tags)."""
    return sorted(k.removeprefix(USED_BY_PREFIX) for k in tags_of(file_system) if k.startswith(USED_BY_PREFIX))


class FsxHook(AwsBaseHook):
    """Interact with Amazon FSx; ``waiter_path`` points the provider's waiter machinery at ours."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs["client_type"] = "fsx"
        super().__init__(*args, **kwargs)

    @property
    def waiter_path(self) -> Path:
        return WAITERS

    def file_system(self, file_system_id: str) -> dict[str, Any] | None:
        """One file system, or None when it does not exist (any more)."""
        try:
            found = self.conn.describe_file_systems(FileSystemIds=[file_system_id])["FileSystems"]
        except self.conn.exceptions.FileSystemNotFound:
            return None
        return found[0] if found else None

    def find_file_systems(self, name: str, cluster: str) -> list[dict[str, Any]]:
        """Lustre file systems named ``name`` that this project made for ``cluster``.

        FSx has no server-side tag filter on DescribeFileSystems: list and match locally.
        """
        found = []
        for page in self.conn.get_paginator("describe_file_systems").paginate():
            for fs in page["FileSystems"]:
                tags = tags_of(fs)
                if (fs.get("FileSystemType") == "LUSTRE" and tags.get("Name") == name
                        and tags.get(MANAGED_BY_KEY) == PROJECT and tags.get(CLUSTER_KEY) == cluster):
                    found.append(fs)
        return found

    def create_file_system(self, request: dict[str, Any]) -> dict[str, Any]:
        return self.conn.create_file_system(**request)["FileSystem"]

    def tag(self, resource_arn: str, tags: dict[str, str]) -> None:
        self.conn.tag_resource(ResourceARN=resource_arn, Tags=[{"Key": k, "Value": v} for k, v in tags.items()])

    def untag(self, resource_arn: str, keys: list[str]) -> None:
        self.conn.untag_resource(ResourceARN=resource_arn, TagKeys=keys)

    def associations(self, file_system_id: str) -> list[dict[str, Any]]:
        """The data repository associations of a file system."""
        found, token = [], None
        for _ in range(100):  # 100 pages of 25: far beyond the 8 associations FSx allows
            kwargs: dict[str, Any] = {"Filters": [{"Name": "file-system-id", "Values": [file_system_id]}]}
            if token:
                kwargs["NextToken"] = token
            page = self.conn.describe_data_repository_associations(**kwargs)
            found.extend(page["Associations"])
            token = page.get("NextToken")
            if not token:
                break
        return found

    def create_association(self, request: dict[str, Any]) -> dict[str, Any]:
        return self.conn.create_data_repository_association(**request)["Association"]

    def delete_file_system(self, file_system_id: str) -> bool:
        """Delete without a final backup (the weights live in S3 through the association).
        False when it was already gone."""
        try:
            self.conn.delete_file_system(FileSystemId=file_system_id,
                                         LustreConfiguration={"SkipFinalBackup": True})
        except self.conn.exceptions.FileSystemNotFound:
            return False
        return True

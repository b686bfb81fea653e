"""FSx for Lustre, in the style of the Amazon provider's hooks: a thin, stateless wrapper over the
boto3 client, with waiters described in JSON (``waiters/fsx.json``) so the worker (a boto3
waiter) and the triggerer (an aiobotocore waiter) wait by the same rules.

The provider has no FSx hook, operator or trigger; this module and ``llm_on_eks.triggers.fsx``
are the smallest pieces the storage step needs; how it judges what it finds is in
``llm_on_eks.aws.fsx_rules``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

from llm_on_eks.aws.fsx_rules import tags_of
from llm_on_eks.naming import CLUSTER_KEY, is_managed

WAITERS = Path(__file__).with_name("waiters") / "fsx.json"


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
                if (fs.get("FileSystemType") == "LUSTRE" and tags.get("Name") == name and is_managed(tags)
                        and tags.get(CLUSTER_KEY) == cluster):
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

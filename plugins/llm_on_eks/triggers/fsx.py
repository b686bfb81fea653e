"""Deferrable waits on FSx for Lustre, shaped like the Amazon provider's EKS triggers: each is an
``AwsBaseWaiterTrigger`` running one of the waiters in ``llm_on_eks/aws/waiters/fsx.json``
through an aiobotocore client, so the triggerer waits by exactly the rules the worker uses.

A PERSISTENT_2 file system takes 10-20 minutes to become AVAILABLE and a data repository
association with a metadata import can take longer: long enough that a worker slot should not
be held for it.
"""

from __future__ import annotations

from airflow.providers.amazon.aws.triggers.base import AwsBaseWaiterTrigger

from llm_on_eks.aws.fsx import FsxHook


class _FsxTrigger(AwsBaseWaiterTrigger):
    aws_hook_class = FsxHook


class FsxFileSystemAvailableTrigger(_FsxTrigger):
    """Wait until a file system is AVAILABLE; FAILED or MISCONFIGURED ends the wait with an error."""

    def __init__(self, file_system_id: str, waiter_delay: int, waiter_max_attempts: int,
                 aws_conn_id: str | None, region_name: str | None = None, verify: bool | str | None = None,
                 botocore_config: dict | None = None):
        super().__init__(
            serialized_fields={"file_system_id": file_system_id, "region_name": region_name},
            waiter_name="file_system_available",
            waiter_args={"FileSystemIds": [file_system_id]},
            failure_message="FSx file system did not become available",
            status_message="FSx file system lifecycle is",
            status_queries=["FileSystems[0].Lifecycle", "FileSystems[0].FailureDetails"],
            return_key="file_system_id",
            return_value=file_system_id,
            waiter_delay=waiter_delay,
            waiter_max_attempts=waiter_max_attempts,
            aws_conn_id=aws_conn_id,
            region_name=region_name,
            verify=verify,
            botocore_config=botocore_config,
        )


class FsxAssociationAvailableTrigger(_FsxTrigger):
    """Wait until a data repository association is AVAILABLE (its metadata import done)."""

    def __init__(self, association_id: str, waiter_delay: int, waiter_max_attempts: int,
                 aws_conn_id: str | None, region_name: str | None = None, verify: bool | str | None = None,
                 botocore_config: dict | None = None):
        super().__init__(
            serialized_fields={"association_id": association_id, "region_name": region_name},
            waiter_name="association_available",
            waiter_args={"AssociationIds": [association_id]},
            failure_message="FSx data repository association did not become available",
            status_message="FSx data repository association lifecycle is",
            status_queries=["Associations[0].Lifecycle", "Associations[0].FailureDetails"],
            return_key="association_id",
            return_value=association_id,
            waiter_delay=waiter_delay,
            waiter_max_attempts=waiter_max_attempts,
            aws_conn_id=aws_conn_id,
            region_name=region_name,
            verify=verify,
            botocore_config=botocore_config,
        )


class FsxFileSystemDeletedTrigger(_FsxTrigger):
    """Wait until a file system is gone."""

    def __init__(self, file_system_id: str, waiter_delay: int, waiter_max_attempts: int,
                 aws_conn_id: str | None, region_name: str | None = None, verify: bool | str | None = None,
                 botocore_config: dict | None = None):
        super().__init__(
            serialized_fields={"file_system_id": file_system_id, "region_name": region_name},
            waiter_name="file_system_deleted",
            waiter_args={"FileSystemIds": [file_system_id]},
            failure_message="FSx file system was not deleted",
            status_message="FSx file system lifecycle is",
            status_queries=["FileSystems[0].Lifecycle"],
            return_key="file_system_id",
            return_value=file_system_id,
            waiter_delay=waiter_delay,
            waiter_max_attempts=waiter_max_attempts,
            aws_conn_id=aws_conn_id,
            region_name=region_name,
            verify=verify,
            botocore_config=botocore_config,
        )

"""The calls moto cannot answer, checked with botocore's Stubber against the real service models
(FSx data repository associations, EKS add-ons), and the FSx trigger driven through its async
generator against the moto server."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from botocore.stub import Stubber

from llm_on_eks.aws import api_calls
from llm_on_eks.aws.fsx import FsxHook
from llm_on_eks.plan import build_plan
from tests.aws.conftest import CREATE, SUBNETS, client

FS_ID = "fs-0123456789abcdef0"


@pytest.fixture
def gpu_plan():
    return build_plan({"model": "llama4-scout", "accelerator": "gpu", "cluster_name": "llm-inference",
                       "region": "us-west-2", **CREATE})


@pytest.fixture
def offline(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")


def test_association_calls_fit_the_fsx_model(gpu_plan, offline):
    hook = FsxHook(aws_conn_id=None, region_name="us-west-2")
    request = api_calls.create_data_repository_association_request(gpu_plan["storage"]["fsx"], FS_ID,
                                                                   token="llm-on-eks-0123456789abcdef",
                                                                   tags=gpu_plan["tags"])
    association = {"AssociationId": "dra-0123456789abcdef0", "FileSystemId": FS_ID, "Lifecycle": "CREATING",
                   "FileSystemPath": "/models", "DataRepositoryPath": "s3://llm-on-eks-llm-inference-us-west-2/models/",
                   "CreationTime": datetime.now(UTC)}
    with Stubber(hook.conn) as stub:
        # Stubber validates the request against the FSx model and checks it equals what we expect.
        stub.add_response("create_data_repository_association", {"Association": association}, request)
        stub.add_response("describe_data_repository_associations", {"Associations": [association], "NextToken": "n"},
                          {"Filters": [{"Name": "file-system-id", "Values": [FS_ID]}]})
        stub.add_response("describe_data_repository_associations", {"Associations": []},
                          {"Filters": [{"Name": "file-system-id", "Values": [FS_ID]}], "NextToken": "n"})
        assert hook.create_association(request)["AssociationId"] == "dra-0123456789abcdef0"
        assert [a["AssociationId"] for a in hook.associations(FS_ID)] == ["dra-0123456789abcdef0"]
        stub.assert_no_pending_responses()
    assert request["S3"]["AutoExportPolicy"]["Events"] == ["NEW", "CHANGED", "DELETED"]


def test_file_system_request_fits_the_fsx_model(gpu_plan, offline):
    hook = FsxHook(aws_conn_id=None, region_name="us-west-2")
    request = api_calls.create_file_system_request(gpu_plan["storage"]["fsx"], gpu_plan["tags"], subnet_id=SUBNETS[0],
                                                   security_group_ids=["sg-0abc1234def5678"], token="llm-on-eks-token")
    with Stubber(hook.conn) as stub:
        stub.add_response("create_file_system", {"FileSystem": {"FileSystemId": FS_ID}}, request)
        stub.add_response("delete_file_system", {"FileSystemId": FS_ID, "Lifecycle": "DELETING"},
                          {"FileSystemId": FS_ID, "LustreConfiguration": {"SkipFinalBackup": True}})
        stub.add_client_error("delete_file_system", "FileSystemNotFound", http_status_code=400)
        assert hook.create_file_system(request)["FileSystemId"] == FS_ID
        assert hook.delete_file_system(FS_ID) is True
        assert hook.delete_file_system(FS_ID) is False  # already gone is not an error
    assert request["LustreConfiguration"]["DeploymentType"] == "PERSISTENT_2"
    assert request["SecurityGroupIds"] == ["sg-0abc1234def5678"]


def test_addon_calls_fit_the_eks_model(gpu_plan, offline):
    from airflow.providers.amazon.aws.hooks.eks import EksHook

    from llm_on_eks.aws.eks import describe_addon

    eks = EksHook(aws_conn_id=None, region_name="us-west-2").conn
    request = api_calls.create_addon_request(gpu_plan["cluster"]["name"], "aws-fsx-csi-driver", gpu_plan["tags"])
    with Stubber(eks) as stub:
        stub.add_client_error("describe_addon", "ResourceNotFoundException", http_status_code=404,
                              expected_params={"clusterName": "llm-inference", "addonName": "aws-fsx-csi-driver"})
        stub.add_response("create_addon", {"addon": {"addonName": "aws-fsx-csi-driver", "status": "CREATING"}}, request)
        assert describe_addon(eks, "llm-inference", "aws-fsx-csi-driver") is None
        eks.create_addon(**request)
        stub.assert_no_pending_responses()


def _drain(trigger) -> list[dict]:
    async def collect():
        return [event.payload async for event in trigger.run()]

    return asyncio.run(asyncio.wait_for(collect(), timeout=60))


def test_fsx_trigger_waits_until_available_and_reports_failure(aws_env, gaps):
    from llm_on_eks.triggers.fsx import FsxFileSystemAvailableTrigger

    fs = client(aws_env, "fsx", "us-west-2").create_file_system(
        FileSystemType="LUSTRE", StorageCapacity=2400, SubnetIds=SUBNETS[:1],
        LustreConfiguration={"DeploymentType": "PERSISTENT_2", "PerUnitStorageThroughput": 500})["FileSystem"]
    trigger = FsxFileSystemAvailableTrigger(file_system_id=fs["FileSystemId"], waiter_delay=0, waiter_max_attempts=5,
                                            aws_conn_id="aws_default", region_name="us-west-2")
    # Serialized and rebuilt, as the triggerer does.
    classpath, kwargs = trigger.serialize()
    assert classpath == "llm_on_eks.triggers.fsx.FsxFileSystemAvailableTrigger"
    events = _drain(FsxFileSystemAvailableTrigger(**kwargs))
    assert events == [{"status": "success", "file_system_id": fs["FileSystemId"]}]
    assert gaps.calls["fsx.DescribeFileSystems"] == 2  # CREATING, then AVAILABLE

    gone = FsxFileSystemAvailableTrigger(file_system_id="fs-00000000000000000", waiter_delay=0, waiter_max_attempts=2,
                                         aws_conn_id="aws_default", region_name="us-west-2")
    [event] = _drain(gone)
    assert event["status"] == "error"

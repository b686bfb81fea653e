"""The IAM actions an identity called, read from the moto server's own request log
(local_stack/request_log.py): boto3 calls made with two access keys against an in-process server
with the gap filler in front (local_stack/aws.py), then the log's actions per key. The requests are
also mapped one by one, with no server: S3 path and virtual-host style, sub-resources, EKS routes."""

from __future__ import annotations

import base64
import urllib.request
import uuid

import boto3
import pytest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError
from botocore.signers import RequestSigner

from local_stack import request_log
from local_stack.aws import iam_user, in_thread
from local_stack.aws_gaps import AwsGaps

REGION = "us-west-2"
SUBNET = "subnet-0a1b2c3d4e5f60001"


@pytest.fixture(scope="module")
def recorded_aws():
    """An in-process moto server with the gap filler in front, its recorder on (and off after)."""
    with in_thread(AwsGaps()) as url:
        try:
            yield url
        finally:
            request_log.stop(url)


def _client(url: str, service: str, key_id: str, secret: str):
    return boto3.session.Session().client(service, endpoint_url=url, region_name=REGION, aws_access_key_id=key_id,
                                          aws_secret_access_key=secret,
                                          config=Config(retries={"max_attempts": 1, "mode": "standard"}))


def _eks_token(url: str, key: dict[str, str], cluster: str) -> tuple[str, dict[str, str]]:
    """The presigned GetCallerIdentity an EKS token is (the Amazon provider's eks_get_token, signed
    with botocore's RequestSigner) and the header the cluster's authenticator sends it with."""
    sts = _client(url, "sts", key["AccessKeyId"], key["SecretAccessKey"])
    signer = RequestSigner(sts.meta.service_model.service_id, REGION, "sts", "v4",
                           Credentials(key["AccessKeyId"], key["SecretAccessKey"]), sts.meta.events)
    headers = {"x-k8s-aws-id": cluster}
    signed = signer.generate_presigned_url(
        {"method": "GET", "url": f"{url}/?Action=GetCallerIdentity&Version=2011-06-15", "body": {},
         "headers": headers, "context": {}}, region_name=REGION, expires_in=60, operation_name="")
    return signed, headers


@pytest.mark.integration
def test_actions_per_access_key_come_from_the_servers_log(recorded_aws):
    user = iam_user(recorded_aws, f"least-privilege-{uuid.uuid4().hex[:8]}")
    key = user["AccessKeyId"]
    request_log.reset(recorded_aws)
    request_log.start(recorded_aws)

    def as_user(service):
        return _client(recorded_aws, service, key, user["SecretAccessKey"])

    def as_testing(service):
        return _client(recorded_aws, service, "testing", "testing")

    cluster, bucket = f"c-{uuid.uuid4().hex[:8]}", f"b-{uuid.uuid4().hex[:12]}"
    eks = as_user("eks")
    eks.create_cluster(name=cluster, roleArn="arn:aws:iam::123456789012:role/eks",
                       resourcesVpcConfig={"subnetIds": [SUBNET]})
    eks.describe_cluster(name=cluster)
    eks.list_nodegroups(clusterName=cluster)
    eks.create_addon(clusterName=cluster, addonName="vpc-cni")  # answered by the gap filler, not moto
    ec2 = as_user("ec2")
    ec2.describe_vpcs()
    ec2.create_vpc(CidrBlock="10.8.0.0/16")
    s3 = as_user("s3")
    s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
    s3.put_object(Bucket=bucket, Key="models/config.json", Body=b"{}")
    s3.head_object(Bucket=bucket, Key="models/config.json")
    s3.list_objects_v2(Bucket=bucket, Prefix="models/")
    with pytest.raises(ClientError, match="NoSuchTagSet"):
        s3.get_bucket_tagging(Bucket=bucket)
    as_user("sts").get_caller_identity()
    quota = as_user("service-quotas").get_aws_default_service_quota(ServiceCode="ec2", QuotaCode="L-417A185B")
    assert quota["Quota"]["Value"] == 384.0  # the gap filler's answer

    # An EKS token's STS check (local_stack/sts_presigned.py): answered in front of moto, not logged.
    token_url, token_headers = _eks_token(recorded_aws, user, cluster)
    with urllib.request.urlopen(urllib.request.Request(token_url, headers=token_headers), timeout=30) as response:
        assert response.status == 200

    as_testing("fsx").describe_file_systems()
    with pytest.raises(ClientError, match="NoSuchEntity"):
        as_testing("iam").get_role(RoleName="no-such-role")
    as_testing("sts").get_caller_identity()
    as_testing("s3").head_bucket(Bucket=bucket)

    calls = request_log.calls(recorded_aws)
    assert request_log.actions(calls, key) == {
        "eks:CreateCluster", "eks:DescribeCluster", "eks:ListNodegroups", "eks:CreateAddon",
        "ec2:DescribeVpcs", "ec2:CreateVpc",
        "s3:CreateBucket", "s3:PutObject", "s3:GetObject", "s3:ListBucket", "s3:GetBucketTagging",
        "sts:GetCallerIdentity", "servicequotas:GetAWSDefaultServiceQuota",
    }
    assert "sts:GetCallerIdentity" not in request_log.actions(calls, key, needs_permission=True)
    assert request_log.actions(calls, "testing") == {
        "fsx:DescribeFileSystems", "iam:GetRole", "sts:GetCallerIdentity", "s3:ListBucket"}
    assert [c.operation for c in calls if c.access_key_id == key and c.service == "s3"] == [
        "CreateBucket", "PutObject", "HeadObject", "ListObjectsV2", "GetBucketTagging"]
    assert [c.operation for c in calls if c.operation == "GetCallerIdentity"] == ["GetCallerIdentity"] * 2
    quota_call = next(c for c in calls if c.service == "servicequotas")
    assert (quota_call.operation, quota_call.region, quota_call.needs_permission) == (
        "GetAWSDefaultServiceQuota", REGION, True)


# -- one request at a time, no server ---------------------------------------------------------------
KEY = "AKIAEXAMPLE000000001"


def _entry(service: str, method: str, url: str, headers: dict[str, str] | None = None, body: bytes = b""):
    host = url.split("/")[2]
    authorization = (f"AWS4-HMAC-SHA256 Credential={KEY}/20250101/{REGION}/{service}/aws4_request, "
                     "SignedHeaders=host;x-amz-date, Signature=0")
    return {"headers": {"Host": host, "Authorization": authorization, **(headers or {})}, "method": method,
            "url": url, "body": base64.b64encode(body).decode(), "body_encoded": True}


@pytest.mark.parametrize(("method", "url", "headers", "operation", "action"), [
    ("GET", "http://127.0.0.1:5000/b1?list-type=2&prefix=m", {}, "ListObjectsV2", "s3:ListBucket"),
    ("GET", "https://b1.s3.us-west-2.amazonaws.com/?list-type=2", {}, "ListObjectsV2", "s3:ListBucket"),
    ("GET", "https://b1.s3.us-west-2.amazonaws.com/", {}, "ListObjects", "s3:ListBucket"),
    ("HEAD", "https://b1.s3.amazonaws.com/", {}, "HeadBucket", "s3:ListBucket"),
    ("HEAD", "http://127.0.0.1:5000/b1/models/a%2Fb.json", {}, "HeadObject", "s3:GetObject"),
    ("GET", "http://b1.localhost:5000/models/a.json", {}, "GetObject", "s3:GetObject"),
    ("GET", "http://127.0.0.1:5000/b1/a.json?versionId=3", {}, "GetObject", "s3:GetObjectVersion"),
    ("GET", "http://127.0.0.1:5000/b1/a.json?tagging", {}, "GetObjectTagging", "s3:GetObjectTagging"),
    ("GET", "http://127.0.0.1:5000/b1?tagging", {}, "GetBucketTagging", "s3:GetBucketTagging"),
    ("PUT", "https://b1.s3.us-west-2.amazonaws.com/?tagging", {}, "PutBucketTagging", "s3:PutBucketTagging"),
    ("GET", "http://127.0.0.1:5000/b1?versions", {}, "ListObjectVersions", "s3:ListBucketVersions"),
    ("GET", "http://127.0.0.1:5000/b1?uploads", {}, "ListMultipartUploads", "s3:ListBucketMultipartUploads"),
    ("POST", "http://127.0.0.1:5000/b1?delete", {}, "DeleteObjects", "s3:DeleteObject"),
    ("POST", "http://127.0.0.1:5000/b1/big.bin?uploads", {}, "CreateMultipartUpload", "s3:PutObject"),
    ("PUT", "http://127.0.0.1:5000/b1/big.bin?partNumber=1&uploadId=u1", {}, "UploadPart", "s3:PutObject"),
    ("POST", "http://127.0.0.1:5000/b1/big.bin?uploadId=u1", {}, "CompleteMultipartUpload", "s3:PutObject"),
    ("GET", "http://127.0.0.1:5000/b1/big.bin?uploadId=u1", {}, "ListParts", "s3:ListMultipartUploadParts"),
    ("PUT", "http://127.0.0.1:5000/b1/copy.bin", {"x-amz-copy-source": "b0/a.bin"}, "CopyObject", "s3:PutObject"),
    ("PUT", "http://127.0.0.1:5000/b1/a.json", {}, "PutObject", "s3:PutObject"),
    ("DELETE", "http://127.0.0.1:5000/b1/a.json", {}, "DeleteObject", "s3:DeleteObject"),
    ("PUT", "http://127.0.0.1:5000/b1", {}, "CreateBucket", "s3:CreateBucket"),
    ("GET", "http://127.0.0.1:5000/", {}, "ListBuckets", "s3:ListAllMyBuckets"),
])
def test_s3_requests_map_to_operations_and_actions(method, url, headers, operation, action):
    call = request_log.to_call(_entry("s3", method, url, headers))
    assert (call.service, call.access_key_id, call.operation, call.action) == ("s3", KEY, operation, action)


@pytest.mark.parametrize(("method", "path", "operation"), [
    ("POST", "/clusters", "CreateCluster"),
    ("GET", "/clusters/c1", "DescribeCluster"),
    ("GET", "/clusters/c1/node-groups", "ListNodegroups"),
    ("GET", "/clusters/c1/node-groups/ng1", "DescribeNodegroup"),
    ("POST", "/clusters/c1/node-groups/ng1/update-config", "UpdateNodegroupConfig"),
    ("GET", "/clusters/c1/addons/vpc-cni", "DescribeAddon"),
    ("POST", "/clusters/c1/updates", "UpdateClusterVersion"),
    ("GET", "/addons/supported-versions", "DescribeAddonVersions"),
    ("GET", "/tags/arn%3Aaws%3Aeks%3Aus-west-2%3A123456789012%3Acluster%2Fc1", "ListTagsForResource"),
])
def test_eks_requests_map_to_the_most_specific_route(method, path, operation):
    call = request_log.to_call(_entry("eks", method, f"http://127.0.0.1:5000{path}"))
    assert (call.operation, call.action) == (operation, f"eks:{operation}")


def test_query_and_json_requests_and_what_is_left_out():
    form = {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}
    vpc = _entry("ec2", "POST", "http://127.0.0.1:5000/", form, b"Action=CreateVpc&Version=2016-11-15&CidrBlock=10.0.0.0/16")
    assert request_log.to_call(vpc).action == "ec2:CreateVpc"
    quota = _entry("servicequotas", "POST", "http://127.0.0.1:5000/",
                   {"X-Amz-Target": "ServiceQuotasV20190624.GetServiceQuota"}, b"{}")
    assert request_log.to_call(quota).action == "servicequotas:GetServiceQuota"
    caller = _entry("sts", "POST", "http://127.0.0.1:5000/", form, b"Action=GetCallerIdentity&Version=2011-06-15")
    assert request_log.to_call(caller).needs_permission is False

    # An EKS token (a presigned GetCallerIdentity) and the moto API's own requests: no call.
    token = ("http://127.0.0.1:5000/?Action=GetCallerIdentity&Version=2011-06-15&X-Amz-Algorithm=AWS4-HMAC-SHA256"
             f"&X-Amz-Credential={KEY}%2F20250101%2Fus-east-1%2Fsts%2Faws4_request&X-Amz-Signature=0")
    assert request_log.to_call({"headers": {}, "method": "GET", "url": token, "body": ""}) is None
    assert request_log.to_call({"headers": {}, "method": "POST", "url": "http://127.0.0.1:5000/moto-api/reset"}) is None
    with pytest.raises(request_log.UnknownRequest):
        request_log.to_call(_entry("servicequotas", "POST", "http://127.0.0.1:5000/",
                                   {"X-Amz-Target": "ServiceQuotasV20190624.NoSuchOperation"}, b"{}"))

"""The AWS half's test setup: one moto server on 127.0.0.1 for the session (with the EKS token's
STS check in front, local_stack/sts_presigned.py), reset before each test; the Airflow AWS and HF
connections pointing at it (through AIRFLOW_CONN_* env vars), the AWS one as an IAM user with its
own access key, as a real Airflow identity is; the client-side gap filler for what moto lacks
(local_stack/aws_gaps.py)."""

from __future__ import annotations

import json
import urllib.request

import boto3
import botocore.handlers
import pytest

from local_stack.aws import AIRFLOW_ARN, AIRFLOW_USER, iam_user  # noqa: F401 - the tests' too
from local_stack.aws_gaps import AwsGaps

HF_TOKEN = "hf_TEST_d0n0tl3ak_8c1f5e0b7a9243f6b1e4"
ROLE = "arn:aws:iam::123456789012:role/eks-cluster"
NODE_ROLE = "arn:aws:iam::123456789012:role/eks-node"
# For clusters a test makes straight in moto, which checks no subnet; the project's steps are
# given foreign_network's real ones.
SUBNETS = ["subnet-0a1b2c3d", "subnet-0e5f6a7b"]
# What a new user gives: nothing but the switch; the network and the IAM roles are made with the cluster.
CREATE = {"create_cluster": True}


def foreign_network(moto_url: str, region: str, zones: int = 2, prefix: int = 20) -> list[str]:
    """Another team's VPC and subnets (one per zone, of the given size) and its cluster and node
    roles (ROLE, NODE_ROLE, with the trust and policies EKS wants), as an account that already
    has a cluster holds them: what the project adopts or is given, and must never change."""
    import json

    ec2, iam = client(moto_url, "ec2", region), client(moto_url, "iam", region)
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16", TagSpecifications=[
        {"ResourceType": "vpc", "Tags": [{"Key": "Name", "Value": "platform-team"}]}])["Vpc"]["VpcId"]
    names = [z["ZoneName"] for z in ec2.describe_availability_zones()["AvailabilityZones"]][:zones]
    subnets = [ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.0.{index * 16}.0/{prefix}", AvailabilityZone=zone)
               ["Subnet"]["SubnetId"] for index, zone in enumerate(names)]
    for arn, service, policies in ((ROLE, "eks", ["AmazonEKSClusterPolicy"]),
                                   (NODE_ROLE, "ec2", ["AmazonEKSWorkerNodePolicy", "AmazonEKS_CNI_Policy",
                                                       "AmazonEC2ContainerRegistryReadOnly"])):
        name = arn.rsplit("/", 1)[1]
        if name in {r["RoleName"] for r in iam.list_roles()["Roles"]}:
            continue
        iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Principal": {"Service": f"{service}.amazonaws.com"}, "Action": "sts:AssumeRole"}]}))
        for policy in policies:
            iam.attach_role_policy(RoleName=name, PolicyArn=f"arn:aws:iam::aws:policy/{policy}")
    return subnets


@pytest.fixture(scope="session")
def moto_url():
    from local_stack.aws import in_thread

    with in_thread(gaps=None) as url:
        yield url


@pytest.fixture
def gaps(monkeypatch) -> AwsGaps:
    filler = AwsGaps()
    monkeypatch.setattr(botocore.handlers, "BUILTIN_HANDLERS", [*botocore.handlers.BUILTIN_HANDLERS, *filler.handlers()])
    return filler


@pytest.fixture
def aws_env(airflow_db, moto_url, gaps, monkeypatch):
    """A clean moto, connections to it, and the gap filler: what every AWS test starts from."""
    urllib.request.urlopen(urllib.request.Request(f"{moto_url}/moto-api/reset", method="POST"), timeout=30).read()
    key = iam_user(moto_url, AIRFLOW_USER)
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps({
        "conn_type": "aws", "login": key["AccessKeyId"], "password": key["SecretAccessKey"],
        # One attempt: moto answers the APIs it lacks with errors botocore would retry for
        # seconds; a real account gets the provider's default retries.
        "extra": {"endpoint_url": moto_url, "config_kwargs": {"retries": {"max_attempts": 1, "mode": "standard"}}}}))
    monkeypatch.setenv("AIRFLOW_CONN_HF_DEFAULT", json.dumps({"conn_type": "generic", "password": HF_TOKEN}))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    return moto_url


def client(moto_url: str, service: str, region: str):
    """A client of a fresh session (boto3's default one may predate the gap filler's handlers)."""
    return boto3.session.Session().client(service, endpoint_url=moto_url, region_name=region,
                                          aws_access_key_id="testing", aws_secret_access_key="testing")


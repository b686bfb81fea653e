"""The least-privilege policy users give the Airflow identity (include/iam/airflow-policy.json), as
moto enforces it: a deploy from an empty account and its full teardown run as an IAM user holding
only that policy, and the same user without the network statement is refused at the network step.
(That the policy grants exactly what the runs call is checked from moto's request log over the
end-to-end runs: tests/e2e/conftest.py.)

moto 5.2.5 checks each call's action against the user's policies once auth is on (POST
/moto-api/reset-auth), for the services that go through its responses (EC2, IAM, EKS, FSx, S3);
it evaluates neither resources (but S3's) nor conditions, and the operations the gap filler
answers in moto's place (EKS add-ons, FSx data repository associations, Service Quotas) are not
checked. Two stand-ins, each for a moto quirk: the empty payload's hash sent as a signed
X-Amz-Content-SHA256 header on bodiless requests (moto's check hashes a bodiless request's
headers as its payload, failing every GET and DELETE of a REST service with SignatureDoesNotMatch;
SigV4 takes the header's value when present, botocore.auth.SigV4Auth.canonical_request), and
s3:HeadBucket granted (moto asks it for HeadBucket; AWS asks s3:ListBucket, S3 API reference,
"HeadBucket")."""

from __future__ import annotations

import hashlib
import json
import urllib.request

import botocore.handlers
import pytest

from tests.aws.conftest import CREATE, client
from tests.aws.test_empty_account import holdings
from tests.aws.test_provision import PLANS, load
from tests.dag_runs import run_dag
from tests.e2e.conftest import POLICY

EMPTY_PAYLOAD = hashlib.sha256(b"").hexdigest()


def _empty_payload_hash(request, **_):
    if not request.body:
        request.headers["X-Amz-Content-SHA256"] = EMPTY_PAYLOAD


def _enforce(moto_url: str, on: bool) -> None:
    urllib.request.urlopen(urllib.request.Request(f"{moto_url}/moto-api/reset-auth", data=b"0" if on else b"inf",
                                                  method="POST", headers={"Content-Type": "text/plain"}), timeout=30)


@pytest.fixture
def as_policy_holder(aws_env, gaps, monkeypatch):
    """Make the AWS connection an IAM user holding the policy (less the statements named), with
    moto's checks on for as long as the test runs."""
    # A stand-in for a moto bug, not for AWS: the calls still reach the moto server and are checked
    # there; each bodiless request only carries the header AWS clients may send (module docstring).
    monkeypatch.setattr(botocore.handlers, "BUILTIN_HANDLERS",
                        [*botocore.handlers.BUILTIN_HANDLERS, ("before-sign.*.*", _empty_payload_hash)])

    def holder(name: str, without: tuple[str, ...] = ()) -> None:
        document = json.loads(POLICY.read_text())
        document["Statement"] = [s for s in document["Statement"] if s["Sid"] not in without]
        document["Statement"].append({"Sid": "MotoAsksHeadBucket", "Effect": "Allow", "Action": "s3:HeadBucket",
                                      "Resource": "*"})
        iam = client(aws_env, "iam", "us-east-1")
        arn = iam.create_policy(PolicyName=name, PolicyDocument=json.dumps(document))["Policy"]["Arn"]
        iam.create_user(UserName=name)
        iam.attach_user_policy(UserName=name, PolicyArn=arn)
        key = iam.create_access_key(UserName=name)["AccessKey"]
        monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps({
            "conn_type": "aws", "login": key["AccessKeyId"], "password": key["SecretAccessKey"],
            "extra": {"endpoint_url": aws_env, "config_kwargs": {"retries": {"max_attempts": 1, "mode": "standard"}}}}))

    yield holder
    _enforce(aws_env, False)


def test_a_deploy_and_its_teardown_run_with_only_the_policy(aws_env, as_policy_holder):
    conf = {**PLANS["gpu"], **CREATE}
    as_policy_holder("llm-on-eks-airflow")
    before = holdings(aws_env, conf["region"])
    _enforce(aws_env, True)
    up = run_dag(load("aws_provision"), conf)
    down = run_dag(load("aws_teardown"), {**conf, "delete_cluster": True, "delete_fsx": True, "delete_artifacts": True})
    _enforce(aws_env, False)
    assert up.failed() == [], up.states
    assert down.failed() == [], down.states
    assert holdings(aws_env, conf["region"]) == before


def test_a_missing_statement_is_refused_by_moto(aws_env, as_policy_holder, capfd):
    as_policy_holder("no-network", without=("ClusterNetworkMadeAndRemovedWithTheCluster",))
    _enforce(aws_env, True)
    result = run_dag(load("aws_provision"), {**PLANS["trn2"], **CREATE})
    _enforce(aws_env, False)
    assert result.states["provision.ensure_network"] == "failed"
    assert result.states["provision.ensure_cluster"] == "upstream_failed"
    assert "is not authorized to perform: ec2:CreateVpc" in capfd.readouterr().out

"""EKS tokens on the local control plane: the API server's webhook (local_stack/eks_authenticator.py)
lets in what EKS lets in and refuses the rest, and the tasks' cluster access (kube/access.py)
renews credentials and tokens through a wait longer than an assumed role's session.

Tokens are minted with the Amazon provider's own ``fetch_access_token_for_cluster`` (what the
kubeconfig's exec plugin runs) and sent to the API server as a bearer token.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import time
from datetime import UTC, datetime, timedelta
from unittest import mock

import boto3
import httpx
import pytest

from local_stack.aws import iam_user
from local_stack.aws_gaps import cluster_endpoint
from local_stack.eks_authenticator import map_identity
from tests.aws.conftest import AIRFLOW_USER, ROLE, SUBNETS, client

REGION = "us-west-2"
CLUSTER = "auth-test"
SESSION_S = 12  # the short-lived role's session; the API server caches an answer for 10 s


@pytest.fixture
def cluster(aws_env, eks_access, tmp_path):
    """An EKS cluster of the local AWS, its API server URL and a CA file to check it with."""
    client(aws_env, "eks", REGION).create_cluster(name=CLUSTER, roleArn=ROLE, resourcesVpcConfig={"subnetIds": SUBNETS})
    served = cluster_endpoint(eks_access.kubeconfig)
    ca = tmp_path / "ca.crt"
    ca.write_bytes(base64.b64decode(served["certificateAuthority"]["data"]))
    return served["endpoint"], str(ca)


def _token(aws_url: str, key: dict[str, str], cluster: str = CLUSTER) -> str:
    from airflow.providers.amazon.aws.utils.eks_get_token import fetch_access_token_for_cluster

    session = boto3.Session(aws_access_key_id=key["AccessKeyId"], aws_secret_access_key=key["SecretAccessKey"],
                            region_name=REGION)
    return fetch_access_token_for_cluster(cluster, f"{aws_url}/?Action=GetCallerIdentity&Version=2011-06-15",
                                          REGION, session=session)


def _whoami(cluster, token: str) -> httpx.Response:
    server, ca = cluster
    return httpx.post(f"{server}/apis/authentication.k8s.io/v1/selfsubjectreviews", verify=ca, timeout=30,
                      headers={"Authorization": f"Bearer {token}"},
                      json={"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"})


def _forge(token: str) -> str:
    """The same request with another signature: what someone without the secret could send."""
    body = token.removeprefix("k8s-aws-v1.")
    url = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)).decode()
    url = re.sub(r"X-Amz-Signature=(\w)", lambda m: "X-Amz-Signature=" + ("0" if m[1] != "0" else "1"), url)
    return "k8s-aws-v1." + base64.urlsafe_b64encode(url.encode()).decode().rstrip("=")


def test_tokens_are_let_in_only_as_eks_lets_them_in(aws_env, cluster):
    key = iam_user(aws_env, AIRFLOW_USER)
    good = _whoami(cluster, _token(aws_env, key))
    assert good.status_code == 201, good.text
    user = good.json()["status"]["userInfo"]
    assert user["username"] == AIRFLOW_USER and "system:masters" in user["groups"]
    assert user["extra"]["arn"] == [f"arn:aws:iam::123456789012:user/{AIRFLOW_USER}"]

    stranger = iam_user(aws_env, "not-mapped")  # a valid identity aws-auth does not map
    refused = {
        "forged": _forge(_token(aws_env, key)),
        "unknown identity": _token(aws_env, stranger),
        "unknown key": _token(aws_env, {"AccessKeyId": "AKIAAAAAAAAAAAAAAAAA", "SecretAccessKey": "x"}),
        "another cluster": _token(aws_env, key, cluster="not-this-one"),
        "not an EKS token": "k8s-aws-v1.aGVsbG8",
    }
    # A token signed 16 minutes ago, by the test's own signer: botocore signs at its clock's now.
    signed_long_ago = datetime.now(UTC) - timedelta(minutes=16)
    with mock.patch("botocore.auth.get_current_datetime", return_value=signed_long_ago.replace(tzinfo=None)):
        refused["expired"] = _token(aws_env, key)
    answers = {why: _whoami(cluster, token).status_code for why, token in refused.items()}
    assert answers == dict.fromkeys(refused, 401)


def test_a_wait_outlives_an_assumed_role_session(aws_env, cluster, eks_access, namespace, monkeypatch):
    """A deferred wait (the trigger holds one client for its run) keeps working past two sessions
    of a role assumed for 12 s; the provider's kubeconfig used as is, with the credentials frozen
    at its start, is refused once its session ends: the test can tell the two apart."""
    from airflow.providers.amazon.aws.hooks.eks import EksHook
    from kubernetes import client as k8s
    from kubernetes import config
    from moto.sts.models import sts_backends

    from llm_on_eks.triggers.kube import ReleaseReadyTrigger

    iam = client(aws_env, "iam", REGION)
    role = iam.create_role(RoleName="short-lived", AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": []}))
    map_identity(eks_access.kubeconfig, role["Role"]["Arn"], "short-lived", ["system:masters"])
    key = iam_user(aws_env, AIRFLOW_USER)
    monkeypatch.setenv("AIRFLOW_CONN_AWS_SHORT", json.dumps({
        "conn_type": "aws", "login": key["AccessKeyId"], "password": key["SecretAccessKey"],
        # The provider assumes a role at service_config's STS endpoint, never at endpoint_url.
        "extra": {"endpoint_url": aws_env, "service_config": {"sts": {"endpoint_url": aws_env}},
                  "role_arn": role["Role"]["Arn"],
                  "assume_role_kwargs": {"DurationSeconds": SESSION_S},
                  # botocore refuses DurationSeconds under 900 before sending; STS's minimum.
                  "config_kwargs": {"parameter_validation": False}}}))
    # Never ready (a paused Deployment makes no pods), so the wait runs to its deadline.
    k8s.AppsV1Api(eks_access.api_client()).create_namespaced_deployment(namespace, {
        "metadata": {"name": "never"}, "spec": {"paused": True, "replicas": 1, "selector": {"matchLabels": {"a": "b"}},
        "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "x"}]}}}})
    access = {"kubernetes_conn_id": None, "aws_conn_id": "aws_short", "region": REGION, "cluster": CLUSTER,
              "namespace": namespace}
    sessions = sts_backends["123456789012"]["aws"].assumed_roles
    before = len(sessions)

    hook = EksHook(aws_conn_id="aws_short", region_name=REGION)
    with hook.generate_config_file_with_credentials(eks_cluster_name=CLUSTER, pod_namespace=namespace) as (path, _):
        frozen = k8s.CoreV1Api(config.new_client_from_config(config_file=path))
        frozen.list_namespaced_pod(namespace)  # let in while its session lasts

        async def wait() -> dict:
            trigger = ReleaseReadyTrigger(access=access, release="never", multi_node=False,
                                          deadline=time.time() + 2.5 * SESSION_S, budget_s=30, poll_s=3)
            return (await anext(trigger.run())).payload

        started = time.monotonic()
        event = asyncio.run(wait())
        assert time.monotonic() - started > 2 * SESSION_S
        # The wait ran to its deadline and answered as a wait does, not with a 401.
        assert event["status"] == "error" and event["result"] == {"unschedulable": []}, event
        assert len(sessions) - before >= 3  # renewed: more sessions than the wait started with
        with pytest.raises(k8s.ApiException) as refused:
            frozen.list_namespaced_pod(namespace)
        assert refused.value.status == 401


def test_an_identity_without_cluster_access_is_refused_naming_the_access_entry(aws_env, cluster, eks_access,
                                                                               namespace, monkeypatch):
    """provision.check_access: the API server answers the SelfSubjectAccessReviews. The Airflow
    identity (system:masters here, an access entry's admin on EKS) passes; one the cluster maps
    without any binding, and one it does not know, are refused with the access entry to add; with
    grant_cluster_access the step adds that entry (the gap filler's stand-in maps it in the local
    authenticator) and passes."""
    from airflow.sdk.exceptions import AirflowFailException

    from llm_on_eks.kube.access_review import reviews
    from llm_on_eks.operators.cluster_access import CheckClusterAccessOperator

    def check(conn_id: str, grant: bool = False):
        access = {"kubernetes_conn_id": None, "aws_conn_id": conn_id, "region": REGION, "cluster": CLUSTER,
                  "namespace": namespace}
        return CheckClusterAccessOperator(task_id="check_access", cluster={"grant_access": grant}, target={
            "deployment": "scout", "dry_run": False, "access": access}).run({})

    assert check("aws_default") == {"cluster": CLUSTER, "allowed": len(reviews(namespace))}
    for user, mapped in (("reader", True), ("stranger", False)):
        key = iam_user(aws_env, user)
        monkeypatch.setenv(f"AIRFLOW_CONN_AWS_{user.upper()}", json.dumps({
            "conn_type": "aws", "login": key["AccessKeyId"], "password": key["SecretAccessKey"],
            "extra": {"endpoint_url": aws_env}}))
        arn = f"arn:aws:iam::123456789012:user/{user}"
        if mapped:
            map_identity(eks_access.kubeconfig, arn, user, [])
        with pytest.raises(AirflowFailException) as refused:
            check(f"aws_{user}")
        message = str(refused.value)
        assert (f"does not let the Airflow identity get namespaces, create namespaces, get coordination.k8s.io/leases "
                f"in {namespace}" if mapped else "does not know the Airflow identity (401 Unauthorized)") in message
        assert (f"aws eks create-access-entry --cluster-name {CLUSTER} --principal-arn {arn}; aws eks "
                "associate-access-policy") in message
    granted = check("aws_stranger", grant=True)
    assert granted["granted"] == "arn:aws:iam::123456789012:user/stranger"
    assert granted["allowed"] == len(reviews(namespace))

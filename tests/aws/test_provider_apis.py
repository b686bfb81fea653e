"""Every Amazon and cncf-kubernetes provider API the pipeline calls, called as the pipeline calls
it, against the moto server with the pinned providers: an upgrade that renames, moves or
re-signs one fails here, not in a user's deploy (9.39.0 changed
``EksHook.generate_config_file`` to take a credentials file, and the EKS path broke unseen).
"""

from __future__ import annotations

import asyncio
import logging
import os

from tests.aws.conftest import ROLE, SUBNETS, client

REGION = "us-west-2"


def test_eks_hook_waiters_and_kubeconfig(aws_env):
    from airflow.providers.amazon.aws.hooks.eks import EksHook
    from airflow.providers.amazon.aws.hooks.sts import StsHook
    from airflow.providers.amazon.aws.utils.eks_get_token import fetch_access_token_for_cluster
    from airflow.providers.amazon.aws.utils.waiter_with_logging import wait

    client(aws_env, "eks", REGION).create_cluster(name="c", roleArn=ROLE, resourcesVpcConfig={"subnetIds": SUBNETS})
    hook = EksHook(aws_conn_id="aws_default", region_name=REGION)
    # The waiters the steps wait with (in the worker; the triggers run the same ones).
    for name in ("cluster_active", "nodegroup_active", "addon_active", "nodegroup_deleted", "cluster_deleted"):
        assert hook.get_waiter(name).name
    wait(waiter=hook.get_waiter("cluster_active"), waiter_delay=1, waiter_max_attempts=3, args={"name": "c"},
         failure_message="failed", status_message="status:", status_args=["cluster.status"])

    # What kube/access.py mints an EKS token with, in the worker's process.
    session = hook.get_session(region_name=REGION)
    credentials = session.get_credentials().get_frozen_credentials()
    assert credentials.access_key and credentials.secret_key
    assert StsHook(aws_conn_id="aws_default", region_name=REGION).conn_client_meta.endpoint_url == aws_env
    token = fetch_access_token_for_cluster("c", f"{aws_env}/?Action=GetCallerIdentity&Version=2011-06-15", REGION,
                                           session)
    assert token.startswith("k8s-aws-v1.")


def test_triggers_and_utilities(aws_env):
    from airflow.providers.amazon.aws.triggers.eks import (
        EksCreateClusterTrigger,
        EksCreateNodegroupTrigger,
        EksDeleteNodegroupTrigger,
    )
    from airflow.providers.amazon.aws.utils import build_resource_in_use_retry_args, validate_execute_complete_event

    client(aws_env, "eks", REGION).create_cluster(name="c", roleArn=ROLE, resourcesVpcConfig={"subnetIds": SUBNETS})
    common = {"waiter_delay": 1, "waiter_max_attempts": 3, "aws_conn_id": "aws_default", "region_name": REGION}
    triggers = [EksCreateClusterTrigger(cluster_name="c", **common),
                EksCreateNodegroupTrigger(cluster_name="c", nodegroup_name="n", **common),
                EksDeleteNodegroupTrigger(cluster_name="c", nodegroup_name="n", **common)]
    for trigger in triggers:
        classpath, kwargs = trigger.serialize()
        assert classpath == f"{type(trigger).__module__}.{type(trigger).__qualname__}"
        assert kwargs["cluster_name"] == "c" and kwargs["region_name"] == REGION

    async def first_event():
        return (await anext(triggers[0].run())).payload

    assert asyncio.run(first_event())["status"] == "success"
    assert validate_execute_complete_event({"status": "success"}) == {"status": "success"}
    assert "retry" in build_resource_in_use_retry_args(logging.getLogger(__name__))


def test_storage_and_secret_hooks(aws_env):
    from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook
    from airflow.providers.amazon.aws.hooks.secrets_manager import SecretsManagerHook
    from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook

    from llm_on_eks.aws.fsx import FsxHook

    assert AwsBaseHook(aws_conn_id="aws_default", client_type="ec2", region_name=REGION).get_conn().meta.region_name \
        == REGION
    client(aws_env, "s3", REGION).create_bucket(Bucket="provider-apis", CreateBucketConfiguration={"LocationConstraint": REGION})
    client(aws_env, "s3", REGION).put_object(Bucket="provider-apis", Key="k", Body=b"x")
    s3 = S3Hook(aws_conn_id="aws_default", region_name=REGION)
    assert s3.check_for_key("k", bucket_name="provider-apis") and s3.get_conn().head_bucket(Bucket="provider-apis")
    client(aws_env, "secretsmanager", REGION).create_secret(Name="s", SecretString="v")
    assert SecretsManagerHook(aws_conn_id="aws_default", region_name=REGION).get_secret("s") == "v"
    fsx = FsxHook(aws_conn_id="aws_default", region_name=REGION)
    for name in ("file_system_available", "association_available", "file_system_deleted"):
        assert fsx.get_waiter(name).name
    os.environ["AIRFLOW_CONN_PROVIDER_API_K8S"] = '{"conn_type": "kubernetes", "extra": {"kube_config_path": "/x"}}'
    try:
        assert KubernetesHook(conn_id="provider_api_k8s")._get_field("kube_config_path") == "/x"
    finally:
        del os.environ["AIRFLOW_CONN_PROVIDER_API_K8S"]

"""A hostile user's confs: each refused by the plan (before anything exists) with the field
named, and every patterned one by the trigger form too; both read one table (llm_on_eks.inputs)."""

from __future__ import annotations

import pytest
from airflow.sdk import ParamsDict
from airflow.sdk.exceptions import ParamValidationError

from llm_on_eks.catalog import catalog_index
from llm_on_eks.inputs import PATTERNS, Allowed, InputError, check_known, endpoint_problem
from llm_on_eks.params import deploy_form, teardown_form
from llm_on_eks.plan import PlanError, build_plan, build_teardown_plan

MODELS, INSTANCE_TYPES = catalog_index()
BASE = {"model": "llama4-scout", "accelerator": "gpu", "cluster_name": "llm-inference", "region": "us-west-2"}
ARN = "arn:aws:iam::123456789012:role/eks-nodes"
CREATE = {"create_cluster": True, "cluster_role_arn": ARN, "node_role_arn": ARN,
          "subnet_ids": ["subnet-0a1b2c3d", "subnet-0e1f2a3b"]}

# (conf, the field the error must name)
PATTERNED = [
    ({"cluster_name": "llm-inference\n"}, "cluster_name"),
    ({"cluster_name": "-llm"}, "cluster_name"),
    ({"cluster_name": "llm inference"}, "cluster_name"),
    ({"cluster_name": "x" * 101}, "cluster_name"),
    ({"cluster_name": ""}, "cluster_name"),
    ({"cluster_name": "llm.inference"}, "cluster_name"),
    ({"region": "us-west-2\n"}, "region"),
    ({"region": "US-WEST-2"}, "region"),
    ({"region": "us-west-2a"}, "region"),
    ({"region": ""}, "region"),
    ({"namespace": "llm-serving\n"}, "namespace"),
    ({"namespace": "LLM"}, "namespace"),
    ({"namespace": "a_b"}, "namespace"),
    ({"namespace": "-a"}, "namespace"),
    ({"namespace": "a" * 64}, "namespace"),
    ({"namespace": "kube-system"}, "namespace"),
    ({"namespace": "kube-public"}, "namespace"),
    ({"namespace": "kube-node-lease"}, "namespace"),
    ({"namespace": "default"}, "namespace"),
    ({"namespace": ""}, "namespace"),
    ({"deployment_name": "scout\n"}, "deployment_name"),
    ({"deployment_name": "Scout"}, "deployment_name"),
    ({"deployment_name": "1scout"}, "deployment_name"),
    ({"deployment_name": "scout-"}, "deployment_name"),
    ({"deployment_name": "x" * 41}, "deployment_name"),
    ({"kubernetes_version": "1.31\n"}, "kubernetes_version"),
    ({"kubernetes_version": "v1.31"}, "kubernetes_version"),
    ({"cluster_role_arn": f"{ARN}\n"}, "cluster_role_arn"),
    ({"cluster_role_arn": "arn:aws:iam::12345:role/x"}, "cluster_role_arn"),
    ({"node_role_arn": f"{ARN}\n"}, "node_role_arn"),
    ({"node_role_arn": "arn:aws:iam::123456789012:role/a b"}, "node_role_arn"),
    ({"subnet_ids": ["subnet-0abc\n"]}, "subnet_ids"),
    ({"subnet_ids": ["vpc-0abc"]}, "subnet_ids"),
    ({"subnet_ids": ["subnet-0abc", "subnet-0abc"]}, "subnet_ids"),
    ({"security_group_ids": ["sg-0abc\n"]}, "security_group_ids"),
    ({"security_group_ids": ["sg-XYZ"]}, "security_group_ids"),
    ({"fsx_subnet_id": "subnet-0abc\n"}, "fsx_subnet_id"),
    ({"capacity_reservation_id": "cr-0a1b2c3d4e5f60718\n"}, "capacity_reservation_id"),
    ({"capacity_reservation_id": "cr-0A1B2C3D4E5F60718"}, "capacity_reservation_id"),
    ({"capacity_reservation_id": "cr-0a1b2c3d"}, "capacity_reservation_id"),
    ({"nodepool": "GPU_Pool"}, "nodepool"),
    ({"nodepool": "a" * 64}, "nodepool"),
    ({"artifact_bucket": "my-bucket\n"}, "artifact_bucket"),
    ({"artifact_bucket": "My-Bucket"}, "artifact_bucket"),
    ({"artifact_bucket": "xn--bucket"}, "artifact_bucket"),
    ({"artifact_bucket": "sthree-bucket"}, "artifact_bucket"),
    ({"artifact_bucket": "amzn-s3-demo-bucket"}, "artifact_bucket"),
    ({"artifact_bucket": "a..b"}, "artifact_bucket"),
    ({"artifact_bucket": "192.168.5.4"}, "artifact_bucket"),
    ({"artifact_bucket": "bucket-s3alias"}, "artifact_bucket"),
    ({"artifact_bucket": "bucket--ol-s3"}, "artifact_bucket"),
    ({"artifact_bucket": "bucket.mrap"}, "artifact_bucket"),
    ({"artifact_bucket": "bucket--x-s3"}, "artifact_bucket"),
    ({"artifact_bucket": "bucket--table-s3"}, "artifact_bucket"),
    ({"artifact_bucket": "ab"}, "artifact_bucket"),
    ({"artifact_bucket": "bucket-"}, "artifact_bucket"),
    ({"aws_conn_id": "aws_default\n"}, "aws_conn_id"),
    ({"aws_conn_id": ""}, "aws_conn_id"),
    ({"hf_token_conn_id": ""}, "hf_token_conn_id"),
    ({"hf_token_conn_id": "hf default"}, "hf_token_conn_id"),
    ({"kubernetes_conn_id": "k8s\n"}, "kubernetes_conn_id"),
    ({"hf_token_secret_id": "llm-on-eks/hf token"}, "hf_token_secret_id"),
    ({"endpoint_url": "ftp://example.com"}, "endpoint_url"),
    ({"endpoint_url": "https://example.com\n"}, "endpoint_url"),
    ({"endpoint_url": "https://user:pass@example.com"}, "endpoint_url"),
    ({"endpoint_url": "example.com"}, "endpoint_url"),
]
# Well formed, but not allowed by the Airflow deployment or not coherent: only the plan can tell.
PLAN_ONLY = [
    ({"aws_conn_id": "prod_admin"}, "aws_conn_id"),
    ({"kubernetes_conn_id": "other_cluster"}, "kubernetes_conn_id"),
    ({"hf_token_conn_id": "postgres_default"}, "hf_token_conn_id"),
    ({"hf_token_secret_id": "prod/db-password"}, "hf_token_secret_id"),
    ({"endpoint_url": "http://169.254.169.254/latest"}, "endpoint_url"),
    ({"endpoint_url": "http://[fd00:ec2::254]/"}, "endpoint_url"),
    ({"endpoint_url": "http://[fe80::1]:8000"}, "endpoint_url"),
    ({"endpoint_url": "http://[::ffff:169.254.169.254]/"}, "endpoint_url"),
    ({"endpoint_url": "http://127.0.0.1:8000"}, "endpoint_url"),
    ({"endpoint_url": "http://localhost:8000"}, "endpoint_url"),
    ({"endpoint_url": "http://0.0.0.0:8000"}, "endpoint_url"),
    ({**CREATE, "subnet_ids": ["subnet-0a1b2c3d"]}, "subnet_ids"),
    ({"benchmark": True, "benchmark_input_len": 131072}, "benchmark_input_len"),
    ({"benchmark": True, "max_model_len": 8192, "benchmark_input_len": 8000, "benchmark_output_len": 500},
     "benchmark_input_len"),
]


def form(fields: dict | None = None, **conf) -> dict:
    """The form's validation: each assignment is checked, then the whole."""
    params = ParamsDict(fields or deploy_form(MODELS, "llama4-scout", INSTANCE_TYPES))
    for key, value in conf.items():
        params[key] = value
    return params.validate()


@pytest.mark.parametrize(("conf", "field"), PATTERNED + PLAN_ONLY)
def test_plan_refuses_naming_the_field(conf, field):
    with pytest.raises(PlanError) as excinfo:
        build_plan({**BASE, **conf}, allowed=Allowed())
    assert field in str(excinfo.value)


@pytest.mark.parametrize(("conf", "field"), PATTERNED)
def test_form_refuses_naming_the_field(conf, field):
    with pytest.raises(ParamValidationError) as excinfo:
        form(**conf)
    assert field in str(excinfo.value)


def test_at_least_sixty_bad_confs():
    assert len(PATTERNED) + len(PLAN_ONLY) >= 60
    assert {field for _, field in PATTERNED} >= set(PATTERNS)


@pytest.mark.parametrize("conf", [
    {"cluster_name": "Team_Cluster-1"},
    {"namespace": "team-a", "deployment_name": "scout"},
    {"artifact_bucket": "my.bucket-1"},
    {"hf_token_secret_id": "llm-on-eks/team-a/hf"},
    {"aws_conn_id": "llm_on_eks_prod"},
    {"endpoint_url": "https://llm.example.com/v1"},
    {"endpoint_url": "http://10.0.0.5:8000"},
    {"nodepool": "gpu.p5-reserved"},
    {**CREATE},
])
def test_good_confs_pass_form_and_plan(conf):
    build_plan(form(**{**BASE, **conf}), allowed=Allowed())


def test_configured_allow_list_and_loopback(monkeypatch):
    monkeypatch.setenv("AIRFLOW__LLM_ON_EKS__ALLOWED_CONN_IDS", "team_*")
    monkeypatch.setenv("AIRFLOW__LLM_ON_EKS__ALLOWED_SECRET_IDS", "team/*")
    monkeypatch.setenv("AIRFLOW__LLM_ON_EKS__ALLOW_LOOPBACK_ENDPOINT", "True")
    allowed = Allowed.from_config()
    assert allowed == Allowed(conn_ids=("team_*",), secret_ids=("team/*",), loopback_endpoint=True)
    conf = {**BASE, "aws_conn_id": "team_aws", "hf_token_conn_id": "team_hf", "hf_token_secret_id": "team/hf",
            "endpoint_url": "http://127.0.0.1:8000"}
    assert build_plan(conf, allowed=allowed)["serving"]["base_url"] == "http://127.0.0.1:8000"
    with pytest.raises(PlanError, match="aws_conn_id: connection 'aws_default' is not allowed"):
        build_plan(BASE, allowed=allowed)


@pytest.mark.parametrize(("url", "problem"), [
    ("https://llm.example.com", None),
    ("http://169.254.170.2/v2/credentials", "link-local or instance metadata"),
    ("http://[fd00:ec2::254]", "link-local or instance metadata"),
    ("http://[::1]:8000", "loopback"),
    ("http://app.localhost", "loopback"),
    ("http://224.0.0.1", "not a host address"),
    ("file:///etc/passwd", "only http and https"),
    ("http://[0EG1", "not a valid URL"),
    ("http://llm.example.com:99999", "not a valid URL"),
])
def test_endpoint_problem(url, problem):
    found = endpoint_problem(url)
    assert found is None if problem is None else problem in found


def test_unknown_conf_keys_are_refused_with_the_known_ones():
    known = deploy_form(MODELS, "llama4-scout", INSTANCE_TYPES)
    with pytest.raises(InputError) as excinfo:
        check_known({"model": "llama4-scout", "max_model_length": 8192}, known)
    assert "unknown conf key(s) max_model_length" in str(excinfo.value)
    assert "max_model_len" in str(excinfo.value)
    check_known({"model": "llama4-scout", "max_model_len": 8192}, known)


@pytest.mark.parametrize(("conf", "field", "form_refuses"), [
    ({"namespace": "kube-system"}, "namespace", True),
    ({"cluster_name": "c\n"}, "cluster_name", True),
    ({"artifact_bucket": "xn--b1"}, "artifact_bucket", True),
    ({"aws_conn_id": "prod_admin"}, "aws_conn_id", False),
])
def test_teardown_plan_refuses_naming_the_field(conf, field, form_refuses):
    conf = {"deployment_name": "scout", **conf}
    with pytest.raises(PlanError, match=field):
        build_teardown_plan(conf, allowed=Allowed())
    if form_refuses:
        with pytest.raises(ParamValidationError, match=field):
            form(teardown_form(), **conf)
    else:
        form(teardown_form(), **conf)

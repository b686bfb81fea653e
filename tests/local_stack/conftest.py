"""The EKS token tests need the AWS half's fixtures and a fresh namespace on the control plane."""

from tests.aws.conftest import aws_env, gaps, moto_url  # noqa: F401 - pytest finds fixtures by name
from tests.integration.conftest import api, namespace  # noqa: F401

"""The end-to-end run needs every real part at once: the moto server and its gap filler (tests/aws),
the local control plane and the vLLM CPU server (both registered in tests/conftest.py)."""

from tests.aws.conftest import aws_env, gaps, moto_url  # noqa: F401

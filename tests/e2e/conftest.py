"""The end-to-end run needs every real part at once: the moto server and its gap filler (tests/aws),
the local control plane (tests/integration) and the vLLM CPU server (tests/serving)."""

from tests.aws.conftest import aws_env, gaps, moto_url  # noqa: F401
from tests.serving.conftest import vllm_server  # noqa: F401

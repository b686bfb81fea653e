"""The control-plane tests here use the same fresh-namespace fixture as tests/integration."""

from tests.integration.conftest import api, namespace  # noqa: F401 - pytest finds fixtures by name

"""What a failed check may say of a response body: the server's own error message, cut and
scrubbed; any other body (a page of whatever endpoint_url names) only by its size."""

from __future__ import annotations

import json

import pytest

from llm_on_eks.serving.smoke import BODY_EXCERPT_CHARS, SmokeTestFailed, error_excerpt


@pytest.mark.parametrize(("body", "said"), [
    (json.dumps({"error": {"message": "max_tokens is too large", "type": "BadRequestError"}}), "max_tokens is too large"),
    (json.dumps({"object": "error", "message": "At most 0 image(s) may be provided"}), "At most 0 image(s)"),
    (json.dumps({"detail": "Not Found"}), "Not Found"),
    (json.dumps({"error": {"message": "bad token hf_abcdefghijklmnop1234"}}), "bad token hf_***"),
    ("<html>internal admin page: db password hunter2</html>", "53 bytes, not a JSON error"),
    (json.dumps({"AccessKeyId": "AKIA", "SecretAccessKey": "s3cr3t"}), "bytes of JSON without an error message"),
    (json.dumps(["a list"]), "bytes of JSON without an error message"),
])
def test_error_excerpt(body, said):
    assert said in error_excerpt(body)


def test_failure_message_carries_no_foreign_body():
    page = "internal admin page: db password hunter2"
    message = str(SmokeTestFailed("chat", "unexpected answer", elapsed_s=1.0, status=500, body=page))
    assert "hunter2" not in message and f"{len(page)} bytes" in message
    long = json.dumps({"error": {"message": "x" * 1000}})
    assert len(error_excerpt(long)) == BODY_EXCERPT_CHARS + 3

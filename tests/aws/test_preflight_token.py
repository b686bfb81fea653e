"""The HF token check of preflight, without a server: any refusal to read the token fails the
run before anything is created; it is never "unknown" (an unknown check lets the run go on)."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from llm_on_eks.aws import preflight
from llm_on_eks.plan import build_plan

PLAN = build_plan({"model": "llama4-scout", "hf_token_secret_id": "llm-on-eks/hf"})


@pytest.mark.parametrize(("code", "detail"), [
    ("AccessDeniedException", "failed with AccessDeniedException"),
    ("DecryptionFailure", "failed with DecryptionFailure"),
    ("ResourceNotFoundException", "llm-on-eks/hf does not exist"),
])
def test_unreadable_token_fails(monkeypatch, code, detail):
    def refuse(aws, hf_token):
        raise ClientError({"Error": {"Code": code, "Message": "no"}}, "GetSecretValue")

    monkeypatch.setattr("llm_on_eks.aws.preflight.read_hf_token", refuse)
    check = preflight.check("HF token source", lambda: preflight.hf_token_source(PLAN["aws"], PLAN["hf_token"]))
    assert check["status"] == "fail" and detail in check["detail"]

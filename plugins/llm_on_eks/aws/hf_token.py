"""Where the Hugging Face token comes from: an Airflow connection's password, or a Secrets
Manager secret named in the params. Read inside the task that needs it and handed straight to
the Kubernetes API: never returned from a task, logged, templated or pushed to XCom."""

from __future__ import annotations

import base64
import json

from airflow.sdk import BaseHook
from airflow.sdk.log import mask_secret

from llm_on_eks.plan.types import AwsSection, HfTokenSection

TOKEN_KEYS = ("token", "HF_TOKEN", "hf_token")


def token_origin(hf_token: HfTokenSection) -> str:
    """Where the token is read from, for logs and dry runs: never the value."""
    return (f"Secrets Manager secret {hf_token['secrets_manager_id']}" if hf_token["secrets_manager_id"]
            else f"Airflow connection {hf_token['conn_id']} (password)")


def _from_secrets_manager(aws: AwsSection, secret_id: str) -> str:
    from airflow.providers.amazon.aws.hooks.secrets_manager import SecretsManagerHook

    hook = SecretsManagerHook(aws_conn_id=aws["conn_id"], region_name=aws["region"])
    value = hook.get_secret(secret_id)
    try:
        document = json.loads(value)
    except ValueError:
        return value.strip()
    if isinstance(document, dict):
        for key in TOKEN_KEYS:
            if document.get(key):
                return document[key]
        raise ValueError(f"secret {secret_id!r} is JSON without any of the keys {', '.join(TOKEN_KEYS)}")
    return value.strip()


def read_hf_token(aws: AwsSection, hf_token: HfTokenSection) -> str:
    """The token, registered with the log masker; ``aws`` reaches Secrets Manager."""
    if hf_token["secrets_manager_id"]:
        token = _from_secrets_manager(aws, hf_token["secrets_manager_id"])
    else:
        token = (BaseHook.get_connection(hf_token["conn_id"]).password or "").strip()
    if not token:
        where = hf_token["secrets_manager_id"] or f"connection {hf_token['conn_id']!r} (password field)"
        raise ValueError(f"no Hugging Face token found in {where}")
    # A connection password is masked in task logs already; a Secrets Manager value is not until
    # it is registered here. Either way, any log line that would carry it shows *** instead. The
    # base64 form too: it is what a Secret's data holds, and what a Kubernetes response carries.
    mask_secret(token)
    mask_secret(base64.b64encode(token.encode()).decode())
    return token

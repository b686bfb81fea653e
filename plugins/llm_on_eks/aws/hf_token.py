"""Where the Hugging Face token comes from: an Airflow connection's password, or a Secrets
Manager secret named in the params. Read inside the task that needs it and handed straight to
the Kubernetes API: never returned from a task, logged, templated or pushed to XCom."""

from __future__ import annotations

import json

from llm_on_eks.plan import Plan

TOKEN_KEYS = ("token", "HF_TOKEN", "hf_token")


def token_origin(plan: Plan) -> str:
    """Where the token is read from, for logs and dry runs: never the value."""
    source = plan["hf_token"]
    return (f"Secrets Manager secret {source['secrets_manager_id']}" if source["secrets_manager_id"]
            else f"Airflow connection {source['conn_id']} (password)")


def _from_secrets_manager(plan: Plan, secret_id: str) -> str:
    from airflow.providers.amazon.aws.hooks.secrets_manager import SecretsManagerHook

    hook = SecretsManagerHook(aws_conn_id=plan["aws"]["conn_id"], region_name=plan["aws"]["region"])
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


def read_hf_token(plan: Plan) -> str:
    source = plan["hf_token"]
    if source["secrets_manager_id"]:
        token = _from_secrets_manager(plan, source["secrets_manager_id"])
    else:
        from airflow.sdk import BaseHook

        token = (BaseHook.get_connection(source["conn_id"]).password or "").strip()
    if not token:
        where = source["secrets_manager_id"] or f"connection {source['conn_id']!r} (password field)"
        raise ValueError(f"no Hugging Face token found in {where}")
    # A connection password is masked in task logs already; a Secrets Manager value is not until
    # it is registered here. Either way, any log line that would carry it shows *** instead. The
    # base64 form too: it is what a Secret's data holds, and what a Kubernetes response carries.
    import base64

    from airflow.sdk.log import mask_secret

    mask_secret(token)
    mask_secret(base64.b64encode(token.encode()).decode())
    return token

"""The Hugging Face token never shows: not in a task log, an XCom value or a rendered template
field, whether it comes from the hf_default connection or a Secrets Manager secret (moto's).
Preflight reads it (so the runs below really handle it) and reports only where it was found."""

from __future__ import annotations

import json

import pytest

from tests.aws.conftest import CREATE, HF_TOKEN, client
from tests.aws.test_provision import PLANS, load

SECRET_TOKEN = "hf_SECRETSMGR_n0tInL0gs_3f9a77c2d41b"


def everything_recorded(dag_id: str, run_id: str) -> str:
    """XCom values (every key) and rendered template fields of the run, as text."""
    from airflow.models.renderedtifields import RenderedTaskInstanceFields
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        xcoms = session.query(XComModel).filter(XComModel.dag_id == dag_id, XComModel.run_id == run_id).all()
        rendered = session.query(RenderedTaskInstanceFields).filter(
            RenderedTaskInstanceFields.dag_id == dag_id, RenderedTaskInstanceFields.run_id == run_id).all()
        assert xcoms and rendered, "nothing recorded: the scan below would prove nothing"
        return json.dumps([[x.key, XComModel.deserialize_value(x)] for x in xcoms]
                          + [r.rendered_fields for r in rendered], default=str)


def log_files() -> str:
    from tests.conftest import AIRFLOW_HOME

    return "\n".join(p.read_text(errors="replace") for p in (AIRFLOW_HOME / "logs").rglob("*") if p.is_file())


@pytest.mark.parametrize("source", ["connection", "secrets_manager"])
def test_hf_token_appears_nowhere(aws_env, capfd, source):
    conf = {**PLANS["trn2"], **CREATE}
    token = HF_TOKEN
    if source == "secrets_manager":
        token = SECRET_TOKEN
        client(aws_env, "secretsmanager", conf["region"]).create_secret(
            Name="llm-on-eks/hf-token", SecretString=json.dumps({"token": SECRET_TOKEN}))
        conf["hf_token_secret_id"] = "llm-on-eks/hf-token"
    dag = load("aws_provision")
    dag_run = dag.test(run_conf=conf)
    out = capfd.readouterr()
    assert str(dag_run.state) == "success"
    where = "Secrets Manager secret llm-on-eks/hf-token" if source == "secrets_manager" else "Airflow connection hf_default"
    assert f"preflight HF token source: pass (token found in {where}" in out.out  # the logs were captured
    for name, text in {"stdout": out.out, "stderr": out.err, "log files": log_files(),
                       "XComs and rendered fields": everything_recorded(dag.dag_id, dag_run.run_id)}.items():
        assert token not in text, f"the HF token leaked into {name}"

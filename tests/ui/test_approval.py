"""A deploy over the team's hourly limit waits for a person, under the real scheduler: the request
the person sees, and a rejection answered through the REST API as the UI answers it: every later
step is skipped and the local AWS holds nothing of it. Approved deploys go on to serve in
tests/ui/test_parallel_deploys.py."""

from __future__ import annotations

import json
import time

import boto3

from llm_on_eks.aws.network import tag_filters
from llm_on_eks.plan import build_plan
from tests.ui.conftest import ANSWER_AFTER_S, APPROVAL_LIMIT_USD, APPROVAL_STEP, DAG_ID, hitl_path, wait_for_run

# Scout on one p5.48xlarge, above the limit, onto a cluster of its own that does not exist.
CONF = {"model": "llama4-scout", "accelerator": "gpu", "region": "us-west-2", "namespace": "llm-approval",
        "create_cluster": True}


def _states(api, run_id: str) -> dict[str, str]:
    return {ti["task_id"]: ti["state"] for ti in api.task_instances(DAG_ID, run_id)}


def _held(airflow, run_id: str, cluster: str, timeout_s: float = 300) -> dict:
    """Trigger the run and wait until it waits for its answer; the request the person sees."""
    api = airflow.api()
    airflow.cli("dags", "trigger", DAG_ID, "--run-id", run_id, "--conf",
                json.dumps({**CONF, "deployment_name": run_id, "cluster_name": cluster}))
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        state = _states(api, run_id).get(APPROVAL_STEP)
        if state == "awaiting_input":
            time.sleep(ANSWER_AFTER_S)
            return api.get(hitl_path(DAG_ID, run_id))
        assert state not in ("success", "skipped", "failed", "upstream_failed"), _states(api, run_id)
        time.sleep(2)
    raise TimeoutError(f"{run_id}: {APPROVAL_STEP} not waiting for input within {timeout_s:.0f} s: {_states(api, run_id)}")


def _holdings(url: str, cluster: str) -> dict:
    def client(service):
        return boto3.session.Session().client(service, endpoint_url=url, region_name=CONF["region"],
                                              aws_access_key_id="testing", aws_secret_access_key="testing")

    return {"clusters": [c for c in client("eks").list_clusters()["clusters"] if c == cluster],
            "vpcs": client("ec2").describe_vpcs(Filters=tag_filters(cluster))["Vpcs"]}


def test_a_rejected_deploy_creates_nothing(local_airflow, local_aws):
    api = local_airflow.api()
    held = _held(local_airflow, "approval-rejected", "approval-rejected")
    assert held["options"] == ["Approve", "Reject"] and held["defaults"] == ["Reject"]
    hourly = build_plan({**CONF, "deployment_name": "approval-rejected"})["nodegroup"]["hourly_usd"]
    assert hourly > APPROVAL_LIMIT_USD
    assert held["subject"] == f"Deploy 'approval-rejected' at ${hourly:,.2f}/hour with a new cluster"
    assert f"${APPROVAL_LIMIT_USD:,.2f}/hour" in held["body"] and "p5.48xlarge" in held["body"]  # why, and the plan

    api.patch(hitl_path(DAG_ID, "approval-rejected"), {"chosen_options": ["Reject"]})
    assert wait_for_run(api, "approval-rejected") == "success"
    states = _states(api, "approval-rejected")
    assert states[APPROVAL_STEP] == "success"
    later = {task: state for task, state in states.items()
             if task not in ("plan_deployment", "provision.preflight", APPROVAL_STEP)}
    assert set(later.values()) == {"skipped"}, later
    answered = api.get(hitl_path(DAG_ID, "approval-rejected"))
    assert answered["chosen_options"] == ["Reject"] and answered["responded_by_user"]["name"] == "admin"
    assert _holdings(local_aws[0], "approval-rejected") == {"clusters": [], "vpcs": []}

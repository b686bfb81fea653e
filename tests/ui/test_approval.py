"""A deploy over the team's hourly limit waits for a person, under the real scheduler: answered
through the REST API as the UI answers it. Rejected, every later step is skipped and the local
AWS holds nothing of it; approved, the run goes on to create (stopped there: what comes after is
the e2e tests' and scripts/demo's)."""

from __future__ import annotations

import json
import time

import boto3

from llm_on_eks.aws.network import tag_filters
from llm_on_eks.plan import build_plan
from tests.ui.conftest import APPROVAL_LIMIT_USD, DAG_ID, wait_for_run

STEP = "provision.approve_spend"
ANSWER_AFTER_S = 10
# Scout on one p5.48xlarge, above the limit, onto a cluster of its own that does not exist.
CONF = {"model": "llama4-scout", "accelerator": "gpu", "region": "us-west-2", "namespace": "llm-approval",
        "create_cluster": True}


def _hitl(api, run_id: str) -> str:
    return f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/{STEP}/-1/hitlDetails"


def _states(api, run_id: str) -> dict[str, str]:
    return {ti["task_id"]: ti["state"] for ti in api.task_instances(DAG_ID, run_id)}


def _held(airflow, run_id: str, cluster: str, timeout_s: float = 300) -> dict:
    """Trigger the run and wait until it waits for its answer; the request the person sees."""
    api = airflow.api()
    airflow.cli("dags", "trigger", DAG_ID, "--run-id", run_id, "--conf",
                json.dumps({**CONF, "deployment_name": run_id, "cluster_name": cluster}))
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        state = _states(api, run_id).get(STEP)
        if state == "awaiting_input":
            # As a person answers: not within the second the step paused. Airflow 3.3.2's scheduler
            # can take the pausing process's exit, reported late, for a failure of the resumed try
            # (the deferral race, apache/airflow#72716): the step then asks again on its retry.
            time.sleep(ANSWER_AFTER_S)
            return api.get(_hitl(api, run_id))
        assert state not in ("success", "skipped", "failed", "upstream_failed"), _states(api, run_id)
        time.sleep(2)
    raise TimeoutError(f"{run_id}: {STEP} not waiting for input within {timeout_s:.0f} s: {_states(api, run_id)}")


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

    api.patch(_hitl(api, "approval-rejected"), {"chosen_options": ["Reject"]})
    assert wait_for_run(api, "approval-rejected") == "success"
    states = _states(api, "approval-rejected")
    assert states[STEP] == "success"
    later = {task: state for task, state in states.items()
             if task not in ("plan_deployment", "provision.preflight", STEP)}
    assert set(later.values()) == {"skipped"}, later
    answered = api.get(_hitl(api, "approval-rejected"))
    assert answered["chosen_options"] == ["Reject"] and answered["responded_by_user"]["name"] == "admin"
    assert _holdings(local_aws[0], "approval-rejected") == {"clusters": [], "vpcs": []}


def test_an_approved_deploy_goes_on_to_create(local_airflow, local_aws):
    api = local_airflow.api()
    _held(local_airflow, "approval-approved", "approval-approved")
    api.patch(_hitl(api, "approval-approved"), {"chosen_options": ["Approve"]})
    deadline = time.monotonic() + 300
    while _states(api, "approval-approved").get("provision.ensure_network") != "success":
        assert time.monotonic() < deadline, _states(api, "approval-approved")
        time.sleep(2)
    assert api.xcom(DAG_ID, "approval-approved", STEP) == {"asked": True, "answer": "Approve", "by": "admin"}
    assert len(_holdings(local_aws[0], "approval-approved")["vpcs"]) == 1
    # Stopped here: the cluster's Kubernetes side is not served on this stack.
    api.patch(f"/api/v2/dags/{DAG_ID}/dagRuns/approval-approved", {"state": "failed"})

"""The deployment's life as Airflow records it: ``register`` after a deploy succeeds,
``mark_failed`` after one fails, ``register_removal`` after a teardown. Deploys and removals are
events of one Asset, so the Airflow UI shows each deployment's history, and the idle teardown
finds every deployment it has to judge from them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from airflow.sdk import Asset, TriggerRule, task
from airflow.sdk.exceptions import AirflowSkipException

from llm_on_eks.aws import eks as rules
from llm_on_eks.naming import FAILED_AT_KEY
from llm_on_eks.plan import DEFAULTS, build_teardown_plan, is_true, teardown_params
from llm_on_eks.plan.types import AwsSection, Target
from llm_on_eks.plan_report import deployment_report
from llm_on_eks.serving.endpoint import describe_base_url

# A plain name, not a URI: a URI scheme makes Airflow load every provider's URI handlers at parse
# time (the Amazon one alone imports the S3 hook, half a second).
DEPLOYMENTS_ASSET = Asset("llm_deployments")


def _failed_tag(aws: AwsSection, cluster: str, nodegroup: str, when: str | None) -> str:
    """Set (``when``) or remove the failed-at tag of the deployment's node group; what was done."""
    from airflow.providers.amazon.aws.hooks.eks import EksHook

    eks = EksHook(aws_conn_id=aws["conn_id"], region_name=aws["region"]).conn
    group = rules.describe_nodegroup(eks, cluster, nodegroup)
    if group is None:
        return "no node group"
    if when:
        eks.tag_resource(resourceArn=group["nodegroupArn"], tags={FAILED_AT_KEY: when})
        return f"node group tagged {FAILED_AT_KEY}={when}"
    if FAILED_AT_KEY in (group.get("tags") or {}):
        eks.untag_resource(resourceArn=group["nodegroupArn"], tagKeys=[FAILED_AT_KEY])
    return "node group not marked failed"


def deployment_record(plan: dict[str, Any], smoke: Any = None, bench: Any = None,
                      cold_start: Any = None) -> dict[str, Any]:
    """What the idle teardown needs to find, reach and judge the deployment, and its checks."""
    return {
        **teardown_params(plan),
        "deployment": plan["deployment"],
        "model": plan["model"]["id"],
        "accelerator": plan["profile"]["accelerator"],
        "instance_type": plan["profile"]["instance_type"],
        "nodes": plan["profile"]["nodes"],
        "cluster": plan["cluster"]["name"],
        "namespace": plan["kubernetes"]["namespace"],
        "endpoint_url": plan["serving"]["base_url"],
        "endpoint": describe_base_url(plan["serving"]),
        "port": plan["serving"]["port"],
        "hourly_usd": plan["sizing"]["hourly_usd"],
        "idle_ttl_minutes": plan["lifecycle"]["idle_ttl_minutes"],
        "protected": plan["lifecycle"]["protected"],
        # The idle teardown's clocks start again here (its smoke test and benchmark were work).
        "deployed_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "dry_run": plan["dry_run"],
        "smoke_test": smoke,
        "benchmark": bench,
        "cold_start": cold_start,
    }


@task(trigger_rule=TriggerRule.NONE_FAILED, outlets=[DEPLOYMENTS_ASSET])
def register(plan: dict[str, Any], smoke: Any = None, bench: Any = None, cold_start: Any = None, *,
             outlet_events=None) -> dict[str, Any]:
    """Runs after skipped checks too; a dry run records nothing. The record goes to the
    deployments Asset's event; a failed-at mark from an earlier run goes."""
    record = deployment_record(plan, smoke, bench, cold_start)
    # The report goes to the task log and, with the record, to the Asset event the UI shows.
    record["report"] = deployment_report(record)
    print(record["report"])
    if not plan["dry_run"]:
        record["failed_mark"] = _failed_tag(plan["aws"], plan["cluster"]["name"], plan["nodegroup"]["name"], None)
        outlet_events[DEPLOYMENTS_ASSET].extra = record
    return record


@task(trigger_rule=TriggerRule.ONE_FAILED, multiple_outputs=True)
def mark_failed(teardown_on_failure: Any = DEFAULTS["teardown_on_failure"], **context: Any) -> dict[str, Any]:
    """After a failed step: tag the node group failed-at, so the idle teardown removes it after
    its grace period unless a later run succeeds; with ``teardown_on_failure``, hand the
    teardown plan to the teardown groups that follow, which remove it now. The plan is pulled,
    not passed: when the plan itself was refused there is none, and nothing was created; nor
    when the run never took the deployment's Lease."""
    plan = context["ti"].xcom_pull(task_ids="plan_deployment")
    if not plan or plan["dry_run"]:
        raise AirflowSkipException("nothing was created: no plan, or a dry run")
    if not context["ti"].xcom_pull(task_ids="take_lease"):
        # Another run holds the deployment: what exists is its doing, not to be marked or removed.
        raise AirflowSkipException("this run never held the deployment's lease: it created nothing of it")
    print(_failed_tag(plan["aws"], plan["cluster"]["name"], plan["nodegroup"]["name"],
                      datetime.now(UTC).isoformat(timespec="seconds")))
    if not is_true(teardown_on_failure):
        raise AirflowSkipException("teardown_on_failure is off: the idle teardown removes it after the grace period")
    return dict(build_teardown_plan({**teardown_params(plan), "reason": "deploy failed, teardown_on_failure"}))


@task(trigger_rule=TriggerRule.NONE_FAILED, outlets=[DEPLOYMENTS_ASSET])
def register_removal(target: Target, reason: str, *, outlet_events=None) -> dict[str, Any]:
    """Record the removal of ``target`` once every teardown step has succeeded (a dry run
    records nothing): the idle teardown stops judging the deployment."""
    access = target["access"]
    record = {"deployment": target["deployment"], "cluster": access["cluster"], "region": access["region"],
              "namespace": access["namespace"], "aws_conn_id": access["aws_conn_id"],
              "kubernetes_conn_id": access["kubernetes_conn_id"], "removed": not target["dry_run"], "reason": reason,
              "at": datetime.now(UTC).isoformat(timespec="seconds")}
    if not target["dry_run"]:
        outlet_events[DEPLOYMENTS_ASSET].extra = record
    return record

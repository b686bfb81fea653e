"""The ``still_billing`` step of teardown_deployment, and the same report in the idle teardown's
``summarize``: what still bills on the cluster once the teardown has acted (``llm_on_eks.aws.billing``)."""

from __future__ import annotations

from typing import Any

from airflow.sdk import TriggerRule, task

from llm_on_eks.aws.billing import still_billing as read_billing
from llm_on_eks.plan.types import AwsSection


def billing_report(aws: AwsSection, cluster: str) -> dict[str, Any]:
    """Read-only; an AWS refusal makes the report unknown rather than failing the teardown."""
    from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook
    from airflow.providers.amazon.aws.hooks.eks import EksHook
    from botocore.exceptions import BotoCoreError, ClientError

    from llm_on_eks.aws.fsx import FsxHook

    hook = {"aws_conn_id": aws["conn_id"], "region_name": aws["region"]}
    try:
        return read_billing(EksHook(**hook).conn, AwsBaseHook(client_type="ec2", **hook).conn, FsxHook(**hook),
                            cluster)
    except (ClientError, BotoCoreError) as exc:
        return {"cluster": cluster, "items": [], "hourly_usd": None, "unused_hourly_usd": None,
                "summary": f"{cluster}: what still bills is unknown (AWS did not answer: {exc})"}


@task(trigger_rule=TriggerRule.ALL_DONE)
def still_billing(aws: AwsSection, cluster: dict[str, Any]) -> dict[str, Any]:
    """After the teardown, whatever its outcome: a failed one is when this matters most."""
    report = billing_report(aws, cluster["name"])
    print(report["summary"])
    return report

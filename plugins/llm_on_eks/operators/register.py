"""The ``register`` step: record the deployment as an Asset event, the feed for dashboards and
the idle teardown."""

from __future__ import annotations

from typing import Any

from airflow.sdk import Asset, TriggerRule, task

# A plain name, not a URI: a URI scheme makes Airflow load every provider's URI handlers at parse
# time (the Amazon one alone imports the S3 hook, half a second).
DEPLOYMENTS_ASSET = Asset("llm_deployments")


@task(trigger_rule=TriggerRule.NONE_FAILED, outlets=[DEPLOYMENTS_ASSET])
def register(plan: dict[str, Any], smoke: Any = None, bench: Any = None, *, outlet_events=None) -> dict[str, Any]:
    """Runs after skipped checks too; a dry run records nothing."""
    record = {
        "deployment": plan["deployment"],
        "model": plan["model"]["id"],
        "accelerator": plan["profile"]["accelerator"],
        "instance_type": plan["profile"]["instance_type"],
        "cluster": plan["cluster"]["name"],
        "region": plan["aws"]["region"],
        "namespace": plan["kubernetes"]["namespace"],
        "hourly_usd": plan["sizing"]["hourly_usd"],
        "idle_ttl_minutes": plan["lifecycle"]["idle_ttl_minutes"],
        "dry_run": plan["dry_run"],
        "smoke_test": smoke,
        "benchmark": bench,
    }
    if not plan["dry_run"]:
        outlet_events[DEPLOYMENTS_ASSET].extra = record
    return record

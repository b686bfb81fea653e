"""The steps of ``warm_up_deployments``: find every DAG that uses a deployment through
``llm_endpoint`` (the Asset events their holds emit), ask Airflow when each runs next, and run the
deploy DAG for a deployment that is gone a predicted cold start ahead of its consumer's run
(``llm_on_eks.serving.consumers`` holds the rule), so that the run adopts a serving deployment.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from airflow.sdk import get_current_context, task

from llm_on_eks.naming import identity_hash
from llm_on_eks.operators.idle_teardown import asset_records, consumer_records, identity, latest_records, next_run_of
from llm_on_eks.operators.register import DEPLOYMENTS_ASSET
from llm_on_eks.serving.consumers import warm_up_decision


@task(inlets=[DEPLOYMENTS_ASSET])
def plan_warm_ups(*, inlet_events=None) -> list[dict[str, Any]]:
    """The deploy runs to start now, as keywords of the ``warm_up`` step (its conf and run id,
    one per consumer run, so a later check starts no second one); each consumer's verdict printed."""
    extras = asset_records(inlet_events)
    live, consumers = {identity(r) for r in latest_records(extras)}, consumer_records(extras)
    next_run, now = next_run_of(get_current_context()), datetime.now(UTC)
    runs, lines = [], []
    for key, records in sorted(consumers.items()):
        for record in records:
            when = next_run(record["consumer"])
            deploy, why = warm_up_decision(record, when, key in live, now)
            lines.append(f"  {'warm up' if deploy else 'leave  '} {why}")
            if deploy:
                run_id = f"warm_up__{record['deployment']}-{identity_hash(*key)}__{when:%Y%m%dT%H%M%S}"
                runs.append({"conf": record["conf"], "trigger_run_id": run_id})
    print(f"{sum(len(r) for r in consumers.values())} consumer(s) of deployments, "
          f"{len(runs)} deployment(s) to warm up\n" + "\n".join(lines))
    return runs

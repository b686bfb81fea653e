"""The ``provision.approve_spend`` step: before anything is created, a person approves a deploy
that bills above the team's limit, or that creates a cluster, with Airflow's own human-in-the-loop
``ApprovalOperator`` (standard provider, Airflow 3.1+; on 3.3 the task waits in the
``awaiting_input`` state, answered in the UI or through the REST API's ``hitlDetails``).

The rules are Airflow configuration, not run params, so whoever triggers a run cannot switch
them off (``[llm_on_eks]`` in airflow.cfg, or ``AIRFLOW__LLM_ON_EKS__*``):

- ``approve_above_usd_per_hour``: ask when the deployment's node group costs more (unset: never);
- ``approve_new_clusters``: ask when the run would create its cluster (default off);
- ``approval_timeout_hours``: an unanswered request is rejected after this long (default 24).

A rejection (or the timeout) skips every step after this one, teardown steps included, so nothing
is created or touched; the run ends with this step's answer and who gave it. A dry run is never
held: it creates nothing, and says whether a real run would ask.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow.providers.standard.operators.hitl import ApprovalOperator
from airflow.sdk.configuration import conf

from llm_on_eks.plan.types import ClusterSection, NodegroupSpec, Target

APPROVAL_TIMEOUT_HOURS = 24.0


def approval_reasons(*, hourly_usd: float, creates_cluster: bool, limit_usd: float | None,
                     new_clusters: bool) -> list[str]:
    """Why a person must approve this deploy (none: it goes ahead)."""
    reasons = []
    if limit_usd is not None and hourly_usd > limit_usd:
        reasons.append(f"its nodes cost ${hourly_usd:,.2f}/hour, above the ${limit_usd:,.2f}/hour that needs no "
                       "approval ([llm_on_eks] approve_above_usd_per_hour)")
    if new_clusters and creates_cluster:
        reasons.append("it creates a new EKS cluster ([llm_on_eks] approve_new_clusters)")
    return reasons


def configured_limit() -> float | None:
    value = conf.get("llm_on_eks", "approve_above_usd_per_hour", fallback="") or ""
    return float(value) if value.strip() else None


class ApproveSpendOperator(ApprovalOperator):
    """Hold the run for a person's Approve or Reject when ``approval_reasons`` gives any.

    :param target: the deployment, and whether this is a dry run
    :param nodegroup: the accelerator node group: its hourly price
    :param cluster: the cluster: whether this run may create it
    :param checked: preflight's result: whether the cluster exists
    :param summary: the plan summary, shown to the person asked
    """

    template_fields = (*ApprovalOperator.template_fields, "target", "nodegroup", "cluster", "checked", "summary")

    def __init__(self, *, target: Target, nodegroup: NodegroupSpec, cluster: ClusterSection, checked: Any,
                 summary: str, **kwargs: Any) -> None:
        hours = conf.getfloat("llm_on_eks", "approval_timeout_hours", fallback=APPROVAL_TIMEOUT_HOURS)
        super().__init__(subject="Approve this deploy", ignore_downstream_trigger_rules=True,
                         defaults=ApprovalOperator.REJECT, response_timeout=timedelta(hours=hours), **kwargs)
        self.target = target
        self.nodegroup = nodegroup
        self.cluster = cluster
        self.checked = checked
        self.summary = summary

    def execute(self, context: Any) -> Any:
        creates_cluster = bool(self.cluster["create"]) and not (self.checked or {}).get("cluster_exists", True)
        reasons = approval_reasons(hourly_usd=self.nodegroup["hourly_usd"], creates_cluster=creates_cluster,
                                   limit_usd=configured_limit(),
                                   new_clusters=conf.getboolean("llm_on_eks", "approve_new_clusters", fallback=False))
        if not reasons or self.target["dry_run"]:
            held = " (a real run would wait for approval: " + "; ".join(reasons) + ")" if reasons else ""
            self.log.info("no approval needed%s", held if self.target["dry_run"] else "")
            return {"asked": False, "reasons": reasons}
        self.subject = (f"Deploy {self.target['deployment']!r} at ${self.nodegroup['hourly_usd']:,.2f}/hour"
                        + (" with a new cluster" if creates_cluster else ""))
        self.body = ("Approve to go ahead, Reject to create nothing. Approval is asked because "
                     + "; and ".join(reasons) + ".\n\n```\n" + self.summary + "\n```")
        self.log.info("waiting for approval: %s", "; ".join(reasons))
        return super().execute(context)

    def execute_complete(self, context: Any, event: dict[str, Any]) -> Any:
        chosen = (event.get("chosen_options") or [None])[0]
        who = (event.get("responded_by_user") or {}).get("name") or "the timeout's default"
        if chosen == self.REJECT:
            self.log.warning("rejected by %s: nothing was created; every later step is skipped", who)
        super().execute_complete(context, event)  # a rejection skips the later steps here, and ends the task
        return {"asked": True, "answer": chosen, "by": who}

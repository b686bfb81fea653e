"""The shape every deployment step takes: one operator, driven by the plan.

Each step reads the plan (an XCom from the plan task, rendered to a dict) and either describes
what it would do (``dry_run``: AWS calls with their arguments, Kubernetes objects, Helm values)
or does it. Both paths build their requests with the same code, so a dry run shows exactly the
calls a real run makes.

A step that waits long defers (provider-style: ``self.defer`` to a trigger that serializes ids,
never the plan) and comes back through the one ``execute_complete`` below: the event is
validated, a failure goes to ``wait_failed`` (clean up what this run made, then fail), a
success to ``resume``. No state rides along: what a step needs after the wait it finds again
(AWS tags, Kubernetes labels) or reads from the event.

A step given ``lease`` (take_lease's result: the deployment's Lease this run holds) renews it
when it starts, for as long as the step may take, and refuses to act when the run no longer
holds it (client-go's leader election: a leader that cannot renew stops leading).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow.sdk import BaseOperator, Context

from llm_on_eks.plan import Plan

# A step without a long wait of its own is done well within this.
LEASE_HOLD_S = 1800
LEASE_MARGIN_S = 900


def lease_holder(context: Context) -> str:
    """This run as a Lease's holderIdentity: run ids are unique per DAG only."""
    return f"{context['ti'].dag_id}/{context['run_id']}"


class PlanStepOperator(BaseOperator):
    """Base for deployment steps; subclasses implement ``describe`` and ``run``."""

    template_fields: tuple[str, ...] = ("plan", "lease")

    def __init__(self, *, plan: Any, lease: Any = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.plan = plan
        self.lease = lease

    def execute(self, context: Context) -> Any:
        if not self.enabled(self.plan):
            from airflow.sdk.exceptions import AirflowSkipException

            raise AirflowSkipException(f"{self.task_id} is off for this run")
        if self.plan.get("dry_run"):
            description = self.describe(self.plan)
            self.log.info("dry run: %s would do:\n%s", self.task_id, _pretty(description))
            return {"dry_run": True, "step": self.task_id, "would": description}
        if self.lease:
            self.renew_lease(self.plan, context)
        return self.run(self.plan, context)

    def enabled(self, plan: Plan) -> bool:
        """Optional steps (smoke test, benchmark) are switched by the run's params."""
        return True

    def lease_hold_s(self, plan: Plan) -> int:
        """How long the Lease must hold when this step starts: its longest wait, plus the time
        until the next step starts and renews it (retry delays, a busy scheduler)."""
        return LEASE_HOLD_S + LEASE_MARGIN_S

    def renew_lease(self, plan: Plan, context: Context) -> None:
        from airflow.sdk.exceptions import AirflowFailException

        from llm_on_eks.kube.access import api_client, cluster_access
        from llm_on_eks.kube.lease import LeaseHeld, renew

        with api_client(cluster_access(plan)) as api:
            try:
                renew(api, self.lease["namespace"], plan["deployment"], lease_holder(context), self.lease["action"],
                      self.lease_hold_s(plan))
            except LeaseHeld as exc:
                raise AirflowFailException(f"{self.task_id} did nothing: {exc}") from None

    def describe(self, plan: Plan) -> Any:
        raise NotImplementedError

    def run(self, plan: Plan, context: Context) -> Any:
        raise NotImplementedError

    def defer_to(self, trigger: Any, timeout_s: float) -> None:
        self.defer(trigger=trigger, method_name="execute_complete", timeout=timedelta(seconds=timeout_s))

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> Any:
        from airflow.providers.amazon.aws.utils import validate_execute_complete_event

        event = validate_execute_complete_event(event)
        if event.get("status") != "success":
            self.wait_failed(self.plan, context, str(event.get("message", event)), event)
        return self.resume(self.plan, context, event)

    def resume(self, plan: Plan, context: Context, event: dict[str, Any]) -> Any:
        """After a successful wait. Default: run the step again; its ensure finds what it made."""
        return self.run(plan, context)

    def wait_failed(self, plan: Plan, context: Context, why: str, event: dict[str, Any] | None = None) -> None:
        """Clean up what this run created, then fail. Default: nothing to clean."""
        from airflow.sdk.exceptions import AirflowFailException

        raise AirflowFailException(why)


def eks_cluster_gone(plan: Any) -> bool:
    """Reached through EKS, and EKS has no such cluster: what was in it went with it (a Kubernetes
    connection may name a cluster EKS never knew)."""
    from airflow.providers.amazon.aws.hooks.eks import EksHook

    from llm_on_eks.aws import eks as rules

    if plan["kubernetes"]["conn_id"]:
        return False
    eks = EksHook(aws_conn_id=plan["aws"]["conn_id"], region_name=plan["aws"]["region"]).conn
    return rules.describe_cluster(eks, plan["cluster"]["name"]) is None


def _pretty(value: Any) -> str:
    import yaml

    return yaml.safe_dump(value, sort_keys=False, width=120)

"""The shape every deployment step takes: one operator, driven by the plan.

Each step reads the plan (an XCom from the plan task, rendered to a dict) and either describes
what it would do (``dry_run``: AWS calls with their arguments, Kubernetes objects, Helm values)
or does it. Both paths build their requests with the same code, so a dry run shows exactly the
calls a real run makes.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import BaseOperator, Context


class PlanStepOperator(BaseOperator):
    """Base for deployment steps; subclasses implement ``describe`` and ``run``."""

    template_fields = ("plan",)

    def __init__(self, *, plan: Any, **kwargs) -> None:
        super().__init__(**kwargs)
        self.plan = plan

    def execute(self, context: Context) -> Any:
        if not self.enabled(self.plan):
            from airflow.sdk.exceptions import AirflowSkipException

            raise AirflowSkipException(f"{self.task_id} is off for this run")
        if self.plan.get("dry_run"):
            description = self.describe(self.plan)
            self.log.info("dry run: %s would do:\n%s", self.task_id, _pretty(description))
            return {"dry_run": True, "step": self.task_id, "would": description}
        return self.run(self.plan, context)

    def enabled(self, plan: dict[str, Any]) -> bool:
        """Optional steps (smoke test, benchmark) are switched by the run's params."""
        return True

    def describe(self, plan: dict[str, Any]) -> Any:
        raise NotImplementedError

    def run(self, plan: dict[str, Any], context: Context) -> Any:
        """Steps whose real side is not built yet refuse instead of pretending to succeed."""
        from airflow.sdk.exceptions import AirflowFailException

        raise AirflowFailException(
            f"{self.task_id} is not implemented for real runs yet; trigger with dry_run=true to see what it would do"
        )


def _pretty(value: Any) -> str:
    import yaml

    return yaml.safe_dump(value, sort_keys=False, width=120)

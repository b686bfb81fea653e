"""The base of every AWS step that waits: in the worker with a botocore waiter, or deferred to
the triggerer with the matching trigger (``deferrable``, default ``[operators]
default_deferrable``), as the Amazon provider's EKS operators do. Also the one helper that
retries a call EKS answers with ResourceInUseException (for minutes after a node group or
add-on change; apache/airflow#73219).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from airflow.sdk.configuration import conf

from llm_on_eks.operators.base import LEASE_MARGIN_S, PlanStepOperator
from llm_on_eks.plan import Plan

DEFAULT_DEFERRABLE = conf.getboolean("operators", "default_deferrable", fallback=False)


class AwsWaitOperator(PlanStepOperator):
    """An AWS step whose waits run in the worker or, with ``deferrable``, in the triggerer.

    ``WAIT`` is (seconds between polls, polls): how long AWS can take, with room to spare."""

    WAIT = (30, 60)

    def __init__(self, *, deferrable: bool = DEFAULT_DEFERRABLE, waiter_delay: int | None = None,
                 waiter_max_attempts: int | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.deferrable = deferrable
        self.waiter_delay = self.WAIT[0] if waiter_delay is None else waiter_delay
        self.waiter_max_attempts = waiter_max_attempts or self.WAIT[1]

    def lease_hold_s(self, plan: Plan) -> int:
        return self.waiter_delay * self.waiter_max_attempts + 60 + LEASE_MARGIN_S

    @staticmethod
    def aws(plan: Plan) -> dict[str, Any]:
        return {"aws_conn_id": plan["aws"]["conn_id"], "region_name": plan["aws"]["region"]}

    def wait(self, plan: Plan, context: Any, *, trigger: Callable[..., Any], ids: dict[str, Any], waiter: Any,
             args: dict[str, Any], what: str, status_args: list[str]) -> None:
        """Wait for ``what``: defer to ``trigger(**ids)`` (the task resumes in ``execute_complete``),
        or poll ``waiter`` here; a failed wait goes to ``wait_failed`` either way."""
        from airflow.providers.amazon.aws.utils.waiter_with_logging import wait
        from airflow.sdk.exceptions import AirflowException

        if self.deferrable:
            self.defer_to(trigger(**ids, waiter_delay=self.waiter_delay, waiter_max_attempts=self.waiter_max_attempts,
                                  **self.aws(plan)),
                          timeout_s=self.waiter_delay * self.waiter_max_attempts + 60)
        self.log.info("waiting for %s (every %s s, at most %s times)", what, self.waiter_delay,
                      self.waiter_max_attempts)
        try:
            wait(waiter=waiter, waiter_delay=self.waiter_delay, waiter_max_attempts=self.waiter_max_attempts,
                 args=args, failure_message=f"{what} failed", status_message=f"{what}:", status_args=status_args)
        except AirflowException as exc:
            self.wait_failed(plan, context, str(exc))


def retry_in_use(log: Any, call: Callable[[], Any], gone: type[BaseException] | tuple = ()) -> bool:
    """Run ``call``, retrying ResourceInUseException with the provider's backoff; False when it
    raised ``gone`` (already deleted: success for a delete)."""
    import tenacity
    from airflow.providers.amazon.aws.utils import build_resource_in_use_retry_args

    try:
        for attempt in tenacity.Retrying(**build_resource_in_use_retry_args(log)):
            with attempt:
                call()
    except gone:
        return False
    return True


def clean_up(log: Any, delete: Callable[[], Any]) -> None:
    """Delete what a failed create left, retrying while in use; a cleanup that fails is logged,
    never hides the original failure."""
    from botocore.exceptions import ClientError

    try:
        retry_in_use(log, delete)
    except ClientError:
        log.exception("cleanup failed; delete it by hand")


def client_token(context: Any, what: str) -> str:
    """A client request token per try: a resent request is idempotent, a later run is not tied
    to a deleted resource's token."""
    import hashlib

    ti = context["ti"]
    seed = f"{ti.dag_id}/{ti.run_id}/{ti.task_id}/{ti.try_number}/{what}"
    return f"llm-on-eks-{hashlib.sha256(seed.encode()).hexdigest()[:24]}"


def creating_run_tags(context: Any) -> dict[str, str]:
    """The tags that mark a resource as made by this run (``naming.CREATED_BY_RUN_KEY``)."""
    from datetime import UTC, datetime

    from llm_on_eks.naming import creation_tags as tags

    return tags(context["run_id"], datetime.now(UTC))

"""The base of every AWS step: one hook per operator, built as the Amazon provider's
``AwsBaseOperator.hook`` builds it (connection, region, ``verify``, ``botocore_config``), and, for
the steps that wait, the wait itself: in the worker with a botocore waiter, or deferred to the
matching trigger, as the provider's EKS operators do. Also the one helper that retries a call EKS
answers with ResourceInUseException (for minutes after a node group or add-on change;
apache/airflow#73219).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from datetime import UTC, datetime
from functools import cached_property
from typing import Any, Generic, TypeVar

import tenacity
from airflow.sdk import Context
from airflow.sdk.configuration import conf
from airflow.sdk.exceptions import AirflowException
from airflow.sdk.module_loading import import_string

from llm_on_eks.naming import creation_tags
from llm_on_eks.operators.base import LEASE_MARGIN_S, DeploymentStepOperator, WaitingStepOperator
from llm_on_eks.plan.types import AwsSection

HookT = TypeVar("HookT")
# The hooks the steps use, as ``aws_hook_class`` names them.
EKS_HOOK = "airflow.providers.amazon.aws.hooks.eks.EksHook"
# EksHook with our nodegroup_active waiter (it also ends on a health issue: llm_on_eks.aws.eks_hook).
EKS_NODEGROUP_HOOK = "llm_on_eks.aws.eks_hook.EksNodegroupHook"
S3_HOOK = "airflow.providers.amazon.aws.hooks.s3.S3Hook"
FSX_HOOK = "llm_on_eks.aws.fsx.FsxHook"


class AwsStepOperator(DeploymentStepOperator, Generic[HookT]):
    """A step that calls AWS through ``hook``, an instance of ``aws_hook_class``.

    ``aws_hook_class`` is the hook's dotted path: the class is imported when the hook is first
    used, not when a DAG file is parsed.

    :param aws: the AWS connection and region every call of the step goes through
    :param verify: whether to verify SSL certificates, as the provider's AWS operators take it
    :param botocore_config: botocore client configuration, as the provider's AWS operators take it
    """

    template_fields: tuple[str, ...] = (*DeploymentStepOperator.template_fields, "aws", "verify", "botocore_config")
    aws_hook_class: str

    def __init__(self, *, aws: AwsSection, verify: bool | str | None = None, botocore_config: dict | None = None,
                 **kwargs) -> None:
        super().__init__(**kwargs)
        self.aws = aws
        self.verify = verify
        self.botocore_config = botocore_config

    @property
    def _hook_parameters(self) -> dict[str, Any]:
        return {"aws_conn_id": self.aws["conn_id"], "region_name": self.aws["region"], "verify": self.verify,
                "config": self.botocore_config}

    @cached_property
    def hook(self) -> HookT:
        return import_string(self.aws_hook_class)(**self._hook_parameters)

    def client(self, service: str) -> Any:
        """A client of another service, through the same connection and settings as ``hook``."""
        from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

        return AwsBaseHook(client_type=service, **self._hook_parameters).conn


class AwsWaitOperator(AwsStepOperator[HookT], WaitingStepOperator):
    """An AWS step whose waits run in the worker or, with ``deferrable``, in the triggerer.

    ``WAIT`` is (seconds between polls, polls): how long AWS can take, with room to spare.
    ``[llm_on_eks] waiter_delay_s``, when set, is every such wait's poll interval, over the same
    time (more polls): a wait ends on average half an interval after what it waits for.

    :param waiter_delay: seconds between polls (default ``WAIT[0]``, or the setting)
    :param waiter_max_attempts: polls before the wait fails (default ``WAIT[1]``, or as many as
        the setting's interval takes to span the same time)
    """

    WAIT = (30, 60)

    def __init__(self, *, waiter_delay: int | None = None, waiter_max_attempts: int | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        delay, attempts = self.WAIT
        every = conf.getint("llm_on_eks", "waiter_delay_s", fallback=0)
        if waiter_delay is None and every:
            delay, attempts = every, math.ceil(delay * attempts / every)
        self.waiter_delay = delay if waiter_delay is None else waiter_delay
        self.waiter_max_attempts = waiter_max_attempts or attempts

    def lease_hold_s(self) -> int:
        return self.waiter_delay * self.waiter_max_attempts + 60 + LEASE_MARGIN_S

    def wait(self, context: Context, *, trigger: Callable[..., Any], ids: dict[str, Any], waiter: Any,
             args: dict[str, Any], what: str, status_args: list[str]) -> None:
        """Wait for ``what``: defer to ``trigger(**ids)`` (the task resumes in ``execute_complete``),
        or poll ``waiter`` here; a failed wait goes to ``wait_failed`` either way."""

        def poll() -> None:
            from airflow.providers.amazon.aws.utils.waiter_with_logging import wait

            self.log.info("waiting for %s (every %s s, at most %s times)", what, self.waiter_delay,
                          self.waiter_max_attempts)
            try:
                wait(waiter=waiter, waiter_delay=self.waiter_delay, waiter_max_attempts=self.waiter_max_attempts,
                     args=args, failure_message=f"{what} failed", status_message=f"{what}:", status_args=status_args)
            except AirflowException as exc:
                self.wait_failed(context, str(exc))

        self.defer_or_poll(
            trigger=lambda: trigger(**ids, waiter_delay=self.waiter_delay, waiter_max_attempts=self.waiter_max_attempts,
                                    aws_conn_id=self.aws["conn_id"], region_name=self.aws["region"],
                                    verify=self.verify, botocore_config=self.botocore_config),
            timeout_s=self.waiter_delay * self.waiter_max_attempts + 60, poll=poll)


def retry_in_use(log: Any, call: Callable[[], Any], gone: type[BaseException] | tuple = ()) -> bool:
    """Run ``call``, retrying ResourceInUseException with the provider's backoff; False when it
    raised ``gone`` (already deleted: success for a delete)."""
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


def client_token(context: Context, what: str) -> str:
    """A client request token per try: a resent request is idempotent, a later run is not tied
    to a deleted resource's token."""
    ti = context["ti"]
    seed = f"{ti.dag_id}/{ti.run_id}/{ti.task_id}/{ti.try_number}/{what}"
    return f"llm-on-eks-{hashlib.sha256(seed.encode()).hexdigest()[:24]}"


def creating_run_tags(context: Context) -> dict[str, str]:
    """The tags that mark a resource as made by this run (``naming.CREATED_BY_RUN_KEY``)."""
    return creation_tags(context["run_id"], datetime.now(UTC))

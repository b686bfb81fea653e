"""The shape every deployment step takes: one operator, handed the plan's sections it acts on.

Each step either describes what it would do (``target["dry_run"]``: AWS calls with their
arguments, Kubernetes objects, Helm values) or does it. Both paths build their requests with the
same code, so a dry run shows exactly the calls a real run makes.

A step that waits long defers (provider-style: ``self.defer`` to a trigger that serializes ids,
never a section it need not) or polls in the worker (``deferrable``), through one helper,
``WaitingStepOperator.defer_or_poll``, and comes back through the one ``execute_complete`` below:
the event is validated, a failure goes to ``wait_failed`` (clean up what this run made, then
fail), a success to ``resume``. No state rides along: what a step needs after the wait it finds
again (AWS tags, Kubernetes labels) or reads from the event.

A step given ``lease`` (take_lease's result: the deployment's Lease this run holds) renews it
when it starts, for as long as the step may take, and refuses to act when the run no longer
holds it (client-go's leader election: a leader that cannot renew stops leading).

Imports: the Amazon provider (about 380 ms), botocore (270 ms) and the kubernetes client (1.2 s)
are imported inside the functions that use them, here and in every module a DAG file imports:
at the top they would be paid on every parse of every DAG (``scripts/bench-parse``).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import yaml
from airflow.sdk import BaseOperator, Context
from airflow.sdk.configuration import conf
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from llm_on_eks.aws import eks as rules
from llm_on_eks.kube.access import api_client
from llm_on_eks.kube.lease import LeaseHeld, renew
from llm_on_eks.plan.types import ClusterAccess, Target

# The provider's operators' default ([operators] default_deferrable), for every waiting step.
DEFAULT_DEFERRABLE = conf.getboolean("operators", "default_deferrable", fallback=False)
# Seconds between a Kubernetes wait's looks (a Job, a rollout, the device plugin), in the worker
# or the triggerer; [llm_on_eks] kube_poll_s changes it. The API server answers a GET in
# milliseconds: the cncf.kubernetes provider's pod trigger polls every 2 s by default.
KUBE_POLL_S = 5.0
# A step without a long wait of its own is done well within this.
LEASE_HOLD_S = 1800
LEASE_MARGIN_S = 900


def kube_poll_s() -> float:
    return conf.getfloat("llm_on_eks", "kube_poll_s", fallback=KUBE_POLL_S)


def lease_holder(context: Context) -> str:
    """This run as a Lease's holderIdentity: run ids are unique per DAG only."""
    return f"{context['ti'].dag_id}/{context['run_id']}"


class DeploymentStepOperator(BaseOperator):
    """Base for deployment steps; subclasses implement ``describe`` and ``run``.

    :param target: the deployment, whether this is a dry run, and how to reach its cluster
        (the plan's ``target`` section)
    :param lease: take_lease's result; when given, the step renews the Lease before it acts
    """

    template_fields: tuple[str, ...] = ("target", "lease")

    def __init__(self, *, target: Target, lease: Any = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.target = target
        self.lease = lease

    @property
    def access(self) -> ClusterAccess:
        return self.target["access"]

    def execute(self, context: Context) -> Any:
        if not self.enabled():
            raise AirflowSkipException(f"{self.task_id} is off for this run")
        if self.target["dry_run"]:
            description = self.describe()
            self.log.info("dry run: %s would do:\n%s", self.task_id, yaml.safe_dump(description, sort_keys=False,
                                                                                     width=120))
            return {"dry_run": True, "step": self.task_id, "would": description}
        if self.lease:
            self.renew_lease(context)
        return self.run(context)

    def enabled(self) -> bool:
        """Optional steps (smoke test, benchmark) are switched by the run's params."""
        return True

    def lease_hold_s(self) -> int:
        """How long the Lease must hold when this step starts: its longest wait, plus the time
        until the next step starts and renews it (retry delays, a busy scheduler)."""
        return LEASE_HOLD_S + LEASE_MARGIN_S

    def renew_lease(self, context: Context) -> None:
        with api_client(self.access) as api:
            try:
                renew(api, self.lease["namespace"], self.target["deployment"], lease_holder(context),
                      self.lease["action"], self.lease_hold_s())
            except LeaseHeld as exc:
                raise AirflowFailException(f"{self.task_id} did nothing: {exc}") from None

    def describe(self) -> Any:
        raise NotImplementedError

    def run(self, context: Context) -> Any:
        raise NotImplementedError

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> Any:
        from airflow.providers.amazon.aws.utils import validate_execute_complete_event

        event = validate_execute_complete_event(event)
        if event.get("status") != "success":
            self.wait_failed(context, str(event.get("message", event)), event)
        return self.resume(context, event)

    def resume(self, context: Context, event: dict[str, Any]) -> Any:
        """After a successful wait. Default: run the step again; its ensure finds what it made."""
        return self.run(context)

    def wait_failed(self, context: Context, why: str, event: dict[str, Any] | None = None) -> None:
        """Clean up what this run created, then fail. Default: nothing to clean."""
        raise AirflowFailException(why)


class WaitingStepOperator(DeploymentStepOperator):
    """A step with a long wait, in the worker or, with ``deferrable``, in the triggerer.

    :param deferrable: defer the wait to the triggerer (default ``[operators] default_deferrable``)
    """

    def __init__(self, *, deferrable: bool = DEFAULT_DEFERRABLE, **kwargs) -> None:
        super().__init__(**kwargs)
        self.deferrable = deferrable

    def defer_or_poll(self, *, trigger: Callable[[], Any], timeout_s: float, poll: Callable[[], Any]) -> Any:
        """Defer to ``trigger()`` (the task resumes in ``execute_complete``, never within seconds of
        deferring: ``llm_on_eks.triggers.settled``), or return ``poll()``, which waits here and
        calls ``wait_failed`` itself when the wait fails."""
        if self.deferrable:
            from llm_on_eks.triggers.settled import SETTLE_S, SettledTrigger

            settle_s = conf.getfloat("llm_on_eks", "resume_after_deferral_s", fallback=SETTLE_S)
            self.defer(trigger=SettledTrigger.around(trigger(), settle_s), method_name="execute_complete",
                       timeout=timedelta(seconds=timeout_s))
        return poll()


def eks_cluster_gone(access: ClusterAccess) -> bool:
    """Reached through EKS, and EKS has no such cluster: what was in it went with it (a Kubernetes
    connection may name a cluster EKS never knew)."""
    from airflow.providers.amazon.aws.hooks.eks import EksHook

    if access["kubernetes_conn_id"]:
        return False
    eks = EksHook(aws_conn_id=access["aws_conn_id"], region_name=access["region"]).conn
    return rules.describe_cluster(eks, access["cluster"]) is None

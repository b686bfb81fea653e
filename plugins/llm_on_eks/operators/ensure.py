"""The one shape of every ensure step (cluster, node groups, add-ons, FSx): find the resource by
name, create it when missing (adopting it when it appeared meanwhile), refuse it with the reasons
when it does not fit, wait while it is pending, and report whether this run created or adopted it.

Whether this run created a resource is read from its ``created-by-run`` tag on every try, never
remembered: a retry after a lost answer knows it all the same. What counts as a problem and which
states are pending are plain functions in ``llm_on_eks.aws``; the subclasses only name them.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import UTC, datetime
from typing import Any

from airflow.sdk import Context
from airflow.sdk.exceptions import AirflowFailException

from llm_on_eks.naming import created_by_run
from llm_on_eks.operators.aws_wait import AwsWaitOperator, HookT, clean_up


def ready_after_s(resource: dict[str, Any], action: str) -> int | None:
    """Seconds from a resource's own creation time (EKS ``createdAt``) to now, for one this run
    created and now sees ready: the cold_start step's measure of its phase."""
    if action != "created" or not resource.get("createdAt"):
        return None
    return round((datetime.now(UTC) - resource["createdAt"]).total_seconds())


def created_here(tags: dict[str, str] | None, context: Context) -> bool:
    """Whether the run of ``context`` created the resource with these tags."""
    return created_by_run(tags, context["run_id"])


class EnsureOperator(AwsWaitOperator[HookT]):
    """Template method: ``ensure(name)`` runs find -> create -> problems -> update -> wait ->
    result; a subclass fills in the steps for its resource.

    ``KIND`` names the resource in log lines and errors ("node group"), ``READY`` the state
    waited for, ``PENDING`` the states it is waited out in (``llm_on_eks.aws.eks``); ``SPARED``
    the states in which a resource this run created is kept after a failed wait (it is usable,
    or going already)."""

    KIND = "resource"
    READY = "ACTIVE"
    PENDING: Collection[str] = ()
    SPARED: Collection[str] = ()

    def ensure(self, context: Context, name: str) -> Any:
        resource = self.find(name)
        created_now = False
        if resource is None:
            created_now = self.create(name, context)
            resource = self.find(name)
        problems = self.problems(resource)
        if problems:
            raise AirflowFailException(self.refusal(resource, problems))
        updated = self.update(resource)
        # Waited for after a create or an update even when it looks ready: EKS answers CREATING
        # for minutes after a create, moto ACTIVE at once.
        if created_now or updated or self.pending(resource):
            self.wait(context, **self.waiting(resource))
            resource = self.find(name)
        if created_here(self.resource_tags(resource), context):
            return self.result(resource, "created")
        return self.result(resource, "resized" if updated else "adopted")

    def create(self, name: str, context: Context) -> bool:
        """Send the create; False when the resource appeared meanwhile (it is adopted)."""
        try:
            self.send_create(name, context)
        except self.in_use():
            self.log.info("%s %s appeared meanwhile: adopting it", self.KIND, name)
            return False
        return True

    def in_use(self) -> type[BaseException] | tuple[type[BaseException], ...]:
        """What the create raises when the name is taken meanwhile (EKS: ResourceInUseException)."""
        return self.hook.conn.exceptions.ResourceInUseException

    def update(self, resource: dict[str, Any]) -> bool:
        """Bring an adopted resource in line with the plan; True when it changed (and must be waited for)."""
        return False

    def resource_tags(self, resource: dict[str, Any]) -> dict[str, str] | None:
        return resource.get("tags")

    def find(self, name: str) -> dict[str, Any] | None:
        raise NotImplementedError

    def send_create(self, name: str, context: Context) -> None:
        raise NotImplementedError

    def problems(self, resource: dict[str, Any]) -> list[str]:
        raise NotImplementedError

    def refusal(self, resource: dict[str, Any], problems: list[str]) -> str:
        """Why the step fails on a resource with these problems."""
        raise NotImplementedError

    def pending(self, resource: dict[str, Any]) -> bool:
        return self.status(resource) in self.PENDING

    def waiting(self, resource: dict[str, Any]) -> dict[str, Any]:
        """``wait``'s arguments for the resource becoming ``READY``."""
        raise NotImplementedError

    def result(self, resource: dict[str, Any], action: str) -> Any:
        raise NotImplementedError

    def cleanup_name(self) -> str | None:
        """The name of the one resource a failed wait cleans up; None: nothing is cleaned up."""
        return None

    def delete(self, resource: dict[str, Any]) -> None:
        raise NotImplementedError

    def wait_failed(self, context: Context, why: str, event: dict[str, Any] | None = None) -> None:
        """As the provider's EksCreateNodegroupOperator does: what this run created and never
        became ready would bill (and block the name) with nobody using it, so it goes."""
        name = self.cleanup_name()
        resource = self.find(name) if name else None
        why = self.failure(resource, why) if resource else why
        if (resource and created_here(self.resource_tags(resource), context)
                and self.status(resource) not in self.SPARED):
            self.log.error("%s %s did not become %s: deleting it (%s)", self.KIND, name, self.READY, why)
            clean_up(self.log, lambda: self.delete(resource))
            why += f" (the {self.KIND} this run created was deleted)"
        raise AirflowFailException(why)

    def failure(self, resource: dict[str, Any], why: str) -> str:
        """Why the wait failed, in the resource's own words where they say more than the
        waiter's (a node group's health issues); default: the waiter's."""
        return why

    def status(self, resource: dict[str, Any]) -> str | None:
        return resource.get("status")

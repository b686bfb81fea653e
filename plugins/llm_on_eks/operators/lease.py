"""The ``take_lease`` and ``release_lease`` steps: one deploy or teardown of a deployment acts at
a time (``llm_on_eks.kube.lease`` holds the protocol).

A Kubernetes Lease needs the cluster's API server, so a deploy takes it right after
``provision.ensure_cluster``, before its node group, storage and everything cluster-side; what
runs before (preflight, the cluster itself) is shared by every deployment on the cluster and
adopted, never deleted, by another run. Teardowns take it first thing. ``release_lease`` is the
Airflow teardown task of ``take_lease`` (it runs when the work before it failed too, and does
not decide the run's state); should it never run, the Lease goes stale once no step has
renewed it for that step's longest wait (each step renews it when it starts, for as long as it
may take: ``DeploymentStepOperator.renew_lease``).
"""

from __future__ import annotations

from typing import Any

from airflow.sdk.configuration import conf
from airflow.sdk.exceptions import AirflowFailException

from llm_on_eks.kube.access import api_client
from llm_on_eks.kube.holds import describe_holds, live_holds
from llm_on_eks.kube.lease import LeaseHeld, acquire, release
from llm_on_eks.kube.namespace import ensure_namespace
from llm_on_eks.kube.occupancy import foreign_occupants
from llm_on_eks.naming import lease_name
from llm_on_eks.operators.base import DeploymentStepOperator, eks_cluster_gone, lease_holder
from llm_on_eks.plan.types import KubernetesSection

# How long a run waits for another run of the same deployment before failing with its name:
# a teardown's deletes take minutes, a deploy's waits up to hours (then fail clearly instead).
# ``[llm_on_eks] lease_wait_s`` changes it.
LEASE_WAIT_S = 600
# What the holder does to the deployment (the Lease's action annotation): the idle judge names it.
DEPLOY, TEARDOWN = "deploy", "teardown"


class TakeLeaseOperator(DeploymentStepOperator):
    """Take the deployment's Lease for this run (``action``: deploy or teardown), waiting up to
    ``wait_s`` for a run that holds it, then failing with that run's id. Creates the namespace
    the Lease lives in when it is missing. A deploy also fails here, before its node group, when
    the names its chart takes in the namespace belong to someone else's objects; a teardown fails
    here when a DAG run holds the deployment (``llm_on_eks.kube.holds``).

    :param kubernetes: the namespace the Lease lives in, and the release whose names a deploy checks
    :param action: deploy or teardown: what the holder does, which the idle judge names
    :param wait_s: how long to wait for another run's Lease (default ``[llm_on_eks] lease_wait_s``)
    """

    template_fields = (*DeploymentStepOperator.template_fields, "kubernetes")

    def __init__(self, *, kubernetes: KubernetesSection, action: str, wait_s: float | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.kubernetes = kubernetes
        self.action = action
        self.wait_s = wait_s

    def wait_limit_s(self) -> float:
        """Read when the step runs, not when the DAG is parsed: a changed setting applies at once."""
        return conf.getint("llm_on_eks", "lease_wait_s", fallback=LEASE_WAIT_S) if self.wait_s is None else self.wait_s

    def describe(self) -> Any:
        return {"lease": f"{self.kubernetes['namespace']}/{lease_name(self.target['deployment'])}",
                "holder": "<dag id>/<run id>", "action": self.action, "wait_up_to_s": self.wait_limit_s()}

    def run(self, context: Any) -> Any:
        deployment, namespace, me = self.target["deployment"], self.kubernetes["namespace"], lease_holder(context)
        with api_client(self.access) as api:
            ensure_namespace(api, namespace)
            try:
                decision = acquire(api, namespace, deployment, me, self.action, self.lease_hold_s(),
                                   self.wait_limit_s())
            except LeaseHeld as exc:
                # No retry: the wait was the retry.
                raise AirflowFailException(f"{deployment}: {exc}; try again once that run has finished") from None
            if self.action == DEPLOY:
                self._refuse_foreign(api, namespace)
            else:
                self._refuse_held(api, namespace, me)
        self.log.info("lease %s/%s taken (%s)", namespace, lease_name(deployment), decision.reason)
        return {"lease": lease_name(deployment), "namespace": namespace, "holder": me, "action": self.action,
                "taken": decision.reason}

    def _refuse_held(self, api: Any, namespace: str, me: str) -> None:
        """A teardown leaves a deployment that a DAG run is using (``llm_endpoint``): read once
        the Lease is held, so a hold written before is seen, and one written after finds the
        teardown's Lease and waits for it (a new deploy then)."""
        holds = live_holds(api, namespace, self.target["deployment"])
        if holds:
            release(api, namespace, self.target["deployment"], me)
            raise AirflowFailException(
                f"{self.target['deployment']} is in use by {describe_holds(holds)} (llm_endpoint): nothing removed; "
                "it can go once they release it, which they do when their runs end")

    def _refuse_foreign(self, api: Any, namespace: str) -> None:
        release = self.kubernetes["release"]
        foreign = foreign_occupants(api, namespace, release)
        if foreign:
            raise AirflowFailException(
                f"{self.target['deployment']}: {', '.join(foreign)} already exist(s) and are not this deployment's "
                f"(no Helm release {release} of llm-on-eks made them): choose another deployment_name or namespace, "
                "or remove them")


class ReleaseLeaseOperator(DeploymentStepOperator):
    """Free the deployment's Lease if this run still holds it (safe to run whatever happened
    before: a Lease another run holds, or none, is left alone). The Lease's namespace is the one
    ``target`` reaches the cluster in."""

    def describe(self) -> Any:
        return {"release": "nothing: a dry run takes no lease"}

    def run(self, context: Any) -> Any:
        deployment, namespace = self.target["deployment"], self.access["namespace"]
        if eks_cluster_gone(self.access):
            return {"lease": lease_name(deployment), "action": "gone with the cluster"}  # torn down
        with api_client(self.access) as api:
            done = release(api, namespace, deployment, lease_holder(context))
        self.log.info("lease %s/%s: %s", namespace, lease_name(deployment), done)
        return {"lease": lease_name(deployment), "action": done}

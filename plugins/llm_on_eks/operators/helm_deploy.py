"""The ``helm_deploy`` and ``wait_ready`` steps: install or upgrade the release, then wait until
its pods serve, rolling back to the last good revision when the new one cannot become ready."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from airflow.sdk.exceptions import AirflowFailException

from llm_on_eks.kube import readiness
from llm_on_eks.kube.access import api_client, kubeconfig
from llm_on_eks.kube.helm import STUCK_AFTER_S, Helm, HelmBusy, foreign_release, stuck_recovery, unlocked
from llm_on_eks.kube.helm_values import HELM_TIMEOUT_S, helm_command, helm_values
from llm_on_eks.operators.base import LEASE_MARGIN_S, DeploymentStepOperator, WaitingStepOperator, kube_poll_s
from llm_on_eks.plan.types import ReleaseSpec

# A release another helm holds: that helm ends within seconds, or never (killed with its worker).
HELM_POLL_S = 15


class HelmDeployOperator(WaitingStepOperator):
    """`helm upgrade --install` of the release named after the deployment. A release left pending
    by a helm that may still run (a killed worker's) is waited for, deferred like any long wait,
    until that helm is done or the revision counts as stuck, not failed on: a retry would come
    2-8 minutes later and could meet it still pending.

    :param release: what the serving pods run (the plan's ``release`` section), renamed to the
        chart's values
    """

    template_fields = (*DeploymentStepOperator.template_fields, "release")

    def __init__(self, *, release: ReleaseSpec, **kwargs) -> None:
        super().__init__(**kwargs)
        self.release = release

    def describe(self) -> Any:
        return {"command": helm_command(self.release), "values": helm_values(self.release),
                "on_pending": f"wait for the helm behind a pending revision, up to {STUCK_AFTER_S} s after it began, "
                              "then roll back to the last deployed revision (none: uninstall, then install)",
                "on_failure": "roll back to the last revision that became ready"}

    def run(self, context: Any) -> Any:
        """Upgrade only when the values differ from the deployed revision's: a re-run of a finished
        deployment changes nothing, and one after a failed upgrade applies it again. A release of
        this name that is not ours is refused; one left pending by a killed helm is recovered."""

        release, namespace = self.release["name"], self.release["namespace"]
        values = helm_values(self.release)
        with kubeconfig(self.access) as config:
            helm = Helm(config, namespace)
            found = helm.release(release)
            foreign = foreign_release(found, helm.values(release, found["revision"]) if found else None)
            if foreign:
                raise AirflowFailException(f"Helm release {namespace}/{release} exists and is not llm-on-eks's "
                                           f"({foreign}): choose another deployment_name or namespace, or remove it")
            history = helm.history(release)
            try:
                recovery = stuck_recovery(history, datetime.now(UTC))
            except HelmBusy as busy:
                self.log.info("release %s: %s; waiting for it", release, busy)
                return self._wait_for_helm(context, busy)
            if recovery:
                self._recover(helm, release, *recovery, status=history[-1]["status"])
                history = helm.history(release)
            deployed = [h["revision"] for h in history if h["status"] == "deployed"]
            if deployed and helm.values(release, deployed[-1]) == values:
                self.log.info("release %s revision %s already has these values", release, deployed[-1])
                return {"release": release, "revision": deployed[-1], "previous": deployed[-1], "changed": False}
            helm.upgrade_install(self.release, values)
            revision = helm.history(release)[-1]["revision"]
        self.log.info("release %s: revision %s installed", release, revision)
        return {"release": release, "revision": revision, "previous": deployed[-1] if deployed else None,
                "changed": True}

    def _wait_for_helm(self, context: Any, busy: HelmBusy) -> Any:
        """Until the pending revision is settled or stuck; then the step runs again."""
        from llm_on_eks.triggers.kube import ReleaseUnlockedTrigger

        release, namespace = self.release["name"], self.release["namespace"]

        def poll() -> Any:
            with kubeconfig(self.access) as config:
                helm = Helm(config, namespace)
                while time.time() < busy.stuck_at and not unlocked(helm.history(release), busy.revision):
                    time.sleep(min(HELM_POLL_S, max(0.0, busy.stuck_at - time.time())))
            return self.run(context)

        return self.defer_or_poll(
            trigger=lambda: ReleaseUnlockedTrigger(access=self.access, release=release, revision=busy.revision,
                                                   deadline=busy.stuck_at, budget_s=STUCK_AFTER_S, poll_s=HELM_POLL_S),
            timeout_s=busy.stuck_at - time.time() + 300, poll=poll)

    def _recover(self, helm: Any, release: str, action: str, revision: int | None, *, status: str) -> None:
        self.log.warning("release %s is stuck %s: %s%s", release, status, action,
                         f" to revision {revision}" if revision else "")
        if action == "rollback":
            helm.rollback(release, revision)
        else:
            helm.uninstall(release, HELM_TIMEOUT_S)


class WaitReadyOperator(WaitingStepOperator):
    """Wait for the serving pods to be ready within the catalog's start-up budget; roll the
    release back to its previous revision when the new one cannot become ready.

    :param release: the release to wait for: its name, node count and start-up budget
    :param deploy: helm_deploy's result (revision, previous revision, whether it changed
        anything): what to roll back to
    """

    template_fields = (*WaitingStepOperator.template_fields, "release", "deploy")

    def __init__(self, *, release: ReleaseSpec, deploy: Any = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.release = release
        self.deploy = deploy

    @property
    def multi_node(self) -> bool:
        return self.release["nodes"] > 1

    def lease_hold_s(self) -> int:
        return self.release["startup_budget_s"] + 300 + LEASE_MARGIN_S

    def describe(self) -> Any:
        kind = "LeaderWorkerSet" if self.multi_node else "Deployment"
        return {"wait_for": f"{kind} {self.release['namespace']}/{self.release['name']} ready",
                "budget_s": self.release["startup_budget_s"], "deferrable": self.deferrable}

    def run(self, context: Any) -> Any:
        from llm_on_eks.triggers.kube import ReleaseReadyTrigger

        budget = self.release["startup_budget_s"]
        return self.defer_or_poll(
            trigger=lambda: ReleaseReadyTrigger(access=self.access, release=self.release["name"],
                                                multi_node=self.multi_node, deadline=time.time() + budget,
                                                budget_s=budget, poll_s=kube_poll_s()),
            timeout_s=budget + 300, poll=lambda: self._poll(context, budget))

    def _poll(self, context: Any, budget: int) -> Any:
        deadline, poll_s = time.monotonic() + budget, kube_poll_s()
        with api_client(self.access) as api:
            while True:
                state = readiness.check(api, self.release["namespace"], self.release["name"], self.multi_node,
                                        datetime.now(UTC))
                if state.ready:
                    return self.resume(context, {})
                if state.unschedulable or time.monotonic() > deadline:
                    self._fail(state.unschedulable, state.detail)
                time.sleep(poll_s)

    def resume(self, context: Any, event: dict[str, Any]) -> Any:
        return {"ready": True, "revision": (self.deploy or {}).get("revision")}

    def wait_failed(self, context: Any, why: str, event: dict[str, Any] | None = None) -> None:
        self._fail(((event or {}).get("result") or {}).get("unschedulable") or [], why)

    def _fail(self, unschedulable: list[str], detail: str) -> None:
        why = (f"pods cannot be scheduled: {', '.join(unschedulable)}" if unschedulable
               else f"not ready within the {self.release['startup_budget_s']} s start-up budget")
        rolled_back = self._roll_back()
        raise AirflowFailException(f"release {self.release['name']} {why}{rolled_back}\n{detail}")

    def _roll_back(self) -> str:
        previous = (self.deploy or {}).get("previous")
        if not (self.deploy or {}).get("changed") or previous is None:
            return ""
        with kubeconfig(self.access) as config:
            Helm(config, self.release["namespace"]).rollback(self.release["name"], previous)
        self.log.warning("rolled release %s back to revision %s", self.release["name"], previous)
        return f"; rolled back to revision {previous}"

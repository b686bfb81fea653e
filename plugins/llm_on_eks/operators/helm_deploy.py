"""The ``helm_deploy`` and ``wait_ready`` steps: install or upgrade the release, then wait until
its pods serve, rolling back to the last good revision when the new one cannot become ready."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from airflow.sdk.configuration import conf

from llm_on_eks.operators.base import LEASE_MARGIN_S, PlanStepOperator
from llm_on_eks.plan import Plan

DEFAULT_DEFERRABLE = conf.getboolean("operators", "default_deferrable", fallback=False)
READY_POLL_S = 5


class HelmDeployOperator(PlanStepOperator):
    """`helm upgrade --install` of the release named after the deployment."""

    def describe(self, plan: Plan) -> Any:
        from llm_on_eks.kube.helm_values import helm_command, helm_values

        return {"command": helm_command(plan), "values": helm_values(plan),
                "on_failure": "roll back to the last revision that became ready"}

    def run(self, plan: Plan, context: Any) -> Any:
        """Upgrade only when the values differ from the deployed revision's: a re-run of a finished
        deployment changes nothing, and one after a failed upgrade applies it again. A release of
        this name that is not ours is refused; one left pending by a killed helm is recovered."""
        from airflow.sdk.exceptions import AirflowFailException

        from llm_on_eks.kube.access import cluster_access, kubeconfig_path
        from llm_on_eks.kube.helm import Helm, foreign_release, stuck_recovery
        from llm_on_eks.kube.helm_values import helm_values

        release, namespace = plan["kubernetes"]["release"], plan["kubernetes"]["namespace"]
        values = helm_values(plan)
        with kubeconfig_path(cluster_access(plan)) as kubeconfig:
            helm = Helm(kubeconfig, namespace)
            found = helm.release(release)
            foreign = foreign_release(found, helm.values(release, found["revision"]) if found else None)
            if foreign:
                raise AirflowFailException(f"Helm release {namespace}/{release} exists and is not llm-on-eks's "
                                           f"({foreign}): choose another deployment_name or namespace, or remove it")
            history = helm.history(release)
            recovery = stuck_recovery(history, datetime.now(UTC))
            if recovery:
                self._recover(helm, release, *recovery, status=history[-1]["status"])
                history = helm.history(release)
            deployed = [h["revision"] for h in history if h["status"] == "deployed"]
            if deployed and helm.values(release, deployed[-1]) == values:
                self.log.info("release %s revision %s already has these values", release, deployed[-1])
                return {"release": release, "revision": deployed[-1], "previous": deployed[-1], "changed": False}
            helm.upgrade_install(plan, values)
            revision = helm.history(release)[-1]["revision"]
        self.log.info("release %s: revision %s installed", release, revision)
        return {"release": release, "revision": revision, "previous": deployed[-1] if deployed else None,
                "changed": True}

    def _recover(self, helm: Any, release: str, action: str, revision: int | None, *, status: str) -> None:
        from llm_on_eks.kube.helm_values import HELM_TIMEOUT_S

        self.log.warning("release %s is stuck %s: %s%s", release, status, action,
                         f" to revision {revision}" if revision else "")
        if action == "rollback":
            helm.rollback(release, revision)
        else:
            helm.uninstall(release, HELM_TIMEOUT_S)


class WaitReadyOperator(PlanStepOperator):
    """Wait for the serving pods to be ready within the catalog's start-up budget; roll the
    release back to its previous revision when the new one cannot become ready. ``deploy`` is
    helm_deploy's result (revision, previous revision, whether it changed anything)."""

    template_fields = (*PlanStepOperator.template_fields, "deploy")

    def __init__(self, *, deploy: Any = None, deferrable: bool = DEFAULT_DEFERRABLE, **kwargs) -> None:
        super().__init__(**kwargs)
        self.deploy = deploy
        self.deferrable = deferrable

    def lease_hold_s(self, plan: Plan) -> int:
        return plan["profile"]["startup_budget_s"] + 300 + LEASE_MARGIN_S

    def describe(self, plan: Plan) -> Any:
        kind = "LeaderWorkerSet" if plan["profile"]["nodes"] > 1 else "Deployment"
        return {"wait_for": f"{kind} {plan['kubernetes']['namespace']}/{plan['kubernetes']['release']} ready",
                "budget_s": plan["profile"]["startup_budget_s"], "deferrable": self.deferrable}

    def run(self, plan: Plan, context: Any) -> Any:
        from llm_on_eks.kube import readiness
        from llm_on_eks.kube.access import api_client, cluster_access
        from llm_on_eks.triggers.kube import ReleaseReadyTrigger

        budget, kube = plan["profile"]["startup_budget_s"], plan["kubernetes"]
        multi_node = plan["profile"]["nodes"] > 1
        if self.deferrable:
            self.defer_to(ReleaseReadyTrigger(access=cluster_access(plan), release=kube["release"],
                                              multi_node=multi_node, deadline=time.time() + budget, budget_s=budget),
                          timeout_s=budget + 300)
        deadline = time.monotonic() + budget
        with api_client(cluster_access(plan)) as api:
            while True:
                state = readiness.check(api, kube["namespace"], kube["release"], multi_node, datetime.now(UTC))
                if state.ready:
                    return self.resume(plan, context, {})
                if state.unschedulable or time.monotonic() > deadline:
                    self._fail(plan, state.unschedulable, state.detail)
                time.sleep(READY_POLL_S)

    def resume(self, plan: Plan, context: Any, event: dict[str, Any]) -> Any:
        return {"ready": True, "revision": (self.deploy or {}).get("revision")}

    def wait_failed(self, plan: Plan, context: Any, why: str, event: dict[str, Any] | None = None) -> None:
        self._fail(plan, ((event or {}).get("result") or {}).get("unschedulable") or [], why)

    def _fail(self, plan: Plan, unschedulable: list[str], detail: str) -> None:
        from airflow.sdk.exceptions import AirflowFailException

        why = (f"pods cannot be scheduled: {', '.join(unschedulable)}" if unschedulable
               else f"not ready within the {plan['profile']['startup_budget_s']} s start-up budget")
        rolled_back = self._roll_back(plan)
        raise AirflowFailException(f"release {plan['kubernetes']['release']} {why}{rolled_back}\n{detail}")

    def _roll_back(self, plan: Plan) -> str:
        from llm_on_eks.kube.access import cluster_access, kubeconfig_path
        from llm_on_eks.kube.helm import Helm

        previous = (self.deploy or {}).get("previous")
        if not (self.deploy or {}).get("changed") or previous is None:
            return ""
        with kubeconfig_path(cluster_access(plan)) as kubeconfig:
            Helm(kubeconfig, plan["kubernetes"]["namespace"]).rollback(plan["kubernetes"]["release"], previous)
        self.log.warning("rolled release %s back to revision %s", plan["kubernetes"]["release"], previous)
        return f"; rolled back to revision {previous}"

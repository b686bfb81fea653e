"""The steps of ``llm_endpoint`` (``llm_on_eks.factory.llm_endpoint``), the task group that gives
any DAG a model endpoint for the length of its run:

    plan_endpoint -> hold (setup) -> deploy -> endpoint -> <the DAG's own tasks> -> release (teardown)

``hold`` records that this run uses the deployment (``llm_on_eks.kube.holds``: the idle teardown
and ``teardown_deployment`` leave a held deployment alone) and adopts the deployment when it
serves already with what this run asks for. Otherwise ``deploy`` runs the deploy DAG itself
(``deploy_model``: the same steps, Lease, approval and report as any deploy, not a copy) and
waits for it. ``release`` drops the hold whatever happened before it; with
``when_released="teardown"`` the last holder out also starts ``teardown_deployment``.
"""

from __future__ import annotations

import json
import math
import time
from datetime import UTC, datetime
from typing import Any

from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import DagRunState, TriggerRule, task
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from llm_on_eks.inputs import InputError
from llm_on_eks.kube import readiness
from llm_on_eks.kube.access import api_client, kubeconfig
from llm_on_eks.kube.helm import Helm
from llm_on_eks.kube.helm_values import helm_values
from llm_on_eks.kube.holds import describe_holds, drop_hold, hold_name, live_holds, take_hold
from llm_on_eks.kube.lease import release, try_acquire
from llm_on_eks.kube.namespace import ensure_namespace
from llm_on_eks.naming import PROTECTED_ANNOTATION
from llm_on_eks.operators.base import LEASE_HOLD_S, DeploymentStepOperator, eks_cluster_gone, lease_holder
from llm_on_eks.operators.lease import DEPLOY, TEARDOWN
from llm_on_eks.operators.register import DEPLOYMENTS_ASSET
from llm_on_eks.params import deploy_request
from llm_on_eks.plan import PlanError, build_plan, is_true, teardown_params
from llm_on_eks.plan.types import KubernetesSection, ReleaseSpec

# The Lease action while a run checks whether it can adopt the deployment.
ADOPT = "adopt"
# What happens when the last holder releases the deployment: "idle" leaves it to the idle
# teardown (its idle TTL counts from the last request), "teardown" starts teardown_deployment.
WHEN_RELEASED = ("idle", "teardown")
DEFAULT_HOLD_HOURS = 24


@task(multiple_outputs=True)
def plan_endpoint(request: dict[str, Any], overrides: Any = None, keep_within_minutes: float | None = None
                  ) -> dict[str, Any]:
    """The deployment the DAG asks for, checked as a deploy checks its conf, before anything is
    held or created. ``overrides`` (a dict, or its JSON text: ``{{ params.x | tojson }}`` renders
    so in any DAG) are more of the deploy form's fields. ``consumer`` is what the hold step
    records of this DAG's use: the conf a warm-up deploys with, the predicted cold start (onto
    the existing cluster) and the keep window (default: that cold start)."""
    try:
        if isinstance(overrides, str):
            try:
                overrides = json.loads(overrides or "{}")
            except ValueError as exc:
                raise InputError(f"overrides: not JSON ({exc})") from None
        if not isinstance(overrides or {}, dict):
            raise InputError(f"overrides: an object of deploy form fields, not {type(overrides).__name__}")
        conf = {k: v for k, v in {**request, **(overrides or {})}.items() if v is not None}
        if conf.get("dry_run"):
            raise InputError("dry_run: llm_endpoint serves for real (a dry run is deploy_model's)")
        plan = build_plan(deploy_request(conf))
    except (InputError, PlanError) as exc:
        raise AirflowFailException(f"llm_endpoint refused before holding or creating anything: {exc}") from None
    print(f"{plan['deployment']} ({plan['model']['id']} on {plan['profile']['instance_type']} x "
          f"{plan['profile']['nodes']}, ${plan['sizing']['hourly_usd']:.2f}/hour) in "
          f"{plan['cluster']['name']}/{plan['kubernetes']['namespace']}")
    cold_start_s = plan["cold_start"]["ttft_s"]
    where = teardown_params(plan)
    consumer = {"deployment": plan["deployment"], "cluster": plan["cluster"]["name"], "region": plan["aws"]["region"],
                "namespace": plan["kubernetes"]["namespace"], "aws_conn_id": where["aws_conn_id"],
                "kubernetes_conn_id": where["kubernetes_conn_id"], "conf": conf, "cold_start_s": cold_start_s,
                "hourly_usd": plan["sizing"]["hourly_usd"],
                "keep_within_minutes": keep_within_minutes if keep_within_minutes is not None
                else math.ceil(cold_start_s / 60)}
    return {"conf": conf, "teardown_conf": where, "consumer": consumer, "target": plan["target"],
            "kubernetes": plan["kubernetes"], "release": plan["release"], "serving": plan["serving"],
            "storage": plan["storage"]}


class HoldDeploymentOperator(DeploymentStepOperator):
    """Record this run's hold on the deployment, then say whether it can be adopted: its Helm
    release deployed with exactly the values this run's plan gives and its pods ready. The hold
    is written first, so a teardown that starts now sees it, and the check runs under the
    deployment's Lease, so one already under way is not taken for serving.

    It also records, as an event of the deployments Asset, that this DAG uses the deployment
    (``consumer``): the idle teardown keeps it for the DAG's next run, and the warm-up brings it
    up ahead of it.

    :param kubernetes: the namespace the hold lives in
    :param release: what the serving pods should run (the values compared)
    :param consumer: plan_endpoint's record of this DAG's use
    :param hold_hours: how long the hold counts if this run never releases it (killed)
    """

    template_fields = (*DeploymentStepOperator.template_fields, "kubernetes", "release", "consumer")

    def __init__(self, *, kubernetes: KubernetesSection, release: ReleaseSpec, consumer: Any,
                 hold_hours: float = DEFAULT_HOLD_HOURS, **kwargs) -> None:
        super().__init__(outlets=[DEPLOYMENTS_ASSET], **kwargs)
        self.kubernetes = kubernetes
        self.release = release
        self.consumer = consumer
        self.hold_hours = hold_hours

    def describe(self) -> Any:
        return {"hold": f"{self.kubernetes['namespace']}/{hold_name(self.target['deployment'], '<dag id>/<run id>')}",
                "for_hours": self.hold_hours, "adopt_if": "its release has these values and is ready"}

    def run(self, context: Any) -> Any:
        deployment, namespace, me = self.target["deployment"], self.kubernetes["namespace"], lease_holder(context)
        with api_client(self.access) as api:
            ensure_namespace(api, namespace)
            held = take_hold(api, namespace, deployment, me, int(self.hold_hours * 3600))
            try:
                adopt, why, busy = self._adoptable(api, namespace, me)
            except BaseException:
                # A failed setup has no teardown to release it: a hold left would keep the
                # deployment from the idle teardown for hold_hours. The retry holds again.
                drop_hold(api, namespace, deployment, me)
                raise
        self.log.info("%s: %s by %s; %s", deployment, held, me, why)
        context["outlet_events"][DEPLOYMENTS_ASSET].extra = {
            **self.consumer, "consumer": context["ti"].dag_id, "at": datetime.now(UTC).isoformat(timespec="seconds")}
        return {"hold": hold_name(deployment, me), "holder": me, "adopt": adopt, "why": why, "busy": busy}

    def _adoptable(self, api: Any, namespace: str, me: str) -> tuple[bool, str, dict[str, str] | None]:
        """(adopt?, why, the deploy or teardown run working on it now, if any)."""
        deployment, name = self.target["deployment"], self.release["name"]
        decision, found = try_acquire(api, namespace, deployment, me, ADOPT, LEASE_HOLD_S)
        if decision.step == "wait":
            busy = None
            if found and found.action in (DEPLOY, TEARDOWN):  # a run of a deploy or teardown DAG
                busy = dict(zip(("dag_id", "run_id"), found.holder.split("/", 1), strict=True))
            return False, f"another run is working on it ({found.describe() if found else decision.reason})", busy
        try:
            with kubeconfig(self.access) as config:
                helm = Helm(config, namespace)
                deployed = [h["revision"] for h in helm.history(name) if h["status"] == "deployed"]
                if not deployed:
                    return False, f"no deployed Helm release {namespace}/{name}", None
                if helm.values(name, deployed[-1]) != helm_values(self.release):
                    return (False, f"release {name} revision {deployed[-1]} has other values than this run asks for",
                            None)
            state = readiness.check(api, namespace, name, self.release["nodes"] > 1, datetime.now(UTC))
            if not state.ready:
                return False, f"release {name} is not ready: {state.detail}", None
            return True, f"adopted: release {name} revision {deployed[-1]} serves with these values", None
        finally:
            release(api, namespace, deployment, me)


class DeployForEndpointOperator(TriggerDagRunOperator):
    """Unless ``hold`` adopted the deployment, run the deploy DAG with the endpoint's conf and
    wait for it (deferred). Its run id is this run's, so a retried step waits for the deploy run
    it started rather than starting another; a failed deploy run fails this step, naming it.
    When ``hold`` found another deploy or teardown of the deployment under way (two consumers
    bringing up the same deployment at once), it first waits for that run to end: its own deploy
    run then adopts what that one made, instead of giving up on the Lease after ``lease_wait_s``.

    :param hold: the hold step's result
    """

    template_fields = (*TriggerDagRunOperator.template_fields, "hold")

    def __init__(self, *, hold: Any, **kwargs) -> None:
        kwargs.setdefault("wait_for_completion", True)
        kwargs.setdefault("deferrable", True)
        kwargs.setdefault("poke_interval", 15)
        super().__init__(**kwargs)
        self.hold = hold

    def execute(self, context: Any) -> Any:
        if self.hold["adopt"]:
            raise AirflowSkipException(self.hold["why"])
        self.log.info("not adopted (%s): deploying through %s", self.hold["why"], self.trigger_dag_id)
        busy = self.hold.get("busy")
        if busy and not context["ti"].get_dr_count(self.trigger_dag_id, run_ids=[str(self.trigger_run_id)]):
            self._wait_for(context, busy["dag_id"], busy["run_id"], [DagRunState.SUCCESS, DagRunState.FAILED],
                           method_name="deploy")
        return self.deploy(context)

    def deploy(self, context: Any, event: Any = None) -> Any:
        """Run (or, on a retry, wait for) this consumer run's deploy run."""
        run_id = str(self.trigger_run_id)
        if context["ti"].get_dr_count(self.trigger_dag_id, run_ids=[run_id]):
            # Started by an earlier try of this step.
            state = self._wait_for(context, self.trigger_dag_id, run_id, [*self.allowed_states, *self.failed_states],
                                   method_name="execute_complete")
            if state in self.failed_states:
                raise AirflowFailException(f"{self.trigger_dag_id} run {run_id} ended {state}")
            return None
        return super().execute(context)

    def _wait_for(self, context: Any, dag_id: str, run_id: str, states: list[Any], method_name: str) -> str:
        """Until run ``run_id`` of ``dag_id`` is in one of ``states``: deferred (resuming in
        ``method_name``), or polled here (returning its state)."""
        if self.deferrable:
            from airflow.providers.standard.triggers.external_task import DagStateTrigger

            self.defer(trigger=DagStateTrigger(dag_id=dag_id, states=states, execution_dates=None, run_ids=[run_id],
                                               poll_interval=self.poke_interval), method_name=method_name)
        while (state := context["ti"].get_dagrun_state(dag_id, run_id)) not in states:
            time.sleep(self.poke_interval)
        return state


@task(trigger_rule=TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS)
def endpoint(plan: dict[str, Any]) -> dict[str, Any]:
    """The endpoint for the DAG's tasks: who serves what, and how to reach it (the deployment's
    ``endpoint_url``, or the API server's service proxy with the run's own credentials:
    ``llm_on_eks.serving.endpoint.open_endpoint_from``). No secret is in it."""
    serving = plan["serving"]
    return {"deployment": plan["target"]["deployment"], "model": serving["served_model_name"],
            "base_url": serving["base_url"], "namespace": serving["namespace"], "release": serving["release"],
            "port": serving["port"], "access": plan["target"]["access"],
            "artifact_bucket": plan["storage"]["artifact_bucket"]}


class ReleaseHoldOperator(TriggerDagRunOperator):
    """Drop this run's hold (an Airflow teardown task: it runs after a failure too). With
    ``when_released="teardown"``, when no other run holds the deployment and it is not protected,
    start ``teardown_dag_id`` for it without waiting; a hold taken meanwhile makes that teardown
    refuse, so nobody loses the deployment from under them.

    :param target: the deployment and how to reach its cluster
    :param kubernetes: the namespace the hold lives in
    :param when_released: ``idle`` (leave it to the idle teardown) or ``teardown``
    """

    template_fields = (*TriggerDagRunOperator.template_fields, "target", "kubernetes")

    def __init__(self, *, target: Any, kubernetes: Any, when_released: str, **kwargs) -> None:
        if when_released not in WHEN_RELEASED:
            raise ValueError(f"when_released must be one of {', '.join(WHEN_RELEASED)}, not {when_released!r}")
        # Started once: a retried release finds the teardown run it started and is done.
        super().__init__(wait_for_completion=False, skip_when_already_exists=True, **kwargs)
        self.target = target
        self.kubernetes = kubernetes
        self.when_released = when_released

    def execute(self, context: Any) -> Any:
        deployment, namespace = self.target["deployment"], self.kubernetes["namespace"]
        if eks_cluster_gone(self.target["access"]):
            self.log.info("%s: its cluster does not exist: nothing is held", deployment)
            return None
        with api_client(self.target["access"]) as api:
            dropped = drop_hold(api, namespace, deployment, lease_holder(context))
            others = live_holds(api, namespace, deployment)
            protected = self._protected(api, namespace)
        self.log.info("%s: hold %s", deployment, dropped)
        if others:
            self.log.info("%s stays: still held by %s", deployment, describe_holds(others))
        elif self.when_released == "idle":
            self.log.info("%s stays until the idle teardown finds it idle", deployment)
        elif protected:
            self.log.info("%s stays: protected", deployment)
        else:
            self.log.info("%s: last holder out, starting %s", deployment, self.trigger_dag_id)
            return super().execute(context)
        return None

    def _protected(self, api: Any, namespace: str) -> bool:
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException

        try:
            service = client.CoreV1Api(api).read_namespaced_service(self.kubernetes["release"], namespace)
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise
        return is_true((service.metadata.annotations or {}).get(PROTECTED_ANNOTATION))

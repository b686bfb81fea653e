"""The DAG factory: deploy_llama4 and deploy_model are the same pipeline over different slices of
the catalog, so both come from here and cannot drift apart; the task groups are built here too,
and test DAGs use the same builders.

    plan_deployment -> provision (take_lease after the cluster) + storage + hf_token_secret
    -> prepare_weights (neuron_compile after device_plugin | stage_to_fsx | stage_to_s3 | weights_from_hub)
    -> helm_deploy (after device_plugin too) -> wait_ready -> smoke_test -> benchmark + cold_start
    -> register
    -> release_lease

What does not need another step runs beside it: the HF token Secret once the Lease is held, FSx
and the staging Job (on the system nodes) while the accelerator node group boots (5-10 minutes
for p5 or trn2), the add-ons beside the accelerator nodes; the device plugin waits for those
nodes, and a Neuron compile (on them) for the plugin.

Each task id's code is in ``llm_on_eks.operators.<step>`` (``provision.*`` in provision.py, and
so on); ``deferrable`` and ``waiter_delay`` pass through to every waiting step (None keeps each
operator's default: ``[operators] default_deferrable``, and a poll interval sized for AWS).
``lease`` is take_lease's result (``llm_on_eks.operators.lease``): every step after it renews
the deployment's Lease when it starts; the builders leave it out for test DAGs of one half.

``llm_endpoint`` is the task group any DAG uses to have a model endpoint while it runs; it runs
the deploy DAG built here when the deployment does not serve yet.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pendulum
from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import DAG, TaskGroup, TriggerRule, XComArg, cross_downstream, task_group
from airflow.sdk.configuration import conf

from llm_on_eks.catalog import catalog_index
from llm_on_eks.operators.approval import ApproveSpendOperator
from llm_on_eks.operators.billing import still_billing
from llm_on_eks.operators.cluster_access import CheckClusterAccessOperator
from llm_on_eks.operators.cold_start import ColdStartOperator
from llm_on_eks.operators.device_plugin import DevicePluginOperator
from llm_on_eks.operators.helm_deploy import HelmDeployOperator, WaitReadyOperator
from llm_on_eks.operators.hf_token_secret import HfTokenSecretOperator
from llm_on_eks.operators.idle_teardown import (
    JudgeDeploymentsOperator,
    discover_clusters,
    discover_deployments,
    judge_clusters,
    select_idle,
    select_unused,
    summarize,
)
from llm_on_eks.operators.lease import DEPLOY, TEARDOWN, ReleaseLeaseOperator, TakeLeaseOperator
from llm_on_eks.operators.llm_endpoint import (
    DEFAULT_HOLD_HOURS,
    DeployForEndpointOperator,
    HoldDeploymentOperator,
    ReleaseHoldOperator,
    endpoint,
    plan_endpoint,
)
from llm_on_eks.operators.nodepool import EnsureNodePoolOperator
from llm_on_eks.operators.plan_deployment import plan_deployment
from llm_on_eks.operators.plan_teardown import plan_teardown
from llm_on_eks.operators.prepare_weights import (
    NeuronCompileOperator,
    StageWeightsToFsxOperator,
    StageWeightsToS3Operator,
    choose_weight_prep,
    weights_from_hub,
)
from llm_on_eks.operators.provision import (
    EnsureAddonsOperator,
    EnsureClusterOperator,
    EnsureNetworkOperator,
    EnsureNodegroupOperator,
    EnsureRolesOperator,
    PreflightOperator,
)
from llm_on_eks.operators.register import mark_failed, register, register_removal
from llm_on_eks.operators.serving_checks import BenchmarkOperator, SmokeTestOperator
from llm_on_eks.operators.storage import EnsureArtifactBucketOperator, EnsureFsxOperator
from llm_on_eks.operators.teardown import (
    DeleteArtifactsOperator,
    DeleteClusterObjectsOperator,
    DeleteClusterOperator,
    DeleteFsxOperator,
    DeleteNetworkOperator,
    DeleteNodegroupOperator,
    DeleteRolesOperator,
    UninstallReleaseOperator,
)
from llm_on_eks.operators.warm_up import plan_warm_ups
from llm_on_eks.params import deploy_form, teardown_form

OWNER = "ml-platform"
# A retry 2-4 minutes after a failed try, the next 4-8 (Airflow's backoff adds jitter). The backoff
# is a multiplier since apache/airflow#56866: True is 1.0 there, a constant delay.
DEFAULT_ARGS = {"owner": OWNER, "retries": 2, "retry_delay": timedelta(minutes=2), "retry_exponential_backoff": 2.0}
START_DATE = pendulum.datetime(2026, 1, 1, tz="UTC")
# The DAGs llm_endpoint and the warm-up start (dags/deploy_model.py, dags/teardown_deployment.py).
DEPLOY_MODEL_DAG_ID, TEARDOWN_DAG_ID = "deploy_model", "teardown_deployment"
# Runs of the deploy and teardown DAGs at once, for different deployments (``[llm_on_eks]
# max_active_runs`` changes it): Airflow's own default per DAG (``[core] max_active_runs_per_dag``).
# Two runs of one deployment never act at once whatever this is (the deployment's Lease), and
# what deployments share (cluster, system node group, network, roles, FSx, bucket) ends as one of
# each when two runs make it together (README, "Different deployments at once"). Runs mostly
# wait; ``[core] parallelism`` and pools bound the worker slots they hold.
MAX_ACTIVE_RUNS = 16
# take_lease's result, pulled by template rather than passed as an XComArg: an XComArg would make
# every step a direct downstream of take_lease, its setup task, which Airflow allows only with
# trigger rule all_success (helm_deploy and benchmark have others).
LEASE = "{{ ti.xcom_pull(task_ids='take_lease') }}"
# Whether the cluster runs EKS Auto Mode, and which NodePool launches the accelerator nodes.
NODEPOOL = "{{ ti.xcom_pull(task_ids='provision.ensure_nodepool') }}"
# A plan task's output (one XCom per section), or a mapped group's sections: each step is handed
# the sections it acts on (``plan["cluster"]``), never the whole plan.
Sections = Any


def _waits(deferrable: bool | None, waiter_delay: int | None, lease: Any = None) -> dict[str, Any]:
    return {k: v for k, v in (("deferrable", deferrable), ("waiter_delay", waiter_delay), ("lease", lease))
            if v is not None}


def provision_group(plan: XComArg, *, take: TakeLeaseOperator | None = None, deferrable: bool | None = None,
                    waiter_delay: int | None = None, approval: bool = False) -> TaskGroup:
    """preflight -> [approve_spend ->] (network, roles) -> cluster -> [check_access -> take_lease ->]
    (system node group -> add-ons, accelerator node group, NodePool): nothing is created unless
    preflight passes (and a person approves, when the team's rules ask it); add-ons (coredns)
    need the untainted system nodes, not the accelerator ones; the Lease needs the cluster's API
    server and the identity's rights there, and guards all the rest. On an EKS Auto Mode cluster
    the NodePool step makes the nodes' NodePool and the node group steps make nothing."""
    waits = _waits(deferrable, waiter_delay, LEASE if take else None)
    aws = {"target": plan["target"], "aws": plan["aws"], "cluster": plan["cluster"]}
    with TaskGroup(group_id="provision") as group:
        cluster = EnsureClusterOperator(task_id="ensure_cluster", tags=plan["tags"], **aws,
                                        **_waits(deferrable, waiter_delay))
        nodegroups = [
            EnsureNodegroupOperator(task_id="ensure_system_nodegroup", nodegroup=plan["system_nodegroup"], **aws,
                                    **waits),
            EnsureNodegroupOperator(task_id="ensure_nodegroup", nodegroup=plan["nodegroup"], **aws, **waits),
        ]
        nodepool = EnsureNodePoolOperator(task_id="ensure_nodepool", target=plan["target"], nodepool=plan["nodepool"],
                                          **_waits(None, None, LEASE if take else None))
        groups = {"nodegroup": plan["nodegroup"], "system_nodegroup": plan["system_nodegroup"]}
        preflight = PreflightOperator(task_id="preflight", hf_token=plan["hf_token"], preflight=plan["preflight"],
                                      nodepool=plan["nodepool"], **groups, **aws)
        made_with_cluster = [EnsureNetworkOperator(task_id="ensure_network", **groups, **aws),
                             EnsureRolesOperator(task_id="ensure_roles", storage=plan["storage"], **groups, **aws)]
        if approval:
            preflight = preflight >> ApproveSpendOperator(task_id="approve_spend", target=plan["target"],
                                                          nodegroup=plan["nodegroup"], cluster=plan["cluster"],
                                                          checked=preflight.output, summary=plan["summary"])
        preflight >> made_with_cluster >> cluster >> [*nodegroups, nodepool]
        if take is not None:
            cluster >> CheckClusterAccessOperator(task_id="check_access", target=plan["target"],
                                                  cluster=plan["cluster"]) >> take >> [*nodegroups, nodepool]
        nodegroups[0] >> EnsureAddonsOperator(task_id="ensure_addons", tags=plan["tags"], **aws, **waits)
    return group


def storage_group(plan: XComArg, *, lease: str | None = None, deferrable: bool | None = None,
                  waiter_delay: int | None = None) -> tuple[TaskGroup, XComArg]:
    """Artifact bucket, then FSx linked to it; returns the group and the FSx handles' XCom."""
    aws = {"target": plan["target"], "aws": plan["aws"], "storage": plan["storage"], "tags": plan["tags"]}
    with TaskGroup(group_id="storage") as group:
        fsx = EnsureFsxOperator(task_id="ensure_fsx", cluster=plan["cluster"], **aws,
                                **_waits(deferrable, waiter_delay, lease))
        EnsureArtifactBucketOperator(task_id="ensure_artifact_bucket", **aws, **_waits(None, None, lease)) >> fsx
    return group, fsx.output


def prepare_weights_group(plan: XComArg, fsx: XComArg, *, after: list[Any] | None = None, lease: str | None = None,
                          deferrable: bool | None = None) -> TaskGroup:
    """One branch runs: the Neuron compile, FSx or S3 staging, or nothing (weights from the hub),
    once ``after`` is done. The branch is chosen from the plan alone, beside provisioning: one
    step fewer between the cluster and the first token."""
    job = {"target": plan["target"], "aws": plan["aws"], "release": plan["release"], "model": plan["model"],
           "storage": plan["storage"], **_waits(deferrable, None, lease)}
    with TaskGroup(group_id="prepare_weights") as group:
        preps = [
            NeuronCompileOperator(task_id="neuron_compile", neuron=plan["neuron"], **job),
            StageWeightsToFsxOperator(task_id="stage_to_fsx", fsx=fsx, **job),
            StageWeightsToS3Operator(task_id="stage_to_s3", **job),
            weights_from_hub(plan["model"]),
        ]
        choose_weight_prep(plan["profile"]) >> preps
        cross_downstream(after or [], preps)
    return group


def teardown_kube_group(plan: Sections, lease: Any = None) -> TaskGroup:
    """The release (its pods gone), then what it leaves: Jobs, shared Secret/claim, device plugin,
    its NodePool."""
    leased = {"target": plan["target"], **_waits(None, None, lease)}
    with TaskGroup(group_id="teardown_kube") as group:
        UninstallReleaseOperator(task_id="uninstall_release", **leased) >> DeleteClusterObjectsOperator(
            task_id="delete_cluster_objects", kubernetes=plan["kubernetes"], storage=plan["storage"],
            hf_token=plan["hf_token"], nodepool=plan["nodepool"], **leased)
    return group


def teardown_aws_group(plan: Sections, *, deployment: bool = True, shared: bool = True, delete_nodegroup: Any = True,
                       delete_cluster: Any = False, delete_fsx: Any = False, delete_artifacts: Any = False,
                       lease: Any = None, deferrable: bool | None = None, waiter_delay: int | None = None) -> TaskGroup:
    """node group (until gone) -> FSx (opt-in, unused) -> system node group and cluster (opt-in,
    ours, no other node group) -> the network and roles made with it -> bucket (opt-in). The opt-ins may be templates
    (``"{{ params.delete_cluster }}"``). Without ``deployment`` (an unused cluster's removal) there
    is no deployment's node group: it starts at FSx. Without ``shared`` it ends at FSx (whose step
    also withdraws the deployment's use of it): the idle teardown leaves the cluster and what comes
    with it to ``remove_cluster``, so its steps for them, switched off, would only hold worker slots."""
    waits = {"target": plan["target"], "aws": plan["aws"], "cluster": plan["cluster"],
             **_waits(deferrable, waiter_delay, lease)}
    own = plan["nodegroup"] if deployment else plan["system_nodegroup"]
    with TaskGroup(group_id="teardown_aws") as group:
        fsx = DeleteFsxOperator(task_id="delete_fsx", storage=plan["storage"], delete_fsx=delete_fsx, **waits)
        if deployment:
            DeleteNodegroupOperator(task_id="delete_nodegroup", nodegroup=own, opted_in=delete_nodegroup,
                                    **waits) >> fsx
        if shared:
            # FSx goes before the bucket it exports to; the cluster only once no node group is left.
            # Each step runs only when the one before succeeded: nothing shared goes after a failed
            # delete, and a teardown that is off as a whole (mark_failed skipped) stays off.
            system = DeleteNodegroupOperator(task_id="delete_system_nodegroup", nodegroup=plan["system_nodegroup"],
                                             deployment_nodegroup=own, opted_in=delete_cluster, **waits)
            cluster = DeleteClusterOperator(task_id="delete_cluster", nodegroup=own,
                                            system_nodegroup=plan["system_nodegroup"], delete_cluster=delete_cluster,
                                            **waits)
            # No lease from here on: the cluster that holds it may be gone; AWS alone decides.
            made_with_cluster = {"target": plan["target"], "aws": plan["aws"], "cluster": plan["cluster"],
                                 "delete_cluster": delete_cluster}
            network = DeleteNetworkOperator(task_id="delete_network", **made_with_cluster)
            iam_roles = DeleteRolesOperator(task_id="delete_roles", **made_with_cluster)
            bucket = DeleteArtifactsOperator(task_id="delete_artifacts", target=plan["target"], aws=plan["aws"],
                                             storage=plan["storage"], delete_artifacts=delete_artifacts)
            fsx >> system >> cluster >> [network, iam_roles] >> bucket
    return group


def teardown_groups(plan: Sections, lease: Any = None, **switches: Any) -> tuple[TaskGroup, TaskGroup]:
    """The whole teardown: Kubernetes first (nothing left running on the nodes), then AWS."""
    kube = teardown_kube_group(plan, lease)
    aws = teardown_aws_group(plan, lease=lease, **switches)
    kube >> aws
    return kube, aws


def take_lease(plan: Sections, action: str) -> TakeLeaseOperator:
    return TakeLeaseOperator(task_id="take_lease", target=plan["target"], kubernetes=plan["kubernetes"],
                             action=action)


def release_lease(plan: Sections, take: TakeLeaseOperator, after: list[Any]) -> None:
    """Free the Lease once ``after`` are done, whatever their outcome: an Airflow teardown task
    of ``take``, so it runs after a failure and leaves the run's state to the work."""
    release = ReleaseLeaseOperator(task_id="release_lease", target=plan["target"])
    after >> release
    release.as_teardown(setups=take)


def concurrent_runs() -> int:
    """``[llm_on_eks] max_active_runs``, or ``MAX_ACTIVE_RUNS``."""
    return conf.getint("llm_on_eks", "max_active_runs", fallback=MAX_ACTIVE_RUNS)


def default_args() -> dict[str, Any]:
    """``DEFAULT_ARGS`` with ``[llm_on_eks] retry_delay_s`` as the first retry's delay, if set: a
    retry adopts what the failed try made, so a team that would rather not wait the 2 minutes
    (doubling) after a killed worker need not."""
    delay = conf.getint("llm_on_eks", "retry_delay_s", fallback=0)
    return {**DEFAULT_ARGS, **({"retry_delay": timedelta(seconds=delay)} if delay else {})}


@contextmanager
def _dag(dag_id: str, *, doc_md: str, schedule: Any, params: dict[str, Any], tags: list[str],
         max_active_runs: int, **kwargs: Any) -> Iterator[DAG]:
    """Every DAG of the project: manual or scheduled, never catching up; ``max_active_runs``
    runs at a time (the deploy and teardown DAGs: ``concurrent_runs()``, one per deployment
    through its Lease; the idle teardown: one).

    Its params are set once its tasks are built: an operator built inside a DAG deep-copies the
    DAG's params (BaseOperator's default merging), half of a warm parse of the deploy DAGs (38
    params into each of 29 operators), and serializing validates every copy. A task gets the
    DAG's params at run time all the same (``process_params`` merges the DAG's first)."""
    with DAG(dag_id=dag_id, doc_md=doc_md, schedule=schedule, start_date=START_DATE, catchup=False,
             max_active_runs=max_active_runs, default_args=default_args(), tags=["llm", "eks", "vllm", *tags],
             render_template_as_native_obj=True, **kwargs) as dag:
        yield dag
    dag.params = params


def build_teardown_dag(dag_id: str, *, doc_md: str, waiter_delay: int | None = None) -> DAG:
    """teardown_deployment: one deployment, with a switch for everything beyond its release."""
    with _dag(dag_id, doc_md=doc_md, schedule=None, params=teardown_form(), tags=["teardown"],
              max_active_runs=concurrent_runs()) as dag:
        plan = plan_teardown()
        take = take_lease(plan, TEARDOWN)
        kube, aws = teardown_groups(plan, lease=LEASE, delete_nodegroup="{{ params.delete_nodegroup }}",
                                    delete_cluster="{{ params.delete_cluster }}", delete_fsx="{{ params.delete_fsx }}",
                                    delete_artifacts="{{ params.delete_artifacts }}", waiter_delay=waiter_delay)
        take >> kube
        release_lease(plan, take, [aws >> register_removal(plan["target"], plan["reason"])])
        aws >> still_billing(plan["aws"], plan["cluster"])
    return dag


def build_idle_teardown_dag(dag_id: str, *, doc_md: str, schedule: str | None,
                            waiter_delay: int | None = None) -> DAG:
    """teardown_idle_deployments: judge every deployment; the idle ones go through the same
    teardown groups as teardown_deployment (release and node group; shared things stay); then
    each cluster that opted in and no deployment has used for long enough goes, by the same
    AWS teardown steps."""
    # One run at a time: each run judges every deployment; an overlapping run would judge the
    # same ones again and wait on the Leases the first holds for their teardowns.
    with _dag(dag_id, doc_md=doc_md, schedule=schedule, params={}, tags=["teardown"], max_active_runs=1) as dag:
        verdicts = JudgeDeploymentsOperator.partial(task_id="judge_deployments").expand(records=discover_deployments())

        @task_group(group_id="teardown")
        def teardown(target: Any, aws: Any, cluster: Any, nodegroup: Any, system_nodegroup: Any, nodepool: Any,
                     storage: Any, kubernetes: Any, hf_token: Any, reason: Any) -> None:
            """One idle deployment's teardown: ``select_idle`` gives each section of its teardown
            plan as a keyword, because a mapped group's argument cannot be subscripted."""
            plan = {"target": target, "aws": aws, "cluster": cluster, "nodegroup": nodegroup,
                    "system_nodegroup": system_nodegroup, "nodepool": nodepool, "storage": storage, "kubernetes": kubernetes,
                    "hf_token": hf_token}
            take = take_lease(plan, TEARDOWN)
            # In a mapped group the XComArg resolves to this map index's Lease; the teardown
            # steps' trigger rules are all all_success.
            kube, aws = teardown_groups(plan, lease=take.output, waiter_delay=waiter_delay, shared=False)
            release_lease(plan, take, [aws >> register_removal(target, reason)])

        @task_group(group_id="remove_cluster")
        def remove_cluster(target: Any, aws: Any, cluster: Any, system_nodegroup: Any, storage: Any) -> None:
            """One unused cluster's removal (``judge_clusters``): FSx, its system node group, the
            cluster, the network and roles made with it, each step deciding again from AWS."""
            plan = {"target": target, "aws": aws, "cluster": cluster, "system_nodegroup": system_nodegroup,
                    "storage": storage}
            teardown_aws_group(plan, deployment=False, delete_fsx=True, delete_cluster=True, waiter_delay=waiter_delay)

        clusters = judge_clusters(discover_clusters())
        teardown.expand_kwargs(select_idle(verdicts.output)) >> clusters
        remove_cluster.expand_kwargs(select_unused(clusters)) >> summarize(verdicts.output, clusters)
    return dag


def build_warm_up_dag(dag_id: str, *, doc_md: str, schedule: str | None,
                      deploy_dag_id: str = DEPLOY_MODEL_DAG_ID) -> DAG:
    """warm_up_deployments: for each DAG that uses a deployment through ``llm_endpoint``, start
    ``deploy_dag_id`` ahead of its next run when the deployment is gone (one run of it per
    consumer run: a deployment already being brought up is not started twice)."""
    with _dag(dag_id, doc_md=doc_md, schedule=schedule, params={}, tags=["warm-up"], max_active_runs=1) as dag:
        TriggerDagRunOperator.partial(task_id="warm_up", trigger_dag_id=deploy_dag_id, wait_for_completion=False,
                                      skip_when_already_exists=True).expand_kwargs(plan_warm_ups())
    return dag


def build_deploy_dag(dag_id: str, *, doc_md: str, model_ids: list[str] | None = None,
                     default_model: str | None = None, tags: list[str] | None = None,
                     waiter_delay: int | None = None) -> DAG:
    """One deploy DAG offering ``model_ids`` (default: the whole catalog)."""
    all_models, instance_types = catalog_index()
    model_ids = model_ids or all_models
    with _dag(dag_id, doc_md=doc_md, schedule=None, tags=["deploy", *(tags or [])], max_active_runs=concurrent_runs(),
              params=deploy_form(model_ids, default_model or model_ids[0], instance_types)) as dag:
        plan = plan_deployment()
        take = take_lease(plan, DEPLOY)
        lease = LEASE
        provision = provision_group(plan, take=take, waiter_delay=waiter_delay, approval=True)
        storage, fsx = storage_group(plan, lease=lease, waiter_delay=waiter_delay)
        step = {"target": plan["target"], "lease": lease}
        devices = DevicePluginOperator(task_id="device_plugin", profile=plan["profile"], kubernetes=plan["kubernetes"],
                                       nodepool=NODEPOOL, **step)
        secret = HfTokenSecretOperator(task_id="hf_token_secret", aws=plan["aws"], hf_token=plan["hf_token"], **step)
        steps = provision.children
        weights = prepare_weights_group(plan, fsx, after=[storage, steps["provision.ensure_addons"], secret],
                                        lease=lease)
        deploy = HelmDeployOperator(task_id="helm_deploy", release=plan["release"], **step,
                                    trigger_rule=TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS)
        ready = WaitReadyOperator(task_id="wait_ready", release=plan["release"], deploy=deploy.output, **step)
        serving = {"serving": plan["serving"], **step}
        smoke = SmokeTestOperator(task_id="smoke_test", release=plan["release"], smoke_test=plan["smoke_test"],
                                  **serving)
        # Run after a skipped smoke test too: the switches are independent.
        bench = BenchmarkOperator(task_id="benchmark", benchmark=plan["benchmark"], **serving,
                                  trigger_rule=TriggerRule.NONE_FAILED)
        cold = ColdStartOperator(task_id="cold_start", cold_start=plan["cold_start"], release=plan["release"], **step,
                                 trigger_rule=TriggerRule.NONE_FAILED)
        # Storage needs the cluster (FSx goes into its subnets) but not the node group; it runs
        # under the Lease, taken once the cluster answers. The weights need the system nodes and
        # add-ons (the staging Job, the FSx CSI driver) and the token; only a Neuron compile needs
        # the accelerator nodes and their plugin.
        plan >> provision
        [steps["provision.ensure_nodegroup"], steps["provision.ensure_nodepool"]] >> devices
        take >> secret
        take >> storage
        devices >> weights.children["prepare_weights.neuron_compile"]
        # Nothing runs before the spend is approved, not even the branch that creates nothing.
        steps["provision.approve_spend"] >> weights.children["prepare_weights.choose_weight_prep"]
        [weights, devices, secret] >> deploy >> ready >> smoke >> [bench, cold]
        registered = register(plan, smoke.output, bench.output, cold.output)
        # After a failure once billable things may exist: mark it failed, and with
        # teardown_on_failure remove it now (release and node group; shared things stay).
        failed = mark_failed("{{ params.teardown_on_failure }}")
        [devices, secret, weights, deploy, ready, smoke, bench, cold] >> failed
        _, aws = teardown_groups(failed, lease=lease, waiter_delay=waiter_delay, shared=False)
        release_lease(plan, take, [registered, aws])
    return dag


class llm_endpoint:  # noqa: N801 (used like Airflow's task_group and TaskGroup: a builder in a with block)
    """A model endpoint for the length of a DAG's run: the tasks written inside the ``with`` block
    run once the deployment serves, and ``llm.endpoint`` (an XComArg) tells them where and which
    model (``llm_on_eks.serving.endpoint.openai_client_for``)::

        with llm_endpoint(model="llama4-scout", accelerator="gpu", cluster_name="ml", region="us-west-2") as llm:
            summarize(llm.endpoint)

    builds, in task group ``group_id``: plan_endpoint -> hold (setup) -> deploy (a run of
    ``deploy_dag_id``, skipped when the deployment serves already with these values) -> endpoint
    -> the block's tasks -> release (teardown, after a failure too). ``request`` is the deploy
    form's fields (templates allowed); ``overrides`` more of them, as a dict or its JSON text.
    ``when_released``: ``idle`` leaves the deployment to the idle teardown once no run holds it;
    ``teardown`` has the last holder out start ``teardown_dag_id`` (unless protected).
    ``hold_hours``: how long a hold counts when its run dies without releasing it.
    ``keep_within_minutes``: the idle teardown keeps the deployment when this DAG's next run is
    due this soon (default: the deployment's predicted cold start), and the warm-up
    (``warm_up_deployments``) brings it up that long ahead of the run when it is gone.
    """

    def __init__(self, *, model: str, group_id: str = "llm_endpoint", overrides: Any = None,
                 when_released: str = "idle", hold_hours: float = DEFAULT_HOLD_HOURS,
                 keep_within_minutes: float | None = None, deploy_dag_id: str = DEPLOY_MODEL_DAG_ID,
                 teardown_dag_id: str = TEARDOWN_DAG_ID, **request: Any) -> None:
        self.group_id = group_id
        self.request = {"model": model, **request}
        self.overrides = overrides
        self.when_released = when_released
        self.hold_hours = hold_hours
        self.keep_within_minutes = keep_within_minutes
        self.dag_ids = deploy_dag_id, teardown_dag_id

    def __enter__(self) -> llm_endpoint:
        self.group = TaskGroup(group_id=self.group_id)
        self.group.__enter__()
        self.plan = plan_endpoint(self.request, self.overrides, self.keep_within_minutes)
        self.hold = HoldDeploymentOperator(task_id="hold", target=self.plan["target"],
                                           kubernetes=self.plan["kubernetes"], release=self.plan["release"],
                                           consumer=self.plan["consumer"], hold_hours=self.hold_hours)
        run_id = f"{self.group_id}__{{{{ dag.dag_id }}}}__{{{{ run_id }}}}"
        deploy = DeployForEndpointOperator(task_id="deploy", trigger_dag_id=self.dag_ids[0], trigger_run_id=run_id,
                                           conf=self.plan["conf"], hold=self.hold.output)
        self.endpoint = endpoint(self.plan)
        self.hold >> deploy >> self.endpoint
        self._own = set(self.group.children)
        return self

    def __exit__(self, *exc_info: Any) -> None:
        try:
            if exc_info[0] is None:
                body = [child for node_id, child in self.group.children.items() if node_id not in self._own]
                release = ReleaseHoldOperator(task_id="release", target=self.plan["target"],
                                              kubernetes=self.plan["kubernetes"], when_released=self.when_released,
                                              trigger_dag_id=self.dag_ids[1], conf=self.plan["teardown_conf"],
                                              trigger_run_id=f"{self.group_id}_release__{{{{ dag.dag_id }}}}__"
                                                             "{{ run_id }}")
                for child in body:
                    self.endpoint >> child >> release
                if not body:
                    self.endpoint >> release
                release.as_teardown(setups=self.hold)
        finally:
            self.group.__exit__(*exc_info)

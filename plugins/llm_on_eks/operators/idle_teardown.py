"""The steps of ``teardown_idle_deployments`` before and after the teardown group it shares with
``teardown_deployment``: find every deployment to judge, judge them one mapped task instance per
cluster (``llm_on_eks.serving.idleness`` holds the rules), pick the idle ones; then judge each
cluster they were on (a cluster of ours that opted in goes once unused long enough:
``llm_on_eks.aws.teardown.quiet_cluster_decision``), and summarize.

Deployments are found from the Asset events deploys and teardowns emit (durable, in Airflow's
metadata DB), and, from AWS tags, managed node groups no live deployment accounts for (a run
killed between creating its node group and registering). Clusters are those any event names,
removed deployments' too.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator, TriggerRule, task
from airflow.sdk.exceptions import AirflowRuntimeError

from llm_on_eks.aws import eks as rules
from llm_on_eks.aws.teardown import QuietVerdict, quiet_cluster_decision
from llm_on_eks.kube import readiness
from llm_on_eks.kube.access import api_client
from llm_on_eks.kube.holds import live_holds
from llm_on_eks.kube.lease import holder_of
from llm_on_eks.naming import (
    CREATED_AT_KEY,
    DEPLOYMENT_KEY,
    FAILED_AT_KEY,
    IDLE_TTL_ANNOTATION,
    NAMESPACE_KEY,
    PROTECTED_ANNOTATION,
    QUIET_SINCE_KEY,
    is_managed,
)
from llm_on_eks.operators.base import eks_cluster_gone
from llm_on_eks.operators.billing import billing_report
from llm_on_eks.operators.register import DEPLOYMENTS_ASSET
from llm_on_eks.plan import (
    DEFAULTS,
    SERVING_PORT,
    TEARDOWN_KEYS,
    TeardownPlan,
    build_cluster_removal_plan,
    build_teardown_plan,
    is_true,
)
from llm_on_eks.serving.consumers import Consumer
from llm_on_eks.serving.idleness import STATE_ANNOTATION, Observation, Verdict, idle_cost, judge, parse_state
from llm_on_eks.serving.metrics import read_deployment_load

if TYPE_CHECKING:
    from airflow.providers.amazon.aws.hooks.eks import EksHook

# How many recent deploy/teardown events are read: far more than any team runs deployments.
EVENTS_READ = 2000


def identity(record: dict[str, Any]) -> tuple[str, str, str, str]:
    return record["region"], record["cluster"], record["namespace"], record["deployment"]


def latest_records(extras: list[dict[str, Any]], *, removed: bool = False) -> list[dict[str, Any]]:
    """The newest record per deployment, oldest events first in ``extras``; removed ones dropped
    unless ``removed``. A consumer's record (``llm_endpoint``'s hold) is not one of the deployment's."""
    latest: dict[tuple, dict[str, Any]] = {}
    for extra in extras:
        if extra and {"deployment", "cluster", "region", "namespace"} <= set(extra) and "consumer" not in extra:
            latest[identity(extra)] = extra
    return [r for r in latest.values() if (removed or not r.get("removed")) and not r.get("dry_run")]


def consumer_records(extras: list[dict[str, Any]]) -> dict[tuple, list[dict[str, Any]]]:
    """Per deployment, the newest record of each DAG that used it through ``llm_endpoint``."""
    latest: dict[tuple, dict[str, dict[str, Any]]] = {}
    for extra in extras:
        if extra and extra.get("consumer"):
            latest.setdefault(identity(extra), {})[extra["consumer"]] = extra
    return {key: [by_dag[dag] for dag in sorted(by_dag)] for key, by_dag in latest.items()}


def next_run_of(context: Any) -> Callable[[str], datetime | None]:
    """When a DAG runs next, as Airflow's scheduler has it (``next_dagrun``, asked through the
    running task's Task SDK; a cron schedule's runs start at their logical date in Airflow 3);
    None when it is paused, unscheduled or gone. Asked once per DAG, and only for a consumer."""
    found: dict[str, datetime | None] = {}

    def next_run(dag_id: str) -> datetime | None:
        if dag_id not in found:
            try:
                dag = context["ti"].get_dag(dag_id)
            except AirflowRuntimeError:  # the API server's error answer: no such DAG (deleted since)
                found[dag_id] = None
            else:
                found[dag_id] = None if dag.is_paused else dag.next_dagrun
        return found[dag_id]

    return next_run


def cluster_key(record: dict[str, Any]) -> tuple[str, str, str]:
    """The cluster a record names: its AWS connection (a removal recorded before connections were
    part of the record gives none: the default), region and name."""
    return record.get("aws_conn_id") or DEFAULTS["aws_conn_id"], record["region"], record["cluster"]


def clusters_of(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each cluster the records name once, with the connections its newest record gives."""
    clusters: dict[tuple, dict[str, Any]] = {}
    for record in records:
        key = cluster_key(record)
        clusters[key] = {"cluster_name": record["cluster"], "region": record["region"], "aws_conn_id": key[0],
                         "kubernetes_conn_id": record.get("kubernetes_conn_id")}
    return [clusters[key] for key in sorted(clusters)]


def by_cluster(records: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """The records grouped by the cluster they are on (connection, region, name), in that order."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for record in records:
        groups.setdefault(cluster_key(record), []).append(record)
    return [groups[key] for key in sorted(groups)]


def _orphans(records: list[dict[str, Any]], known: set[tuple]) -> list[dict[str, Any]]:
    """Managed accelerator node groups on the records' clusters that no live record accounts for."""
    from airflow.providers.amazon.aws.hooks.eks import EksHook

    found = []
    clusters = {(r["aws_conn_id"], r["region"], r["cluster"]): r for r in records}
    for (conn_id, region, cluster), seen in clusters.items():
        eks = EksHook(aws_conn_id=conn_id, region_name=region).conn
        if rules.describe_cluster(eks, cluster) is None:
            continue
        for name in rules.list_nodegroups(eks, cluster):
            tags = (rules.describe_nodegroup(eks, cluster, name) or {}).get("tags") or {}
            if not is_managed(tags) or DEPLOYMENT_KEY not in tags:
                continue
            record = {"deployment": tags[DEPLOYMENT_KEY], "cluster": cluster, "region": region,
                      "namespace": tags.get(NAMESPACE_KEY, DEFAULTS["namespace"]), "aws_conn_id": conn_id,
                      "kubernetes_conn_id": seen.get("kubernetes_conn_id"), "orphan": True}
            if identity(record) not in known:
                found.append(record)
    return found


def asset_records(inlet_events: Any) -> list[dict[str, Any]]:
    """The records of the Asset's recent events, oldest first."""
    events = list(inlet_events[DEPLOYMENTS_ASSET][-EVENTS_READ:])
    return [dict(e.extra or {}) for e in sorted(events, key=lambda e: e.timestamp)]


@task(inlets=[DEPLOYMENTS_ASSET])
def discover_deployments(*, inlet_events=None) -> list[list[dict[str, Any]]]:
    """Every deployment to judge, grouped by cluster: the live ones the Asset's events name, plus
    orphaned node groups."""
    extras = asset_records(inlet_events)
    consumers = consumer_records(extras)
    records = [{**r, "consumers": consumers.get(identity(r), [])} for r in latest_records(extras)]
    orphans = _orphans(records, {identity(r) for r in records}) if records else []
    groups = by_cluster(records + orphans)
    print(f"{len(records)} deployment(s) registered, {len(orphans)} orphaned node group(s), "
          f"on {len(groups)} cluster(s)")
    return groups


@task(inlets=[DEPLOYMENTS_ASSET])
def discover_clusters(*, inlet_events=None) -> list[dict[str, Any]]:
    """Every cluster a deployment has been on, its removed deployments' too."""
    clusters = clusters_of(latest_records(asset_records(inlet_events), removed=True))
    print(f"{len(clusters)} cluster(s) with deployments, live or removed")
    return clusters


class JudgeDeploymentsOperator(BaseOperator):
    """Judge every deployment on one cluster, one after another (``DeploymentJudge``).

    One task instance per cluster rather than per deployment: reading a deployment takes well
    under a second, a task instance costs a worker process, and on a fleet that cost bounds the
    run (benchmarks/idle_teardown_fleet.py: 200 mapped judges held slots for 3228 s).

    :param records: the cluster's deployments as their last Asset events (or their orphaned node
        groups) name them: identity, how to reach them, endpoint and price
    """

    template_fields = ("records",)

    def __init__(self, *, records: Any, **kwargs) -> None:
        super().__init__(**kwargs)
        self.records = records

    def execute(self, context: Any) -> list[dict[str, Any]]:
        next_run = next_run_of(context)
        return [DeploymentJudge(record, self.log, next_run).verdict() for record in self.records]


class DeploymentJudge:
    """Read one deployment (its release's Service, readiness, vLLM counters, node group tags, its
    consumers' next runs), judge it, keep the idle clock on the Service, and say whether it goes
    and why."""

    def __init__(self, record: dict[str, Any], log: Any,
                 next_run: Callable[[str], datetime | None] = lambda dag_id: None) -> None:
        self.record = record
        self.log = log
        self.next_run = next_run

    @cached_property
    def teardown_plan(self) -> TeardownPlan:
        """The deployment's teardown plan: what the judge reads, and the idle teardown removes."""
        record = self.record
        return build_teardown_plan({k: record.get(k) for k in TEARDOWN_KEYS}
                                   | {"deployment_name": record["deployment"], "cluster_name": record["cluster"]})

    @cached_property
    def hook(self) -> EksHook:
        """The deployment's EKS, for its node group's tags."""
        from airflow.providers.amazon.aws.hooks.eks import EksHook

        aws = self.teardown_plan["aws"]
        return EksHook(aws_conn_id=aws["conn_id"], region_name=aws["region"])

    def verdict(self) -> dict[str, Any]:
        record = self.record
        if eks_cluster_gone(self.teardown_plan["target"]["access"]):
            # Removed with its cluster (outside a teardown run): nothing of it is left to read or remove.
            verdict, load = Verdict(teardown=False, reason=f"gone: EKS cluster {record['cluster']} no longer "
                                                           f"exists in {record['region']}", state=None), None
        else:
            verdict, load = self._judge(record)
        hourly = float(record.get("hourly_usd") or 0)
        result = {"deployment": record["deployment"], "cluster": record["cluster"], "region": record["region"],
                  "namespace": record["namespace"], "teardown": verdict.teardown, "reason": verdict.reason,
                  "hourly_usd": hourly, "idle_cost_usd": idle_cost(hourly, verdict.idle_minutes),
                  "load": load.as_dict() if load else None,
                  "kept_for": verdict.kept_for,
                  "plan": dict(self.teardown_plan) | {"reason": verdict.reason}}
        self.log.info("%s/%s on %s: %s", record["namespace"], record["deployment"], record["cluster"], verdict.reason)
        return result

    def _judge(self, record: dict[str, Any]) -> tuple[Any, Any]:
        """The idleness rules' verdict on what the cluster and AWS say of the deployment, and its load."""
        now = datetime.now(UTC)
        lease, holds, service, ready, load = self._cluster_side(record, now)
        annotations = (service or {}).get("annotations") or {}
        failed_at, nodegroup_created = self._nodegroup_marks()
        seen = Observation(
            now=now,
            idle_ttl_minutes=int(annotations.get(IDLE_TTL_ANNOTATION,
                                                 record.get("idle_ttl_minutes", DEFAULTS["idle_ttl_minutes"]))),
            protected=is_true(annotations.get(PROTECTED_ANNOTATION)),
            created_at=(service or {}).get("created_at"), ready=ready, load=load,
            state=(service or {}).get("state") or {}, failed_at=failed_at, nodegroup_created_at=nodegroup_created,
            lease=lease, holds=tuple(h.holder for h in holds),
            consumers=tuple(Consumer(c["consumer"], self.next_run(c["consumer"]), float(c["keep_within_minutes"]),
                                     int(c.get("cold_start_s") or 0))
                            for c in record.get("consumers", [])),
            deployed_at=datetime.fromisoformat(record["deployed_at"]) if record.get("deployed_at") else None)
        verdict = judge(seen)
        if verdict.state is not None and service is not None:
            self._keep_state(verdict.state)
        return verdict, load

    def _cluster_side(self, record: dict[str, Any], now: datetime) -> tuple:
        """((action, holder) of a live Lease or None, the live holds, the Service's
        annotations/creation/state or None, pods ready, vLLM load or None)."""
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException

        kube, access = self.teardown_plan["kubernetes"], self.teardown_plan["target"]["access"]
        with api_client(access) as api:
            held = holder_of(api, kube["namespace"], self.teardown_plan["target"]["deployment"], now)
            lease = (held.action or "unknown action", held.holder) if held else None
            holds = live_holds(api, kube["namespace"], self.teardown_plan["target"]["deployment"], now)
            try:
                found = client.CoreV1Api(api).read_namespaced_service(kube["release"], kube["namespace"])
            except ApiException as exc:
                if exc.status != 404:
                    raise
                return lease, holds, None, None, None
            annotations = found.metadata.annotations or {}
            service = {"annotations": annotations, "created_at": found.metadata.creation_timestamp,
                       "state": parse_state(annotations.get(STATE_ANNOTATION))}
            try:
                ready = readiness.check(api, kube["namespace"], kube["release"], int(record.get("nodes") or 1) > 1,
                                        now).ready
            except ApiException as exc:
                if exc.status != 404:
                    raise
                ready = False
        if not ready:
            return lease, holds, service, ready, None
        load = read_deployment_load(access, base_url=record.get("endpoint_url"), namespace=kube["namespace"],
                                    release=kube["release"], port=record.get("port", SERVING_PORT))
        return lease, holds, service, ready, load

    def _nodegroup_marks(self) -> tuple[datetime | None, datetime | None]:
        """The node group's failed-at and created-at tags (None when absent or no node group)."""
        eks, cluster = self.hook.conn, self.teardown_plan["cluster"]["name"]
        if rules.describe_cluster(eks, cluster) is None:
            return None, None
        group = rules.describe_nodegroup(eks, cluster, self.teardown_plan["nodegroup"]["name"]) or {}
        tags = group.get("tags") or {}
        marks = [tags.get(FAILED_AT_KEY), tags.get(CREATED_AT_KEY)]
        return tuple(datetime.fromisoformat(m) if m else None for m in marks)

    def _keep_state(self, state: dict[str, Any]) -> None:
        from kubernetes import client

        kube = self.teardown_plan["kubernetes"]
        body = {"metadata": {"annotations": {STATE_ANNOTATION: json.dumps(state, sort_keys=True)}}}
        with api_client(self.teardown_plan["target"]["access"]) as api:
            client.CoreV1Api(api).patch_namespaced_service(kube["release"], kube["namespace"], body)


# The teardown group's keywords (factory.build_idle_teardown_dag): the teardown plan's sections.
TEARDOWN_SECTIONS = ("target", "aws", "cluster", "nodegroup", "system_nodegroup", "nodepool", "storage", "kubernetes",
                     "hf_token")


def _flat(verdicts: Any) -> list[dict[str, Any]]:
    """The judges' verdicts, cluster by cluster, as one list."""
    return [verdict for cluster in verdicts or [] for verdict in cluster]


@task
def select_idle(verdicts: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """The teardown group's keywords for each deployment that goes: its teardown plan's sections
    and the reason."""
    return [{**{k: v["plan"][k] for k in TEARDOWN_SECTIONS}, "reason": v["reason"]} for v in _flat(verdicts)
            if v["teardown"]]


@task(trigger_rule=TriggerRule.ALL_DONE)
def judge_clusters(clusters: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """After the deployments' teardowns, whatever their outcome: each cluster's verdict on its
    removal once unused, its quiet-since tag kept on it, and for those that go, the removal's plan.
    Who uses a cluster is read from AWS: its deployments' node groups and its FSx's users."""
    from airflow.providers.amazon.aws.hooks.eks import EksHook

    now, judged = datetime.now(UTC), []
    for params in clusters:
        name = params["cluster_name"]
        aws = {"conn_id": params["aws_conn_id"], "region": params["region"]}
        eks = EksHook(aws_conn_id=aws["conn_id"], region_name=aws["region"]).conn
        found = rules.describe_cluster(eks, name)
        report = billing_report(aws, name)
        users = sorted({user for item in report["items"] for user in item["used_by"]})
        if found is not None and report["hourly_usd"] is None:
            verdict = QuietVerdict(False, "kept: who uses it is unknown (AWS did not answer)", None)
        else:
            verdict = quiet_cluster_decision(found, users, now)
        if found is not None and is_managed(found.get("tags")):
            _keep_quiet_since(eks, found, verdict.quiet_since)
        print(f"cluster {name} in {params['region']}: {verdict.reason}")
        judged.append({"cluster": name, "region": params["region"], "aws": aws, "remove": verdict.remove,
                       "reason": verdict.reason,
                       "plan": build_cluster_removal_plan(params, verdict.reason) if verdict.remove else None})
    return judged


def _kept_for(verdict: dict[str, Any]) -> dict[str, Any]:
    """What keeping a deployment for a consumer's next run costs (idle until then, at the hourly
    list price) and saves (the cold start that run would otherwise start with)."""
    kept, hourly = verdict["kept_for"], verdict["hourly_usd"]
    return {"deployment": verdict["deployment"], **kept,
            "idle_until_run_usd": round(hourly * kept["in_minutes"] / 60, 2),
            "cold_start_usd": round(hourly * kept["cold_start_s"] / 3600, 2)}


def _keep_quiet_since(eks: Any, cluster: dict[str, Any], since: str | None) -> None:
    """The cluster's quiet-since tag as the verdict has it: set, kept, or gone once it is used."""
    tags = cluster.get("tags") or {}
    if since is not None and tags.get(QUIET_SINCE_KEY) != since:
        eks.tag_resource(resourceArn=cluster["arn"], tags={QUIET_SINCE_KEY: since})
    elif since is None and QUIET_SINCE_KEY in tags:
        eks.untag_resource(resourceArn=cluster["arn"], tagKeys=[QUIET_SINCE_KEY])


# The cluster removal group's keywords (factory.build_idle_teardown_dag).
REMOVAL_SECTIONS = ("target", "aws", "cluster", "system_nodegroup", "storage")


@task
def select_unused(clusters: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The removal group's keywords for each cluster that goes: its removal plan's sections."""
    return [{k: c["plan"][k] for k in REMOVAL_SECTIONS} for c in clusters if c["remove"]]


@task(trigger_rule=TriggerRule.ALL_DONE)
def summarize(verdicts: list[list[dict[str, Any]]] | None, clusters: list[dict[str, Any]] | None = None
              ) -> dict[str, Any]:
    """What was checked, kept and why, removed, the hourly cost stopped and the money spent idle;
    each cluster's verdict on its removal once unused, and what still bills on each cluster
    judged once everything is done (``llm_on_eks.operators.billing``)."""
    verdicts, clusters = _flat(verdicts), list(clusters or [])
    removed = [v for v in verdicts if v["teardown"]]
    summary = {
        "checked": len(verdicts),
        "kept": [{"deployment": v["deployment"], "namespace": v["namespace"], "cluster": v["cluster"],
                  "reason": v["reason"]} for v in verdicts if not v["teardown"]],
        "removed": [{"deployment": v["deployment"], "namespace": v["namespace"], "cluster": v["cluster"],
                     "reason": v["reason"], "hourly_usd": v["hourly_usd"], "idle_cost_usd": v["idle_cost_usd"]}
                    for v in removed],
        "hourly_usd_stopped": round(sum(v["hourly_usd"] for v in removed), 2),
        "idle_cost_usd": round(sum(v["idle_cost_usd"] for v in removed), 2),
    }
    lines = [f"checked {summary['checked']}, removing {len(removed)}: ${summary['hourly_usd_stopped']:.2f}/hour stopped,"
             f" ${summary['idle_cost_usd']:.2f} spent idle since last activity"]
    lines += [f"  remove {r['namespace']}/{r['deployment']} on {r['cluster']}: {r['reason']}" for r in summary["removed"]]
    lines += [f"  keep   {k['namespace']}/{k['deployment']} on {k['cluster']}: {k['reason']}" for k in summary["kept"]]
    summary["kept_for_consumers"] = [_kept_for(v) for v in verdicts if v.get("kept_for")]
    lines += [f"  for its next consumer run, {k['deployment']} costs ${k['idle_until_run_usd']:.2f} idle until "
              f"{k['dag_id']} runs and saves a {k['cold_start_s'] / 60:.0f}-min cold start (${k['cold_start_usd']:.2f} "
              "of nodes booting and loading), and that run's wait" for k in summary["kept_for_consumers"]]
    summary["clusters"] = [{"cluster": c["cluster"], "region": c["region"], "removed": c["remove"],
                            "reason": c["reason"]} for c in clusters if c["reason"] != "gone"]
    lines += [f"  {'remove' if c['removed'] else 'keep  '} cluster {c['cluster']} ({c['region']}): {c['reason']}"
              for c in summary["clusters"]]
    billed = {(v["plan"]["aws"]["conn_id"], v["plan"]["aws"]["region"], v["cluster"]): v["plan"]["aws"]
              for v in verdicts}
    billed |= {(c["aws"]["conn_id"], c["region"], c["cluster"]): c["aws"] for c in clusters}
    # Clusters gone (removed with their last deployment, or now) bill nothing and are left out.
    reports = [billing_report(aws, cluster) for (_, _, cluster), aws in sorted(billed.items())]
    summary["still_billing"] = [report for report in reports if report["items"] or report["hourly_usd"] is None]
    lines += [report["summary"] for report in summary["still_billing"]]
    print("\n".join(lines))
    return summary

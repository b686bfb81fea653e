"""AWS steps of a deployment: preflight, cluster, node group, add-ons, artifact bucket, FSx, and
the teardown of what they made.

Every ensure-step finds its resource by name and tags, adopts it when it fits the plan, refuses
it with the reason when it does not, and creates it otherwise: a retry after any partial failure
or a second run ends with the same resources. The waits are the Amazon provider's (its EKS
triggers and botocore waiters; FSx waiters in ``llm_on_eks/aws/waiters``), in the worker or
deferred (``deferrable``). A deferred step resumes by running its ensure again, which finds what
it created and goes on from there.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from airflow.configuration import conf

from llm_on_eks.aws import api_calls
from llm_on_eks.operators.base import PlanStepOperator

DEFAULT_DEFERRABLE = conf.getboolean("operators", "default_deferrable", fallback=False)
RESUME_XCOM = "resume"

# What the cluster needs for accelerator pods beyond what EKS installs (seed 000, seed 001).
ADDONS = {
    "gpu": ["vpc-cni", "coredns", "kube-proxy", "aws-fsx-csi-driver"],
    "neuron": ["vpc-cni", "coredns", "kube-proxy"],
}


# On-demand vCPU quotas by instance family, found by name (Service Quotas, service code ec2).
QUOTA_NAMES = {"p": "Running On-Demand P instances", "g": "Running On-Demand G and VT instances",
               "trn": "Running On-Demand Trn instances"}


class PreflightOperator(PlanStepOperator):
    """Before anything is created: the instance type is offered, the version supported, the quota
    enough. A check AWS does not answer is reported as unknown, never counted as passed."""

    def describe(self, plan: dict[str, Any]) -> Any:
        system = api_calls.preflight_requests(api_calls.system_plan(plan))[:1] if plan["cluster"]["create"] else []
        return {"checks": [*api_calls.preflight_requests(plan), *system, {"hf_token_from": _token_origin(plan)}]}

    def run(self, plan: dict[str, Any], context: Any) -> Any:
        from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook
        from airflow.sdk.exceptions import AirflowFailException

        def client(name: str):
            return AwsBaseHook(aws_conn_id=plan["aws"]["conn_id"], client_type=name,
                               region_name=plan["aws"]["region"]).get_conn()

        checks = [_check("instance type offered", lambda: _offered(client("ec2"), plan)),
                  _check("cluster version supported", lambda: _version_supported(client("eks"), plan)),
                  _check("on-demand vCPU quota", lambda: _quota(client("service-quotas"), plan)),
                  _check("HF token source", lambda: _hf_token_source(plan))]
        if plan["cluster"]["create"]:
            checks.insert(1, _check("system instance type offered", lambda: _offered(client("ec2"), plan, system=True)))
        for check in checks:
            self.log.info("preflight %s: %s (%s)", check["check"], check["status"], check["detail"])
        failed = [c for c in checks if c["status"] == "fail"]
        if failed:
            raise AirflowFailException("preflight failed, nothing was created: "
                                       + "; ".join(f"{c['check']}: {c['detail']}" for c in failed))
        return {"checks": checks}


class _AwsStepOperator(PlanStepOperator):
    """An AWS step whose waits run in the worker or, with ``deferrable``, in the triggerer.

    ``WAIT`` is (seconds between polls, polls): how long AWS can take, with room to spare."""

    WAIT = (30, 60)

    def __init__(self, *, deferrable: bool = DEFAULT_DEFERRABLE, waiter_delay: int | None = None,
                 waiter_max_attempts: int | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.deferrable = deferrable
        self.waiter_delay = self.WAIT[0] if waiter_delay is None else waiter_delay
        self.waiter_max_attempts = waiter_max_attempts or self.WAIT[1]
        self._resume: dict[str, Any] = {}
        self._context: Any = None

    def execute(self, context: Any) -> Any:
        self._context = context
        return super().execute(context)

    @staticmethod
    def aws(plan: dict[str, Any]) -> dict[str, Any]:
        return {"aws_conn_id": plan["aws"]["conn_id"], "region_name": plan["aws"]["region"]}

    def wait(self, plan: dict[str, Any], *, trigger: Callable[..., Any], ids: dict[str, Any], waiter: Any,
             args: dict[str, Any], what: str, status_args: list[str], resume: dict[str, Any]) -> None:
        """Wait for ``what``: defer to ``trigger(**ids)``, or poll ``waiter`` here. A failed wait
        goes to ``wait_failed`` with ``resume`` (what this try created), either way."""
        from airflow.exceptions import AirflowException
        from airflow.providers.amazon.aws.utils.waiter_with_logging import wait

        if self.deferrable:
            # What to resume with travels as defer kwargs and, because `dag.test()` replaces
            # those with the event alone, as an XCom of this try as well.
            context = self._context
            if context is not None:
                context["ti"].xcom_push(key=RESUME_XCOM, value={**resume, "waited": what})
            self.defer(trigger=trigger(**ids, waiter_delay=self.waiter_delay,
                                       waiter_max_attempts=self.waiter_max_attempts, **self.aws(plan)),
                       method_name="execute_complete", kwargs={**resume, "waited": what},
                       timeout=timedelta(seconds=self.waiter_delay * self.waiter_max_attempts + 60))
        self.log.info("waiting for %s (every %s s, at most %s times)", what, self.waiter_delay,
                      self.waiter_max_attempts)
        try:
            wait(waiter=waiter, waiter_delay=self.waiter_delay, waiter_max_attempts=self.waiter_max_attempts,
                 args=args, failure_message=f"{what} failed", status_message=f"{what}:", status_args=status_args)
        except AirflowException as exc:
            self.wait_failed(plan, str(exc), **resume)

    def execute_complete(self, context: Any, event: dict[str, Any] | None = None, **resume: Any) -> Any:
        from airflow.providers.amazon.aws.utils import validate_execute_complete_event

        event = validate_execute_complete_event(event)
        resume = {**(context["ti"].xcom_pull(task_ids=self.task_id, key=RESUME_XCOM) or {}), **resume}
        if event.get("status") != "success":
            self.wait_failed(self.plan, f"{resume.get('waited')}: {event.get('message', event)}", **resume)
        self._resume, self._context = resume, context
        return self.run(self.plan, context)

    def wait_failed(self, plan: dict[str, Any], why: str, **resume: Any) -> None:
        """Clean up what this step created, then fail. Default: nothing to clean."""
        from airflow.sdk.exceptions import AirflowFailException

        raise AirflowFailException(why)

    def must_wait(self, pending: bool, created_now: bool, what: str) -> bool:
        """Wait when AWS says the resource is pending, or when this call just created it (EKS
        answers CREATING for minutes; moto answers ACTIVE at once). Never twice for one thing."""
        return (pending or created_now) and self._resume.get("waited") != what


class EnsureClusterOperator(_AwsStepOperator):
    """Adopt the named EKS cluster, or create it when the plan allows.

    Adopting needs only eks:DescribeCluster: a cluster named in the params is reused without any
    create permission. The provider's EksCreateClusterOperator always calls CreateCluster, so
    this step calls it itself and waits with the provider's waiter / EksCreateClusterTrigger."""

    WAIT = (30, 60)  # an EKS control plane takes 10-15 minutes

    def describe(self, plan: dict[str, Any]) -> Any:
        find = {"service": "eks", "operation": "describe_cluster", "kwargs": {"name": plan["cluster"]["name"]}}
        if not plan["cluster"]["create"]:
            return {"find": find, "if_missing": "fail: create_cluster is off"}
        return {"find": find, "if_missing": {"service": "eks", "operation": "create_cluster",
                                             "kwargs": api_calls.create_cluster_request(plan)},
                "wait_for": "cluster ACTIVE", "deferrable": self.deferrable}

    def run(self, plan: dict[str, Any], context: Any) -> Any:
        from airflow.providers.amazon.aws.hooks.eks import EksHook
        from airflow.providers.amazon.aws.triggers.eks import EksCreateClusterTrigger
        from airflow.sdk.exceptions import AirflowFailException

        from llm_on_eks.aws import eks as rules

        name, region = plan["cluster"]["name"], plan["aws"]["region"]
        eks = EksHook(**self.aws(plan)).conn
        created_now = False
        cluster = rules.describe_cluster(eks, name)
        if cluster is None:
            if not plan["cluster"]["create"]:
                raise AirflowFailException(
                    f"EKS cluster {name} does not exist in {region}: create it, or trigger with create_cluster=true "
                    "(and cluster_role_arn, two subnet_ids in different AZs)")
            self.log.info("EKS cluster %s not found in %s: creating it (Kubernetes %s)", name, region,
                          plan["cluster"]["version"])
            try:
                eks.create_cluster(**api_calls.create_cluster_request(plan))
                created_now = True
            except eks.exceptions.ResourceInUseException:
                self.log.info("EKS cluster %s appeared meanwhile: adopting it", name)
            cluster = rules.describe_cluster(eks, name)
        problems = rules.cluster_problems(cluster)
        if problems:
            raise AirflowFailException(f"EKS cluster {name} cannot carry the deployment: {'; '.join(problems)}")
        created = created_now or bool(self._resume.get("created"))
        if self.must_wait(cluster["status"] in rules.CLUSTER_PENDING, created_now, "cluster ACTIVE"):
            self.wait(plan, trigger=EksCreateClusterTrigger, ids={"cluster_name": name},
                      waiter=eks.get_waiter("cluster_active"), args={"name": name}, what="cluster ACTIVE",
                      status_args=["cluster.status"], resume={"created": created})
            cluster = rules.describe_cluster(eks, name)
        if cluster["version"] != plan["cluster"]["version"]:
            self.log.warning("EKS cluster %s runs Kubernetes %s, the plan names %s: using it as it is", name,
                             cluster["version"], plan["cluster"]["version"])
        managed = rules.is_managed(cluster.get("tags"))
        action = "created" if created else "adopted"
        self.log.info("EKS cluster %s %s (%s, Kubernetes %s, %s)", name, action, cluster["status"],
                      cluster["version"], "made by llm-on-eks" if managed else "not made by llm-on-eks")
        vpc = cluster.get("resourcesVpcConfig") or {}
        return {"name": name, "action": action, "managed": managed, "status": cluster["status"],
                "version": cluster["version"], "subnet_ids": vpc.get("subnetIds", []),
                "cluster_security_group_id": vpc.get("clusterSecurityGroupId")}

    def wait_failed(self, plan: dict[str, Any], why: str, **resume: Any) -> None:
        from airflow.sdk.exceptions import AirflowFailException

        if resume.get("created"):
            self.log.error("EKS cluster %s did not become ACTIVE: deleting it (%s)", plan["cluster"]["name"], why)
            _best_effort_delete(self.log, lambda: _eks(plan).delete_cluster(name=plan["cluster"]["name"]))
            why += " (the cluster this run created was deleted)"
        raise AirflowFailException(why)


class EnsureNodegroupOperator(_AwsStepOperator):
    """Adopt the deployment's accelerator node group, or create it; a new size is applied.

    Waits with the provider's nodegroup_active waiter / EksCreateNodegroupTrigger."""

    WAIT = (30, 120)  # up to an hour: p5/trn2 capacity can be slow to arrive
    RESIZE = True  # a new size in the plan is applied
    ONE_PER_DEPLOYMENT = True  # refuse when the deployment already has a node group of another name

    @staticmethod
    def target(plan: dict[str, Any]) -> dict[str, Any]:
        """The plan as this step sees it: the accelerator node group (a subclass names another)."""
        return plan

    def describe(self, plan: dict[str, Any]) -> Any:
        plan = self.target(plan)
        return {
            "find": {"service": "eks", "operation": "describe_nodegroup",
                     "kwargs": {"clusterName": plan["cluster"]["name"], "nodegroupName": plan["nodegroup"]["name"]}},
            "if_missing": {"service": "eks", "operation": "create_nodegroup",
                           "kwargs": api_calls.create_nodegroup_request(plan)},
            "wait_for": "node group ACTIVE", "deferrable": self.deferrable,
        }

    def run(self, plan: dict[str, Any], context: Any) -> Any:
        from airflow.providers.amazon.aws.hooks.eks import EksHook
        from airflow.providers.amazon.aws.triggers.eks import EksCreateNodegroupTrigger
        from airflow.sdk.exceptions import AirflowFailException

        from llm_on_eks.aws import eks as rules
        from llm_on_eks.naming import DEPLOYMENT_KEY

        plan = self.target(plan)
        cluster_name, name = plan["cluster"]["name"], plan["nodegroup"]["name"]
        eks = EksHook(**self.aws(plan)).conn
        cluster = rules.describe_cluster(eks, cluster_name)
        if cluster is None:
            raise AirflowFailException(f"EKS cluster {cluster_name} does not exist (provision.ensure_cluster makes it)")
        others = [n for n in rules.list_nodegroups(eks, cluster_name) if n != name
                  and ((rules.describe_nodegroup(eks, cluster_name, n) or {}).get("tags") or {}).get(DEPLOYMENT_KEY)
                  == plan["deployment"]] if self.ONE_PER_DEPLOYMENT else []
        if others:
            raise AirflowFailException(f"deployment {plan['deployment']} already has node group(s) {others} in "
                                       f"{cluster_name}; one deployment has one node group: delete them first")
        created_now = updated = False
        group = rules.describe_nodegroup(eks, cluster_name, name)
        if group is None:
            subnets = plan["nodegroup"]["subnet_ids"] or (cluster.get("resourcesVpcConfig") or {}).get("subnetIds")
            if not plan["nodegroup"]["node_role_arn"]:
                raise AirflowFailException(f"node group {name} does not exist and creating it needs node_role_arn")
            request = api_calls.create_nodegroup_request(plan, subnets)
            self.log.info("creating node group %s: %s x %s (%s)", name, plan["nodegroup"]["scaling"]["desired_size"],
                          plan["nodegroup"]["instance_type"], plan["nodegroup"]["ami_type"])
            try:
                eks.create_nodegroup(**request)
                created_now = True
            except eks.exceptions.ResourceInUseException:
                self.log.info("node group %s appeared meanwhile: adopting it", name)
            group = rules.describe_nodegroup(eks, cluster_name, name)
        problems = rules.nodegroup_problems(group, plan)
        if problems:
            raise AirflowFailException(f"node group {name} in {cluster_name} exists but cannot be adopted: "
                                       + "; ".join(problems))
        if self.RESIZE and group["status"] in rules.NODEGROUP_USABLE and rules.scaling_differs(group, plan):
            self.log.info("node group %s: scaling %s -> %s", name, group.get("scalingConfig"), rules.scaling_of(plan))
            eks.update_nodegroup_config(clusterName=cluster_name, nodegroupName=name,
                                        scalingConfig=rules.scaling_of(plan))
            updated = True
        created = created_now or bool(self._resume.get("created"))
        if self.must_wait(group["status"] in rules.NODEGROUP_PENDING, created_now or updated, "node group ACTIVE"):
            self.wait(plan, trigger=EksCreateNodegroupTrigger, ids={"cluster_name": cluster_name, "nodegroup_name": name},
                      waiter=eks.get_waiter("nodegroup_active"), args={"clusterName": cluster_name, "nodegroupName": name},
                      what="node group ACTIVE", status_args=["nodegroup.status"], resume={"created": created})
            group = rules.describe_nodegroup(eks, cluster_name, name)
        action = "created" if created else ("resized" if updated else "adopted")
        self.log.info("node group %s %s (%s)", name, action, group["status"])
        return {"cluster": cluster_name, "nodegroup": name, "action": action, "status": group["status"],
                "instance_type": plan["nodegroup"]["instance_type"], "scaling": group.get("scalingConfig"),
                "labels": group.get("labels"), "taints": group.get("taints")}

    def wait_failed(self, plan: dict[str, Any], why: str, **resume: Any) -> None:
        from airflow.sdk.exceptions import AirflowFailException

        plan = self.target(plan)
        if resume.get("created"):
            # As the provider's EksCreateNodegroupOperator does: a node group that never became
            # ACTIVE would bill (and block the name) with nobody using it.
            self.log.error("node group %s did not become ACTIVE: deleting it (%s)", plan["nodegroup"]["name"], why)
            _best_effort_delete(self.log, lambda: _eks(plan).delete_nodegroup(
                clusterName=plan["cluster"]["name"], nodegroupName=plan["nodegroup"]["name"]))
            why += " (the node group this run created was deleted)"
        raise AirflowFailException(why)


NO_SYSTEM_NODES = (
    "EKS cluster {cluster} has no managed node group without NoSchedule/NoExecute taints: coredns "
    "cannot schedule (pod DNS fails) and the FSx weight-staging Job (no tolerations, 4 CPU / 16 GiB) "
    "cannot run. Add an untainted node group (e.g. 2 x m6i.xlarge, AL2023_x86_64_STANDARD), unless "
    "self-managed, Karpenter or Fargate capacity (not visible to this check) takes those pods")


class EnsureSystemNodegroupOperator(EnsureNodegroupOperator):
    """The cluster's untainted system node group, on clusters this project creates.

    The accelerator node group is tainted, so without this nothing runs coredns or the FSx
    weight-staging Job. Same ensure as the accelerator node group (adopt, refuse with reasons,
    create, wait in the worker or deferred, delete a group that never became ACTIVE), aimed at
    ``api_calls.system_plan``: one per cluster, tagged with the cluster and a role, shared by
    every deployment on it. Its size is not forced back (an autoscaler may have changed it).

    On a cluster that is not ours (or with create_cluster off) nothing is created: the step
    reports the untainted node groups it finds and warns when there are none."""

    WAIT = (30, 60)  # a general-purpose node group: a few minutes
    RESIZE = False
    ONE_PER_DEPLOYMENT = False

    @staticmethod
    def target(plan: dict[str, Any]) -> dict[str, Any]:
        return api_calls.system_plan(plan)

    def describe(self, plan: dict[str, Any]) -> Any:
        if not plan["cluster"]["create"]:
            return {"check": [{"service": "eks", "operation": "list_nodegroups",
                               "kwargs": {"clusterName": plan["cluster"]["name"]}},
                              {"service": "eks", "operation": "describe_nodegroup", "for_each": "node group"}],
                    "warn_if": "no node group without NoSchedule/NoExecute taints (coredns, weight staging)",
                    "creates": "nothing: the cluster is not created by this run"}
        spec = self.target(plan)["nodegroup"]
        return {**super().describe(plan), "shared_by": f"every deployment on {plan['cluster']['name']}",
                "estimate": f"{spec['scaling']['desired_size']} x {spec['instance_type']} "
                            f"~${spec['hourly_usd_estimate']:.2f}/hour on demand (us-east-1 list price), "
                            "on top of the plan's accelerator cost"}

    def run(self, plan: dict[str, Any], context: Any) -> Any:
        from airflow.providers.amazon.aws.hooks.eks import EksHook
        from airflow.sdk.exceptions import AirflowFailException

        from llm_on_eks.aws import eks as rules

        cluster_name = plan["cluster"]["name"]
        eks = EksHook(**self.aws(plan)).conn
        cluster = rules.describe_cluster(eks, cluster_name)
        if cluster is None:
            raise AirflowFailException(f"EKS cluster {cluster_name} does not exist (provision.ensure_cluster makes it)")
        if plan["cluster"]["create"] and rules.is_managed(cluster.get("tags")):
            return super().run(plan, context)
        why = "create_cluster is off" if not plan["cluster"]["create"] else "the cluster is not llm-on-eks's"
        found = [g["nodegroupName"] for g in rules.untainted_nodegroups(eks, cluster_name)]
        warning = None if found else NO_SYSTEM_NODES.format(cluster=cluster_name)
        if warning:
            self.log.warning("%s", warning)
        else:
            self.log.info("EKS cluster %s: untainted node group(s) %s take coredns and weight staging", cluster_name,
                          found)
        return {"cluster": cluster_name, "nodegroup": None, "action": f"checked ({why}: none created)",
                "untainted_nodegroups": found, "warning": warning}


class EnsureAddonsOperator(_AwsStepOperator):
    """The EKS add-ons accelerator serving needs (CSI driver for FSx on GPU profiles).

    The provider has no add-on operator or trigger: EksAddonActiveTrigger fills that gap."""

    WAIT = (10, 90)

    def describe(self, plan: dict[str, Any]) -> Any:
        return {"ensure": [{"service": "eks", "operation": "create_addon",
                            "kwargs": api_calls.create_addon_request(plan, name)}
                           for name in ADDONS[plan["profile"]["accelerator"]]],
                "wait_for": "add-ons ACTIVE", "deferrable": self.deferrable}

    def run(self, plan: dict[str, Any], context: Any) -> Any:
        from airflow.providers.amazon.aws.hooks.eks import EksHook
        from airflow.sdk.exceptions import AirflowFailException

        from llm_on_eks.aws import eks as rules
        from llm_on_eks.triggers.eks import EksAddonActiveTrigger

        cluster_name = plan["cluster"]["name"]
        eks = EksHook(**self.aws(plan)).conn
        actions: dict[str, str] = {}
        for name in ADDONS[plan["profile"]["accelerator"]]:
            addon = rules.describe_addon(eks, cluster_name, name)
            created_now = False
            if addon is None:
                self.log.info("creating EKS add-on %s on %s", name, cluster_name)
                try:
                    eks.create_addon(**api_calls.create_addon_request(plan, name))
                    created_now = True
                except eks.exceptions.ResourceInUseException:
                    self.log.info("add-on %s appeared meanwhile: adopting it", name)
                addon = rules.describe_addon(eks, cluster_name, name)
            problems = rules.addon_problems(addon)
            if problems:
                raise AirflowFailException(f"EKS cluster {cluster_name}: {'; '.join(problems)}")
            if self.must_wait(addon["status"] in rules.ADDON_PENDING, created_now, f"add-on {name} ACTIVE"):
                self.wait(plan, trigger=EksAddonActiveTrigger, ids={"cluster_name": cluster_name, "addon_name": name},
                          waiter=eks.get_waiter("addon_active"), args={"clusterName": cluster_name, "addonName": name},
                          what=f"add-on {name} ACTIVE", status_args=["addon.status"], resume={})
            actions[name] = "created" if created_now or self._resume.get("waited") == f"add-on {name} ACTIVE" \
                else "adopted"
            self.log.info("EKS add-on %s %s", name, actions[name])
        return {"cluster": cluster_name, "addons": actions}


class EnsureArtifactBucketOperator(PlanStepOperator):
    """The S3 bucket for the Neuron compile cache, staged-weight markers and FSx's data repository."""

    def describe(self, plan: dict[str, Any]) -> Any:
        bucket = plan["storage"]["artifact_bucket"]
        return {"find": {"service": "s3", "operation": "head_bucket", "kwargs": {"Bucket": bucket}},
                "if_missing": [{"service": "s3", "operation": "create_bucket",
                                "kwargs": api_calls.create_bucket_request(plan)},
                               {"service": "s3", "operation": "put_bucket_tagging",
                                "kwargs": api_calls.bucket_tagging_request(plan)}],
                "prefixes": [{"service": "s3", "operation": "put_object", "kwargs": r}
                             for r in api_calls.artifact_prefix_requests(plan)]}

    def run(self, plan: dict[str, Any], context: Any) -> Any:
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook
        from airflow.sdk.exceptions import AirflowFailException
        from botocore.exceptions import ClientError

        bucket = plan["storage"]["artifact_bucket"]
        s3 = S3Hook(aws_conn_id=plan["aws"]["conn_id"], region_name=plan["aws"]["region"]).get_conn()
        action = "adopted"
        try:
            s3.head_bucket(Bucket=bucket)
        except ClientError as exc:
            code = exc.response["Error"]["Code"]
            if code in ("403", "AccessDenied", "Forbidden"):
                raise AirflowFailException(f"S3 bucket {bucket} exists but this connection may not use it "
                                           "(another account's, or no access): name another artifact_bucket") from None
            if code not in ("404", "NoSuchBucket", "NotFound"):
                raise
            self.log.info("creating S3 bucket %s in %s", bucket, plan["aws"]["region"])
            try:
                s3.create_bucket(**api_calls.create_bucket_request(plan))
                action = "created"
            except s3.exceptions.BucketAlreadyOwnedByYou:
                pass
            s3.put_bucket_tagging(**api_calls.bucket_tagging_request(plan))
        created_prefixes = []
        for request in api_calls.artifact_prefix_requests(plan):
            try:
                s3.head_object(**request)
            except ClientError as exc:
                if exc.response["Error"]["Code"] not in ("404", "NoSuchKey", "NotFound"):
                    raise
                s3.put_object(**request, Body=b"")
                created_prefixes.append(request["Key"])
        self.log.info("S3 bucket %s %s; prefixes %s (new: %s)", bucket, action, list(api_calls.ARTIFACT_PREFIXES),
                      created_prefixes or "none")
        return {"bucket": bucket, "action": action, "prefixes": list(api_calls.ARTIFACT_PREFIXES),
                "created_prefixes": created_prefixes}


class EnsureFsxOperator(_AwsStepOperator):
    """FSx for Lustre linked to S3, for profiles that stage weights; others skip it.

    One file system per cluster (found by its Name, managed-by and cluster tags), one data
    repository association from its /models to the bucket's models/ prefix. Hands the
    Kubernetes step the file system id, DNS name and mount name."""

    WAIT = (30, 80)  # PERSISTENT_2 at 2.4 TiB: 10-20 minutes

    def describe(self, plan: dict[str, Any]) -> Any:
        if plan["storage"]["fsx"] is None:
            return {"skip": f"the {plan['profile']['weights']} weight path needs no FSx"}
        name = plan["storage"]["fsx"]["name"]
        return {
            "find": {"service": "fsx", "operation": "describe_file_systems", "filter_by_tag": {"Name": name}},
            "if_missing": {"service": "fsx", "operation": "create_file_system",
                           "kwargs": api_calls.create_file_system_request(plan)},
            "wait_for": "file system AVAILABLE",
            "link": {"service": "fsx", "operation": "create_data_repository_association",
                     "kwargs": api_calls.create_data_repository_association_request(plan, "<file system id>")},
            "hands_on": ["file_system_id", "dns_name", "mount_name"],
            "deferrable": self.deferrable,
        }

    def run(self, plan: dict[str, Any], context: Any) -> Any:
        from airflow.sdk.exceptions import AirflowFailException

        from llm_on_eks.aws import fsx as fsx_rules
        from llm_on_eks.aws.fsx import FsxHook
        from llm_on_eks.triggers.fsx import FsxAssociationAvailableTrigger, FsxFileSystemAvailableTrigger

        spec, cluster = plan["storage"]["fsx"], plan["cluster"]["name"]
        if spec is None:
            # Not a skip: a skipped task would skip the weight preparation downstream with it.
            self.log.info("the %s weight path needs no FSx", plan["profile"]["weights"])
            return {"fsx": None, "action": f"none needed for the {plan['profile']['weights']} weight path"}
        hook = FsxHook(**self.aws(plan))
        found = hook.find_file_systems(spec["name"], cluster)
        if len(found) > 1:
            raise AirflowFailException(f"{len(found)} FSx file systems are tagged {spec['name']} for {cluster}: "
                                       f"{[fs['FileSystemId'] for fs in found]}; delete the extra ones")
        created_now = False
        if found:
            fs = found[0]
            problems = _fsx_problems(fs, spec)
            if problems:
                raise AirflowFailException(f"FSx file system {fs['FileSystemId']} ({spec['name']}) cannot be adopted: "
                                           + "; ".join(problems))
        else:
            fs = self._create_file_system(plan, hook, context)
            created_now = True
        fs_id = fs["FileSystemId"]
        created = created_now or bool(self._resume.get("created"))
        user_tag = fsx_rules.used_by_key(plan["deployment"])
        if user_tag not in fsx_rules.tags_of(fs):
            hook.tag(fs["ResourceARN"], {user_tag: "true"})
        if self.must_wait(fs.get("Lifecycle") not in fsx_rules.USABLE, created_now, "file system AVAILABLE"):
            self.wait(plan, trigger=FsxFileSystemAvailableTrigger, ids={"file_system_id": fs_id},
                      waiter=hook.get_waiter("file_system_available"), args={"FileSystemIds": [fs_id]},
                      what="file system AVAILABLE", status_args=["FileSystems[0].Lifecycle"],
                      resume={"created": created})
            fs = hook.file_system(fs_id)
        association, linked_now = self._ensure_association(plan, hook, fs_id, context)
        if self.must_wait(association["Lifecycle"] not in fsx_rules.USABLE, linked_now, "association AVAILABLE"):
            self.wait(plan, trigger=FsxAssociationAvailableTrigger, ids={"association_id": association["AssociationId"]},
                      waiter=hook.get_waiter("association_available"),
                      args={"AssociationIds": [association["AssociationId"]]}, what="association AVAILABLE",
                      status_args=["Associations[0].Lifecycle"], resume={"created": created})
        mount_name = (fs.get("LustreConfiguration") or {}).get("MountName")
        if not mount_name:
            raise AirflowFailException(f"FSx file system {fs_id} reports no LustreConfiguration.MountName")
        action = "created" if created else "adopted"
        self.log.info("FSx file system %s %s (%s), linked %s -> %s", fs_id, action, fs.get("Lifecycle"),
                      spec["file_system_path"], spec["data_repository_path"])
        return {"file_system_id": fs_id, "dns_name": fs["DNSName"], "mount_name": mount_name,
                "association_id": association["AssociationId"], "action": action,
                "users": sorted({*fsx_rules.users_of(fs), plan["deployment"]})}

    def _create_file_system(self, plan: dict[str, Any], hook: Any, context: Any) -> dict[str, Any]:
        from airflow.providers.amazon.aws.hooks.eks import EksHook
        from airflow.sdk.exceptions import AirflowFailException

        from llm_on_eks.aws import eks as rules

        subnet, groups = plan["storage"]["fsx"]["subnet_id"], None
        cluster = rules.describe_cluster(EksHook(**self.aws(plan)).conn, plan["cluster"]["name"])
        if cluster is None:
            raise AirflowFailException(f"EKS cluster {plan['cluster']['name']} does not exist: FSx goes into its VPC")
        vpc = cluster.get("resourcesVpcConfig") or {}
        subnet = subnet or (vpc.get("subnetIds") or [None])[0]
        # The cluster security group is on every managed node: Lustre traffic (988, 1018-1023)
        # between nodes and the file system stays inside it.
        if vpc.get("clusterSecurityGroupId"):
            groups = [vpc["clusterSecurityGroupId"]]
        request = api_calls.create_file_system_request(plan, subnet_id=subnet, security_group_ids=groups,
                                                       token=_token(context, "fsx"))
        self.log.info("creating FSx for Lustre %s (%s, %s GiB) in %s", plan["storage"]["fsx"]["name"],
                      request["LustreConfiguration"]["DeploymentType"], request["StorageCapacity"], subnet)
        return hook.create_file_system(request)

    def _ensure_association(self, plan: dict[str, Any], hook: Any, fs_id: str, context: Any) -> tuple[dict, bool]:
        from airflow.sdk.exceptions import AirflowFailException

        spec = plan["storage"]["fsx"]
        for association in hook.associations(fs_id):
            if association["FileSystemPath"].rstrip("/") != spec["file_system_path"].rstrip("/"):
                continue
            if association["DataRepositoryPath"].rstrip("/") != spec["data_repository_path"].rstrip("/"):
                raise AirflowFailException(
                    f"FSx {fs_id}: {spec['file_system_path']} is linked to {association['DataRepositoryPath']}, "
                    f"the plan needs {spec['data_repository_path']}")
            if association["Lifecycle"] in ("FAILED", "MISCONFIGURED", "DELETING"):
                raise AirflowFailException(f"FSx {fs_id}: data repository association {association['AssociationId']} "
                                           f"is {association['Lifecycle']} {association.get('FailureDetails', '')}")
            return association, False
        self.log.info("linking FSx %s:%s to %s", fs_id, spec["file_system_path"], spec["data_repository_path"])
        request = api_calls.create_data_repository_association_request(plan, fs_id, token=_token(context, "dra"))
        return hook.create_association(request), True

    def wait_failed(self, plan: dict[str, Any], why: str, **resume: Any) -> None:
        from airflow.sdk.exceptions import AirflowFailException

        from llm_on_eks.aws.fsx import FsxHook

        if resume.get("created") and "file system" in why:
            hook = FsxHook(**self.aws(plan))
            for fs in hook.find_file_systems(plan["storage"]["fsx"]["name"], plan["cluster"]["name"]):
                self.log.error("FSx %s did not become AVAILABLE: deleting it (%s)", fs["FileSystemId"], why)
                _best_effort_delete(self.log, lambda fs=fs: hook.delete_file_system(fs["FileSystemId"]))
            why += " (the file system this run created was deleted)"
        raise AirflowFailException(why)


def _fsx_problems(fs: dict[str, Any], spec: dict[str, Any]) -> list[str]:
    lustre, problems = fs.get("LustreConfiguration") or {}, []
    if lustre.get("DeploymentType") != spec["deployment_type"]:
        problems.append(f"deployment type {lustre.get('DeploymentType')}, the plan needs {spec['deployment_type']}")
    if fs.get("StorageCapacity", 0) < spec["storage_capacity_gib"]:
        problems.append(f"{fs.get('StorageCapacity')} GiB, the plan needs {spec['storage_capacity_gib']}")
    if fs.get("Lifecycle") in ("FAILED", "MISCONFIGURED", "MISCONFIGURED_UNAVAILABLE", "DELETING"):
        problems.append(f"lifecycle {fs['Lifecycle']} {fs.get('FailureDetails', '')}".strip())
    return problems


def _token(context: Any, what: str) -> str:
    """A client request token per try: a resent request is idempotent, a later run is not tied
    to a deleted resource's token."""
    import hashlib

    ti = context["ti"]
    seed = f"{ti.dag_id}/{ti.run_id}/{ti.task_id}/{ti.try_number}/{what}"
    return f"llm-on-eks-{hashlib.sha256(seed.encode()).hexdigest()[:24]}"


def _eks(plan: dict[str, Any]) -> Any:
    from airflow.providers.amazon.aws.hooks.eks import EksHook

    return EksHook(aws_conn_id=plan["aws"]["conn_id"], region_name=plan["aws"]["region"]).conn


def _best_effort_delete(log: Any, delete: Callable[[], Any]) -> None:
    """Clean up after a failed create, retrying ResourceInUseException with the provider's backoff;
    a cleanup that fails is logged, never hides the original failure."""
    import tenacity
    from airflow.providers.amazon.aws.utils import build_resource_in_use_retry_args
    from botocore.exceptions import ClientError

    try:
        for attempt in tenacity.Retrying(**build_resource_in_use_retry_args(log)):
            with attempt:
                delete()
    except ClientError:
        log.exception("cleanup failed; delete it by hand")


def _check(name: str, probe) -> dict[str, str]:
    """Run one probe; an API that refuses to answer makes the check unknown, not passed."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        passed, detail = probe()
    except (ClientError, BotoCoreError, NotImplementedError) as exc:
        return {"check": name, "status": "unknown", "detail": f"AWS did not answer: {exc}"}
    return {"check": name, "status": "pass" if passed else "fail", "detail": detail}


def _offered(ec2, plan: dict[str, Any], system: bool = False) -> tuple[bool, str]:
    plan = api_calls.system_plan(plan) if system else plan
    request = api_calls.preflight_requests(plan)[0]["kwargs"]
    offerings = ec2.describe_instance_type_offerings(**request)["InstanceTypeOfferings"]
    instance, region = plan["nodegroup"]["instance_type"], plan["aws"]["region"]
    return bool(offerings), f"{instance} is {'' if offerings else 'not '}offered in {region}"


def _version_supported(eks, plan: dict[str, Any]) -> tuple[bool, str]:
    version = plan["cluster"]["version"]
    found = eks.describe_cluster_versions(clusterVersions=[version])["clusterVersions"]
    return bool(found), f"EKS {'supports' if found else 'does not support'} Kubernetes {version}"


def _quota(quotas, plan: dict[str, Any]) -> tuple[bool, str]:
    import re

    from llm_on_eks.catalog import default_catalog

    instance = default_catalog().instance_type(plan["nodegroup"]["instance_type"])
    family = re.match(r"[a-z]+", instance.name).group()
    name = QUOTA_NAMES.get(family) or QUOTA_NAMES.get(family[0])
    if name is None:
        raise NotImplementedError(f"no quota known for the {family} family")
    pages = quotas.get_paginator("list_service_quotas").paginate(ServiceCode="ec2")
    quota = next((q for page in pages for q in page["Quotas"] if q["QuotaName"] == name), None)
    if quota is None:
        raise NotImplementedError(f"quota {name!r} not listed")
    needed = (instance.vcpus or 0) * plan["profile"]["nodes"]
    return quota["Value"] >= needed, f"{name}: {quota['Value']:.0f} vCPUs, {needed} needed"


def _token_origin(plan: dict[str, Any]) -> str:
    source = plan["hf_token"]
    return (f"Secrets Manager secret {source['secrets_manager_id']}" if source["secrets_manager_id"]
            else f"Airflow connection {source['conn_id']} (password)")


def _hf_token_source(plan: dict[str, Any]) -> tuple[bool, str]:
    """The token can be read before anything is paid for (Llama 4 is gated: no token, no
    weights). Only where it was found is reported, never the value."""
    from airflow.sdk.exceptions import AirflowNotFoundException
    from botocore.exceptions import ClientError

    from llm_on_eks.aws.hf_token import read_hf_token

    try:
        read_hf_token(plan)
    except (ValueError, AirflowNotFoundException) as exc:
        return False, f"no token: {exc}"
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "ResourceNotFoundException":
            raise
        return False, f"no token: {_token_origin(plan)} does not exist"
    return True, f"token found in {_token_origin(plan)}"

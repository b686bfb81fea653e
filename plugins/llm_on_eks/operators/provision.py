"""The ``provision`` task group: preflight, the EKS cluster, its node groups and add-ons.

Every ensure-step finds its resource by name and tags, adopts it when it fits the plan, refuses
it with the reason when it does not, and creates it otherwise: a retry after any partial failure
or a second run ends with the same resources. Whether this run created a resource is read from
its ``created-by-run`` tag on every try, never remembered. The waits are the Amazon provider's
(its EKS triggers and botocore waiters), in the worker or deferred.
"""

from __future__ import annotations

from typing import Any

from llm_on_eks.aws import api_calls
from llm_on_eks.aws.hf_token import token_origin
from llm_on_eks.naming import is_managed
from llm_on_eks.operators.aws_wait import AwsWaitOperator, clean_up, creating_run_tags
from llm_on_eks.operators.base import PlanStepOperator
from llm_on_eks.plan import Plan

# What the cluster needs for accelerator pods beyond what EKS installs: the FSx CSI driver where
# weights are staged on FSx (ai-on-eks blueprint add-ons; AWS docs "Amazon FSx for Lustre CSI driver").
ADDONS = {
    "gpu": ["vpc-cni", "coredns", "kube-proxy", "aws-fsx-csi-driver"],
    "neuron": ["vpc-cni", "coredns", "kube-proxy"],
}
# Checks whose "unknown" stops the run unless the operator says to proceed: without the token no
# pod ever gets weights, and without quota the node group never gets nodes; either way the money
# goes on a cluster, file system and node group that cannot serve.
MUST_KNOW = ("on-demand vCPU quota", "HF token source")


def _eks(plan: Plan) -> Any:
    from airflow.providers.amazon.aws.hooks.eks import EksHook

    return EksHook(**AwsWaitOperator.aws(plan)).conn


def _created_here(resource: dict[str, Any] | None, context: Any) -> bool:
    from llm_on_eks.naming import created_by_run

    return bool(resource) and created_by_run(resource.get("tags"), context["run_id"])


class PreflightOperator(PlanStepOperator):
    """Before anything is created: the instance type is offered, the version supported, the quota
    enough, the HF token readable. A check AWS does not answer is unknown, never passed."""

    def describe(self, plan: Plan) -> Any:
        return {"checks": [*api_calls.preflight_requests(plan), {"hf_token_from": token_origin(plan)}]}

    def run(self, plan: Plan, context: Any) -> Any:
        from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook
        from airflow.sdk.exceptions import AirflowFailException

        def client(name: str):
            return AwsBaseHook(aws_conn_id=plan["aws"]["conn_id"], client_type=name,
                               region_name=plan["aws"]["region"]).get_conn()

        offered = [("instance type offered", plan["nodegroup"]["instance_type"])]
        if plan["cluster"]["create"]:
            offered.append(("system instance type offered", plan["system_nodegroup"]["instance_type"]))
        checks = [_check(name, lambda instance=instance: _offered(client("ec2"), plan, instance))
                  for name, instance in offered]
        checks += [_check("cluster version supported", lambda: _version_supported(client("eks"), plan)),
                   _check("on-demand vCPU quota", lambda: _quota(client("service-quotas"), plan)),
                   _check("HF token source", lambda: _hf_token_source(plan))]
        for check in checks:
            self.log.info("preflight %s: %s (%s)", check["check"], check["status"], check["detail"])
        failed = [c for c in checks if c["status"] == "fail"]
        if failed:
            raise AirflowFailException("preflight failed, nothing was created: "
                                       + "; ".join(f"{c['check']}: {c['detail']}" for c in failed))
        untold = [c for c in checks if c["status"] == "unknown" and c["check"] in MUST_KNOW]
        if untold and not plan["preflight"]["proceed_on_unknown"]:
            raise AirflowFailException(
                "preflight could not tell, nothing was created: "
                + "; ".join(f"{c['check']}: {c['detail']}" for c in untold)
                + ". Grant the missing permission, or trigger with preflight_proceed_on_unknown=true to go ahead")
        for check in untold:
            self.log.warning("preflight %s unknown: proceeding as preflight_proceed_on_unknown asks", check["check"])
        return {"checks": checks}


class EnsureClusterOperator(AwsWaitOperator):
    """Adopt the named EKS cluster, or create it when the plan allows.

    Adopting needs only eks:DescribeCluster: a cluster named in the params is reused without any
    create permission. The provider's EksCreateClusterOperator always calls CreateCluster, so
    this step calls it itself and waits with the provider's waiter / EksCreateClusterTrigger."""

    WAIT = (30, 60)  # an EKS control plane takes 10-15 minutes

    def describe(self, plan: Plan) -> Any:
        find = {"service": "eks", "operation": "describe_cluster", "kwargs": {"name": plan["cluster"]["name"]}}
        if not plan["cluster"]["create"]:
            return {"find": find, "if_missing": "fail: create_cluster is off"}
        return {"find": find, "if_missing": {"service": "eks", "operation": "create_cluster",
                                             "kwargs": api_calls.create_cluster_request(plan)},
                "wait_for": "cluster ACTIVE", "deferrable": self.deferrable}

    def run(self, plan: Plan, context: Any) -> Any:
        from airflow.providers.amazon.aws.triggers.eks import EksCreateClusterTrigger
        from airflow.sdk.exceptions import AirflowFailException

        from llm_on_eks.aws import eks as rules

        name, region = plan["cluster"]["name"], plan["aws"]["region"]
        eks = _eks(plan)
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
                eks.create_cluster(**api_calls.create_cluster_request(plan, creating_run_tags(context)))
                created_now = True
            except eks.exceptions.ResourceInUseException:
                self.log.info("EKS cluster %s appeared meanwhile: adopting it", name)
            cluster = rules.describe_cluster(eks, name)
        problems = rules.cluster_problems(cluster)
        if problems:
            raise AirflowFailException(f"EKS cluster {name} cannot carry the deployment: {'; '.join(problems)}")
        if cluster["status"] in rules.CLUSTER_PENDING or created_now:
            # EKS answers CREATING for minutes after a create (moto: ACTIVE at once).
            self.wait(plan, context, trigger=EksCreateClusterTrigger, ids={"cluster_name": name},
                      waiter=eks.get_waiter("cluster_active"), args={"name": name}, what="cluster ACTIVE",
                      status_args=["cluster.status"])
            cluster = rules.describe_cluster(eks, name)
        if cluster["version"] != plan["cluster"]["version"]:
            self.log.warning("EKS cluster %s runs Kubernetes %s, the plan names %s: using it as it is", name,
                             cluster["version"], plan["cluster"]["version"])
        managed = is_managed(cluster.get("tags"))
        action = "created" if _created_here(cluster, context) else "adopted"
        self.log.info("EKS cluster %s %s (%s, Kubernetes %s, %s)", name, action, cluster["status"],
                      cluster["version"], "made by llm-on-eks" if managed else "not made by llm-on-eks")
        vpc = cluster.get("resourcesVpcConfig") or {}
        return {"name": name, "action": action, "managed": managed, "status": cluster["status"],
                "version": cluster["version"], "subnet_ids": vpc.get("subnetIds", []),
                "cluster_security_group_id": vpc.get("clusterSecurityGroupId")}

    def wait_failed(self, plan: Plan, context: Any, why: str, event: dict[str, Any] | None = None) -> None:
        from airflow.sdk.exceptions import AirflowFailException

        from llm_on_eks.aws import eks as rules

        name = plan["cluster"]["name"]
        if _created_here(rules.describe_cluster(_eks(plan), name), context):
            self.log.error("EKS cluster %s did not become ACTIVE: deleting it (%s)", name, why)
            clean_up(self.log, lambda: _eks(plan).delete_cluster(name=name))
            why += " (the cluster this run created was deleted)"
        raise AirflowFailException(why)


NO_SYSTEM_NODES = (
    "EKS cluster {cluster} has no managed node group without NoSchedule/NoExecute taints: coredns "
    "cannot schedule (pod DNS fails) and the FSx weight-staging Job (no tolerations, 4 CPU / 16 GiB) "
    "cannot run. Add an untainted node group (e.g. 2 x m6i.xlarge, AL2023_x86_64_STANDARD), unless "
    "self-managed, Karpenter or Fargate capacity (not visible to this check) takes those pods")


class EnsureNodegroupOperator(AwsWaitOperator):
    """Adopt the node group ``nodegroup`` describes, or create it; a new size is applied where the
    spec enforces one. Waits with the provider's nodegroup_active waiter / EksCreateNodegroupTrigger.

    The accelerator group (one per deployment, tainted) and the cluster's untainted system group
    (coredns and the FSx staging Job have nowhere else to run) differ only in their spec. A spec
    with ``only_on_own_cluster`` is created only on a cluster this project created: elsewhere the
    step reports the untainted node groups it finds and warns when there are none."""

    template_fields = (*AwsWaitOperator.template_fields, "nodegroup")
    WAIT = (30, 120)  # up to an hour: p5/trn2 capacity can be slow to arrive

    def __init__(self, *, nodegroup: Any, **kwargs) -> None:
        super().__init__(**kwargs)
        self.nodegroup = nodegroup

    def _creates(self, plan: Plan) -> bool:
        return not self.nodegroup["only_on_own_cluster"] or plan["cluster"]["create"]

    def describe(self, plan: Plan) -> Any:
        spec, cluster = self.nodegroup, plan["cluster"]["name"]
        if not self._creates(plan):
            return {"check": [{"service": "eks", "operation": "list_nodegroups", "kwargs": {"clusterName": cluster}},
                              {"service": "eks", "operation": "describe_nodegroup", "for_each": "node group"}],
                    "warn_if": "no node group without NoSchedule/NoExecute taints (coredns, weight staging)",
                    "creates": "nothing: the cluster is not created by this run"}
        described = {
            "find": {"service": "eks", "operation": "describe_nodegroup",
                     "kwargs": {"clusterName": cluster, "nodegroupName": spec["name"]}},
            "if_missing": {"service": "eks", "operation": "create_nodegroup",
                           "kwargs": api_calls.create_nodegroup_request(cluster, spec)},
            "wait_for": "node group ACTIVE", "deferrable": self.deferrable,
        }
        if spec["only_on_own_cluster"]:
            described.update(shared_by=f"every deployment on {cluster}",
                             estimate=f"{spec['scaling']['desired_size']} x {spec['instance_type']} "
                                      f"~${spec['hourly_usd']:.2f}/hour on demand (us-east-1 list price), "
                                      "on top of the plan's accelerator cost")
        return described

    def run(self, plan: Plan, context: Any) -> Any:
        from airflow.providers.amazon.aws.triggers.eks import EksCreateNodegroupTrigger
        from airflow.sdk.exceptions import AirflowFailException

        from llm_on_eks.aws import eks as rules
        from llm_on_eks.naming import DEPLOYMENT_KEY, NAMESPACE_KEY

        spec = self.nodegroup
        cluster_name, name = plan["cluster"]["name"], spec["name"]
        eks = _eks(plan)
        cluster = rules.describe_cluster(eks, cluster_name)
        if cluster is None:
            raise AirflowFailException(f"EKS cluster {cluster_name} does not exist (provision.ensure_cluster makes it)")
        if not (self._creates(plan) and is_managed(cluster.get("tags"))) and spec["only_on_own_cluster"]:
            return self._check_untainted(eks, plan)
        # A deployment is its namespace and name: the same name in another namespace is another one.
        owner = {k: spec["tags"][k] for k in (NAMESPACE_KEY, DEPLOYMENT_KEY) if k in spec["tags"]}
        others = [n for n in rules.list_nodegroups(eks, cluster_name) if n != name
                  and _owned_by(((rules.describe_nodegroup(eks, cluster_name, n) or {}).get("tags") or {}), owner)
                  ] if DEPLOYMENT_KEY in owner else []
        if others:
            raise AirflowFailException(f"deployment {'/'.join(owner.values())} already has node group(s) {others} "
                                       f"in {cluster_name}; one deployment has one node group: delete them first")
        created_now = updated = False
        group = rules.describe_nodegroup(eks, cluster_name, name)
        if group is None:
            subnets = spec["subnet_ids"] or (cluster.get("resourcesVpcConfig") or {}).get("subnetIds")
            if not spec["node_role_arn"]:
                raise AirflowFailException(f"node group {name} does not exist and creating it needs node_role_arn")
            self.log.info("creating node group %s: %s x %s (%s)", name, spec["scaling"]["desired_size"],
                          spec["instance_type"], spec["ami_type"])
            try:
                eks.create_nodegroup(**api_calls.create_nodegroup_request(cluster_name, spec, subnets,
                                                                          creating_run_tags(context)))
                created_now = True
            except eks.exceptions.ResourceInUseException:
                self.log.info("node group %s appeared meanwhile: adopting it", name)
            group = rules.describe_nodegroup(eks, cluster_name, name)
        problems = rules.nodegroup_problems(group, spec)
        if problems:
            raise AirflowFailException(f"node group {name} in {cluster_name} exists but cannot be adopted: "
                                       + "; ".join(problems))
        if spec["enforce_size"] and group["status"] in rules.NODEGROUP_USABLE and rules.scaling_differs(group, spec):
            scaling = api_calls.scaling_config(spec)
            self.log.info("node group %s: scaling %s -> %s", name, group.get("scalingConfig"), scaling)
            eks.update_nodegroup_config(clusterName=cluster_name, nodegroupName=name, scalingConfig=scaling)
            updated = True
        if group["status"] in rules.NODEGROUP_PENDING or created_now or updated:
            self.wait(plan, context, trigger=EksCreateNodegroupTrigger,
                      ids={"cluster_name": cluster_name, "nodegroup_name": name},
                      waiter=eks.get_waiter("nodegroup_active"), args={"clusterName": cluster_name, "nodegroupName": name},
                      what="node group ACTIVE", status_args=["nodegroup.status"])
            group = rules.describe_nodegroup(eks, cluster_name, name)
        action = "created" if _created_here(group, context) else ("resized" if updated else "adopted")
        self.log.info("node group %s %s (%s)", name, action, group["status"])
        return {"cluster": cluster_name, "nodegroup": name, "action": action, "status": group["status"],
                "instance_type": spec["instance_type"], "scaling": group.get("scalingConfig"),
                "labels": group.get("labels"), "taints": group.get("taints")}

    def _check_untainted(self, eks: Any, plan: Plan) -> dict[str, Any]:
        from llm_on_eks.aws import eks as rules

        cluster_name = plan["cluster"]["name"]
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

    def wait_failed(self, plan: Plan, context: Any, why: str, event: dict[str, Any] | None = None) -> None:
        from airflow.sdk.exceptions import AirflowFailException

        from llm_on_eks.aws import eks as rules

        cluster, name = plan["cluster"]["name"], self.nodegroup["name"]
        if _created_here(rules.describe_nodegroup(_eks(plan), cluster, name), context):
            # As the provider's EksCreateNodegroupOperator does: a node group that never became
            # ACTIVE would bill (and block the name) with nobody using it.
            self.log.error("node group %s did not become ACTIVE: deleting it (%s)", name, why)
            clean_up(self.log, lambda: _eks(plan).delete_nodegroup(clusterName=cluster, nodegroupName=name))
            why += " (the node group this run created was deleted)"
        raise AirflowFailException(why)


class EnsureAddonsOperator(AwsWaitOperator):
    """The EKS add-ons accelerator serving needs (CSI driver for FSx on GPU profiles).

    The provider has no add-on operator or trigger: EksAddonActiveTrigger fills that gap."""

    WAIT = (10, 90)

    def describe(self, plan: Plan) -> Any:
        return {"ensure": [{"service": "eks", "operation": "create_addon",
                            "kwargs": api_calls.create_addon_request(plan, name)}
                           for name in ADDONS[plan["profile"]["accelerator"]]],
                "wait_for": "add-ons ACTIVE", "deferrable": self.deferrable}

    def run(self, plan: Plan, context: Any) -> Any:
        from airflow.sdk.exceptions import AirflowFailException

        from llm_on_eks.aws import eks as rules
        from llm_on_eks.triggers.eks import EksAddonActiveTrigger

        cluster_name = plan["cluster"]["name"]
        eks = _eks(plan)
        actions: dict[str, str] = {}
        for name in ADDONS[plan["profile"]["accelerator"]]:
            addon = rules.describe_addon(eks, cluster_name, name)
            created_now = False
            if addon is None:
                self.log.info("creating EKS add-on %s on %s", name, cluster_name)
                try:
                    eks.create_addon(**api_calls.create_addon_request(plan, name, creating_run_tags(context)))
                    created_now = True
                except eks.exceptions.ResourceInUseException:
                    self.log.info("add-on %s appeared meanwhile: adopting it", name)
                addon = rules.describe_addon(eks, cluster_name, name)
            problems = rules.addon_problems(addon)
            if problems:
                raise AirflowFailException(f"EKS cluster {cluster_name}: {'; '.join(problems)}")
            if addon["status"] in rules.ADDON_PENDING or created_now:
                # Deferred, the task resumes by running this loop again: the add-ons before this
                # one are found ACTIVE, this one too, and the loop goes on with the next.
                self.wait(plan, context, trigger=EksAddonActiveTrigger,
                          ids={"cluster_name": cluster_name, "addon_name": name},
                          waiter=eks.get_waiter("addon_active"), args={"clusterName": cluster_name, "addonName": name},
                          what=f"add-on {name} ACTIVE", status_args=["addon.status"])
                addon = rules.describe_addon(eks, cluster_name, name)
            actions[name] = "created" if _created_here(addon, context) else "adopted"
            self.log.info("EKS add-on %s %s", name, actions[name])
        return {"cluster": cluster_name, "addons": actions}


def _owned_by(tags: dict[str, str], owner: dict[str, str]) -> bool:
    return all(tags.get(k) == v for k, v in owner.items())


def _check(name: str, probe) -> dict[str, str]:
    """Run one probe; an API that refuses to answer makes the check unknown, not passed."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        passed, detail = probe()
    except (ClientError, BotoCoreError, NotImplementedError) as exc:
        return {"check": name, "status": "unknown", "detail": f"AWS did not answer: {exc}"}
    return {"check": name, "status": "pass" if passed else "fail", "detail": detail}


def _offered(ec2, plan: Plan, instance: str) -> tuple[bool, str]:
    offerings = ec2.describe_instance_type_offerings(
        **api_calls.instance_offering_request(instance))["InstanceTypeOfferings"]
    return bool(offerings), f"{instance} is {'' if offerings else 'not '}offered in {plan['aws']['region']}"


def _version_supported(eks, plan: Plan) -> tuple[bool, str]:
    version = plan["cluster"]["version"]
    found = eks.describe_cluster_versions(clusterVersions=[version])["clusterVersions"]
    return bool(found), f"EKS {'supports' if found else 'does not support'} Kubernetes {version}"


def _quota(quotas, plan: Plan) -> tuple[bool, str]:
    """The family's on-demand vCPU quota against the plan's nodes. The applied value when the
    account has one, else AWS's default (GetServiceQuota answers NoSuchResourceException for a
    quota never adjusted). Instances already running are not subtracted."""
    from llm_on_eks.catalog import default_catalog

    instance = default_catalog().instance_type(plan["nodegroup"]["instance_type"])
    request = api_calls.vcpu_quota_request(instance.name)
    if request is None:
        raise NotImplementedError(f"no vCPU quota known for {instance.name}")
    try:
        quota = quotas.get_service_quota(**request)["Quota"]
    except quotas.exceptions.NoSuchResourceException:
        quota = quotas.get_aws_default_service_quota(**request)["Quota"]
    needed = (instance.vcpus or 0) * plan["profile"]["nodes"]
    return quota["Value"] >= needed, f"{quota.get('QuotaName', request['QuotaCode'])}: {quota['Value']:.0f} vCPUs, {needed} needed"


def _hf_token_source(plan: Plan) -> tuple[bool, str]:
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
        # Not "unknown": AccessDenied (or a missing key, a failed decryption) means the serving
        # pods would never get the token, so nothing may be created for them.
        code = exc.response["Error"]["Code"]
        if code == "ResourceNotFoundException":
            return False, f"no token: {token_origin(plan)} does not exist"
        return False, f"no token: reading {token_origin(plan)} failed with {code}"
    return True, f"token found in {token_origin(plan)}"

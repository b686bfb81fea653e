"""The ``provision`` task group: preflight, the EKS cluster, its node groups and add-ons.

Every ensure-step (``operators.ensure``) finds its resource by name and tags, adopts it when it
fits the plan, refuses it with the reason when it does not, and creates it otherwise: a retry
after any partial failure or a second run ends with the same resources. The waits are the Amazon
provider's (its EKS triggers and botocore waiters), in the worker or deferred.
"""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import Context
from airflow.sdk.exceptions import AirflowFailException

from llm_on_eks.aws import api_calls, capacity, network, roles
from llm_on_eks.aws import eks as rules
from llm_on_eks.aws import preflight as probes
from llm_on_eks.aws.hf_token import token_origin
from llm_on_eks.naming import DEPLOYMENT_KEY, NAMESPACE_KEY, cluster_tags, is_managed, role_name
from llm_on_eks.operators.aws_wait import EKS_HOOK, EKS_NODEGROUP_HOOK, AwsStepOperator, creating_run_tags
from llm_on_eks.operators.ensure import EnsureOperator, ready_after_s
from llm_on_eks.plan.types import (
    ClusterSection,
    HfTokenSection,
    NodegroupSpec,
    NodePoolSpec,
    PreflightSection,
    StorageRef,
)

if TYPE_CHECKING:  # the hook's type, named as a string below: the provider is imported at run time only
    from airflow.providers.amazon.aws.hooks.eks import EksHook  # noqa: F401


class PreflightOperator(AwsStepOperator["EksHook"]):
    """Before anything is created: the instance types are offered, the version supported, the
    quota enough, the capacity reservation usable, the HF token readable, given subnets and roles
    fit. A check AWS does not answer is unknown, never passed.

    :param cluster: the cluster: its version must be supported; ``create`` adds the system group
    :param nodegroup: the accelerator node group: its instance type must be offered and within
        quota, its capacity reservation (if any) fit it
    :param system_nodegroup: the system node group: its instance type must be offered when created
    :param hf_token: where the HF token is read from: it must be readable before anything is paid for
    :param nodepool: the NodePool named in the params, or made on an EKS Auto Mode cluster
    :param preflight: whether an unknown answer may let the run go on
    """

    template_fields = (*AwsStepOperator.template_fields, "cluster", "nodegroup", "system_nodegroup", "nodepool",
                       "hf_token", "preflight")
    aws_hook_class = EKS_HOOK

    def __init__(self, *, cluster: ClusterSection, nodegroup: NodegroupSpec, system_nodegroup: NodegroupSpec,
                 nodepool: NodePoolSpec, hf_token: HfTokenSection, preflight: PreflightSection, **kwargs) -> None:
        super().__init__(**kwargs)
        self.cluster = cluster
        self.nodegroup = nodegroup
        self.system_nodegroup = system_nodegroup
        self.nodepool = nodepool
        self.hf_token = hf_token
        self.preflight = preflight

    def nodegroups(self) -> list[NodegroupSpec]:
        """The node groups this run may create: the system group only with the cluster."""
        return [self.nodegroup, *([self.system_nodegroup] if self.cluster["create"] else [])]

    def given_roles(self) -> dict[str, str]:
        """The role ARNs given: the cluster's matters only when the cluster may be created."""
        given = {"cluster": self.cluster["role_arn"] if self.cluster["create"] else None,
                 "node": self.nodegroup["node_role_arn"]}
        return {kind: arn for kind, arn in given.items() if arn}

    def describe(self) -> Any:
        checks = api_calls.preflight_requests(self.cluster, self.nodegroups())
        if self.cluster["subnet_ids"]:
            checks.append({"service": "ec2", "operation": "describe_subnets",
                           "kwargs": {"Filters": [{"Name": "subnet-id", "Values": self.cluster["subnet_ids"]}]}})
        checks += [{"service": "iam", "operation": "get_role", "kwargs": {"RoleName": roles.name_of(arn)}}
                   for arn in self.given_roles().values()]
        return {"checks": [*checks, {"hf_token_from": token_origin(self.hf_token)}]}

    def run(self, context: Context) -> Any:
        region = self.aws["region"]
        checks = [probes.check(f"{'system ' if group['role'] == 'system' else ''}instance type offered",
                               lambda instance=group["instance_type"]: probes.offered(self.client("ec2"), region,
                                                                                      instance))
                  for group in self.nodegroups()]
        checks += [
            probes.check("cluster version supported",
                         lambda: probes.version_supported(self.hook.conn, self.cluster["version"])),
            probes.check("on-demand vCPU quota", lambda: probes.quota(self.client("service-quotas"), self.nodegroup)),
            probes.check("HF token source", lambda: probes.hf_token_source(self.aws, self.hf_token)),
            probes.check("accelerator nodes", lambda: probes.nodes_source_fits(self.hook.conn, self.cluster["name"],
                                                                               self.nodepool, self.nodegroup))]
        if self.cluster["subnet_ids"]:
            checks.append(probes.check("subnets", lambda: probes.subnets_fit(self.client("ec2"),
                                                                               self.cluster["subnet_ids"],
                                                                               self.nodegroup)))
        else:
            checks.append(probes.check("cluster subnets", lambda: probes.cluster_subnets_fit(
                self.hook.conn, self.client("ec2"), self.cluster["name"], self.nodegroup)))
        if self.nodegroup["capacity_reservation_id"]:
            checks.append(probes.check("capacity reservation", lambda: probes.reservation_fits(
                self.client("ec2"), self.nodegroup, self.cluster["subnet_ids"])))
        for kind, arn in self.given_roles().items():
            checks.append(probes.check(f"{kind} role", lambda arn=arn, kind=kind: probes.role_fits(self.client("iam"),
                                                                                                   arn, kind)))
        for check in checks:
            self.log.info("preflight %s: %s (%s)", check["check"], check["status"], check["detail"])
        failed = [c for c in checks if c["status"] == "fail"]
        if failed:
            raise AirflowFailException("preflight failed, nothing was created: "
                                       + "; ".join(f"{c['check']}: {c['detail']}" for c in failed))
        untold = [c for c in checks if c["status"] == "unknown" and c["check"] in probes.MUST_KNOW]
        if untold and not self.preflight["proceed_on_unknown"]:
            raise AirflowFailException(
                "preflight could not tell, nothing was created: "
                + "; ".join(f"{c['check']}: {c['detail']}" for c in untold)
                + ". Grant the missing permission, or trigger with preflight_proceed_on_unknown=true to go ahead")
        for check in untold:
            self.log.warning("preflight %s unknown: proceeding as preflight_proceed_on_unknown asks", check["check"])
        # For approve_spend: whether this run would create the cluster.
        return {"checks": checks, "cluster_exists": rules.describe_cluster(self.hook.conn, self.cluster["name"]) is not None}


class _MadeWithClusterOperator(AwsStepOperator["EksHook"]):
    """A step for what a new cluster needs made beside it when the params give none.

    :param cluster: the cluster: what it was given, and whether it may be created
    :param nodegroup: the accelerator node group: its instance type and node role
    :param system_nodegroup: the system node group: its instance type
    """

    template_fields = (*AwsStepOperator.template_fields, "cluster", "nodegroup", "system_nodegroup")
    aws_hook_class = EKS_HOOK

    def __init__(self, *, cluster: ClusterSection, nodegroup: NodegroupSpec, system_nodegroup: NodegroupSpec,
                 **kwargs) -> None:
        super().__init__(**kwargs)
        self.cluster = cluster
        self.nodegroup = nodegroup
        self.system_nodegroup = system_nodegroup

    def tags(self, context: Context) -> dict[str, str]:
        return {**cluster_tags(self.cluster["name"], self.aws["region"]), **creating_run_tags(context)}


class EnsureNetworkOperator(_MadeWithClusterOperator):
    """The cluster's VPC, subnets, gateways and route tables when no subnets are given and the
    cluster is to be created (``llm_on_eks.aws.network``). Given subnets were checked by
    preflight; a cluster that exists keeps its own."""

    def describe(self) -> Any:
        if self.cluster["subnet_ids"]:
            return {"subnets": self.cluster["subnet_ids"], "creates": "nothing: subnets are given"}
        return {"find": {"service": "ec2", "operation": "describe_vpcs",
                         "kwargs": {"Filters": network.tag_filters(self.cluster["name"])}},
                "if_missing": f"VPC {network.VPC_CIDR}: a public and a private subnet in each of "
                              f"{network.MIN_ZONES}-{network.MAX_ZONES} zones offering "
                              f"{self.nodegroup['instance_type']}"
                              + (" (the capacity reservation's zone first)" if self.nodegroup["capacity_reservation_id"]
                                 else "") + ", an internet gateway, one NAT gateway, route tables",
                "only_if": "the cluster is created by this run"}

    def run(self, context: Context) -> Any:
        name = self.cluster["name"]
        if self.cluster["subnet_ids"]:
            return {"action": "given", "subnet_ids": self.cluster["subnet_ids"]}
        cluster = rules.describe_cluster(self.hook.conn, name)
        if cluster is not None:
            return {"action": "the cluster's own",
                    "subnet_ids": (cluster.get("resourcesVpcConfig") or {}).get("subnetIds", [])}
        if not self.cluster["create"]:
            return {"action": "none made: the cluster does not exist and create_cluster is off"}
        ec2 = self.client("ec2")
        vpc = network.find_vpc(ec2, name)
        zones = network.network_of(ec2, vpc["VpcId"])["zones"] if vpc else None
        reservation_id = self.nodegroup["capacity_reservation_id"]
        try:
            if not zones:
                # The accelerator nodes launch only in their reservation's zone.
                required = (capacity.describe_reservation(ec2, reservation_id)["AvailabilityZone"]
                            if reservation_id else None)
                zones = network.choose_zones(ec2, self.nodegroup["instance_type"],
                                             self.system_nodegroup["instance_type"], required)
            made = network.Network(ec2, name, self.tags(context), self.log).ensure(zones)
        except (network.NetworkError, capacity.CapacityError) as exc:
            raise AirflowFailException(f"network of {name}: {exc}") from exc
        return {**made, "action": "created" if made["made"] else "adopted"}


class EnsureRolesOperator(_MadeWithClusterOperator):
    """The cluster's and the nodes' IAM roles when no ARNs are given (``llm_on_eks.aws.roles``);
    given ones were checked by preflight. The nodes' role of ours may use the deployment's
    artifact bucket; a given role is not changed.

    :param storage: the artifact bucket
    """

    template_fields = (*_MadeWithClusterOperator.template_fields, "storage")

    def __init__(self, *, storage: StorageRef, **kwargs) -> None:
        super().__init__(**kwargs)
        self.storage = storage

    def _given(self) -> dict[str, str | None]:
        return {"cluster": self.cluster["role_arn"], "node": self.nodegroup["node_role_arn"]}

    def describe(self) -> Any:
        import boto3

        region = self.aws["region"]
        partition = boto3.session.Session().get_partition_for_region(region)
        return {kind: f"given: {arn}" if arn else {
            "find": {"service": "iam", "operation": "get_role",
                     "kwargs": {"RoleName": role_name(self.cluster["name"], region, kind)}},
            "if_missing": {"service": "iam", "operation": "create_role", "trusts": roles.ROLES[kind]["service"],
                           "attach": list(roles.ROLES[kind]["policies"])},
            **({"grant": {"service": "iam", "operation": "put_role_policy",
                          "policy": roles.artifacts_policy(partition, self.storage["artifact_bucket"])}}
               if kind == "node" else {}),
            "only_if": "the cluster is created by this run or is llm-on-eks's"} for kind, arn in self._given().items()}

    def makes(self) -> str | None:
        """Why no role is made, or None when this run may make the missing ones: the cluster is
        missing and may be created, or is this project's (they go with it)."""
        found = rules.describe_cluster(self.hook.conn, self.cluster["name"])
        if found is not None:
            return None if is_managed(found.get("tags")) else "the cluster exists and is not llm-on-eks's"
        return None if self.cluster["create"] else "the cluster does not exist and create_cluster is off"

    def run(self, context: Context) -> Any:
        import boto3

        name, region = self.cluster["name"], self.aws["region"]
        iam, missing = self.client("iam"), [kind for kind, arn in self._given().items() if not arn]
        why = self.makes() if missing else None
        partition = boto3.session.Session().get_partition_for_region(region)
        made = {}
        for kind in missing:
            role = role_name(name, region, kind)
            if why:
                made[kind] = {"name": role, "arn": roles.find_arn(iam, role), "action": f"none made: {why}"}
                continue
            try:
                made[kind] = roles.ensure_role(iam, role, kind, name, region, self.tags(context), partition, self.log)
            except ValueError as exc:
                raise AirflowFailException(str(exc)) from exc
            if kind == "node":
                roles.grant_artifacts(iam, role, self.storage["artifact_bucket"], partition, self.log)
        return {**{kind: {"arn": arn, "action": "given"} for kind, arn in self._given().items() if arn}, **made}


class _EksEnsureOperator(EnsureOperator["EksHook"]):
    """An ensure step on the EKS cluster ``cluster`` names.

    :param cluster: the EKS cluster the step acts on (its name; the cluster step: how to create it)
    """

    template_fields = (*EnsureOperator.template_fields, "cluster")
    aws_hook_class = EKS_HOOK

    def __init__(self, *, cluster: ClusterSection, **kwargs) -> None:
        super().__init__(**kwargs)
        self.cluster = cluster


class EnsureClusterOperator(_EksEnsureOperator):
    """Adopt the named EKS cluster, or create it when the plan allows.

    Adopting needs only eks:DescribeCluster: a cluster named in the params is reused without any
    create permission. The provider's EksCreateClusterOperator always calls CreateCluster, so
    this step calls it itself and waits with the provider's waiter / EksCreateClusterTrigger.

    :param tags: the owner tags a created cluster carries
    """

    template_fields = (*_EksEnsureOperator.template_fields, "tags")
    WAIT = (30, 60)  # an EKS control plane takes 10-15 minutes
    KIND = "EKS cluster"
    PENDING = rules.CLUSTER_PENDING

    def __init__(self, *, tags: dict[str, str], **kwargs) -> None:
        super().__init__(**kwargs)
        self.tags = tags

    def describe(self) -> Any:
        find = {"service": "eks", "operation": "describe_cluster", "kwargs": {"name": self.cluster["name"]}}
        if not self.cluster["create"]:
            return {"find": find, "if_missing": "fail: create_cluster is off"}
        return {"find": find, "if_missing": {"service": "eks", "operation": "create_cluster",
                                             "kwargs": api_calls.create_cluster_request(self.cluster, self.tags)},
                "wait_for": "cluster ACTIVE", "deferrable": self.deferrable}

    def run(self, context: Context) -> Any:
        return self.ensure(context, self.cluster["name"])

    def find(self, name: str) -> dict[str, Any] | None:
        return rules.describe_cluster(self.hook.conn, name)

    def send_create(self, name: str, context: Context) -> None:
        region = self.aws["region"]
        if not self.cluster["create"]:
            raise AirflowFailException(
                f"EKS cluster {name} does not exist in {region}: create it, or trigger with create_cluster=true")
        role_arn = self.cluster["role_arn"] or roles.find_arn(self.client("iam"), role_name(name, region, "cluster"))
        vpc = network.find_vpc(ec2 := self.client("ec2"), name)
        subnets = self.cluster["subnet_ids"] or (network.cluster_subnet_ids(network.network_of(ec2, vpc["VpcId"]))
                                                 if vpc else [])
        if not (role_arn and subnets):
            raise AirflowFailException(f"EKS cluster {name}: no {'role' if not role_arn else 'subnets'} to create it "
                                       "with (provision.ensure_roles and provision.ensure_network make them)")
        self.log.info("EKS cluster %s not found in %s: creating it (Kubernetes %s)", name, region,
                      self.cluster["version"])
        self.hook.conn.create_cluster(**api_calls.create_cluster_request(
            self.cluster, self.tags, creating_run_tags(context), role_arn=role_arn, subnet_ids=subnets))

    def problems(self, cluster: dict[str, Any]) -> list[str]:
        return rules.cluster_problems(cluster)

    def refusal(self, cluster: dict[str, Any], problems: list[str]) -> str:
        return f"EKS cluster {cluster['name']} cannot carry the deployment: {'; '.join(problems)}"

    def waiting(self, cluster: dict[str, Any]) -> dict[str, Any]:
        from airflow.providers.amazon.aws.triggers.eks import EksCreateClusterTrigger

        name = cluster["name"]
        return {"trigger": EksCreateClusterTrigger, "ids": {"cluster_name": name},
                "waiter": self.hook.conn.get_waiter("cluster_active"), "args": {"name": name},
                "what": "cluster ACTIVE", "status_args": ["cluster.status"]}

    def result(self, cluster: dict[str, Any], action: str) -> Any:
        name, version = cluster["name"], self.cluster["version"]
        if cluster["version"] != version:
            self.log.warning("EKS cluster %s runs Kubernetes %s, the plan names %s: using it as it is", name,
                             cluster["version"], version)
        managed = is_managed(cluster.get("tags"))
        self.log.info("EKS cluster %s %s (%s, Kubernetes %s, %s)", name, action, cluster["status"],
                      cluster["version"], "made by llm-on-eks" if managed else "not made by llm-on-eks")
        vpc = cluster.get("resourcesVpcConfig") or {}
        return {"name": name, "action": action, "managed": managed, "status": cluster["status"],
                "version": cluster["version"], "subnet_ids": vpc.get("subnetIds", []),
                "cluster_security_group_id": vpc.get("clusterSecurityGroupId"),
                "ready_after_s": ready_after_s(cluster, action)}

    def cleanup_name(self) -> str:
        return self.cluster["name"]

    def delete(self, cluster: dict[str, Any]) -> None:
        self.hook.conn.delete_cluster(name=cluster["name"])


NO_SYSTEM_NODES = (
    "EKS cluster {cluster} has no managed node group without NoSchedule/NoExecute taints: coredns "
    "cannot schedule (pod DNS fails) and the FSx weight-staging Job (no tolerations, 4 CPU / 16 GiB) "
    "cannot run. Add an untainted node group (e.g. 2 x m6i.xlarge, AL2023_x86_64_STANDARD), unless "
    "self-managed, Karpenter or Fargate capacity (not visible to this check) takes those pods")


class EnsureNodegroupOperator(_EksEnsureOperator):
    """Adopt the node group ``nodegroup`` describes, or create it; a new size is applied where the
    spec enforces one. Waits with a nodegroup_active waiter / trigger that also ends on a health
    issue while CREATING (no capacity, quota or addresses: ``llm_on_eks.aws.eks_hook``); the
    step then fails with the issue and what to try, and deletes the node group it created.

    The accelerator group (one per deployment, tainted) and the cluster's untainted system group
    (coredns and the FSx staging Job have nowhere else to run) differ only in their spec. A spec
    with ``only_on_own_cluster`` is created only on a cluster this project created: elsewhere the
    step reports the untainted node groups it finds and warns when there are none. A spec with a
    capacity reservation launches from a launch template that targets it (``llm_on_eks.aws.capacity``),
    in its zone only. An EKS Auto Mode cluster gets neither: its NodePools launch nodes
    (``provision.ensure_nodepool``) and it runs coredns itself.

    :param nodegroup: the node group to ensure, as created and as adopted
    """

    template_fields = (*_EksEnsureOperator.template_fields, "nodegroup")
    aws_hook_class = EKS_NODEGROUP_HOOK
    WAIT = (30, 120)  # up to an hour: p5/trn2 capacity can be slow to arrive
    KIND = "node group"
    PENDING = rules.NODEGROUP_PENDING

    def __init__(self, *, nodegroup: NodegroupSpec, **kwargs) -> None:
        super().__init__(**kwargs)
        self.nodegroup = nodegroup

    @cached_property
    def reservation(self) -> dict[str, Any] | None:
        """The spec's capacity reservation as EC2 describes it now (its type decides the capacity
        type and market, its zone the subnets); None without one."""
        reservation_id = self.nodegroup["capacity_reservation_id"]
        try:
            return capacity.describe_reservation(self.client("ec2"), reservation_id) if reservation_id else None
        except capacity.CapacityError as exc:
            raise AirflowFailException(f"node group {self.nodegroup['name']}: {exc}") from exc

    def _creates(self) -> bool:
        return not self.nodegroup["only_on_own_cluster"] or self.cluster["create"]

    def describe(self) -> Any:
        spec, cluster = self.nodegroup, self.cluster["name"]
        if not self._creates():
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
        if spec["capacity_reservation_id"]:
            described["launch_template"] = {
                "find": {"service": "ec2", "operation": "describe_launch_templates",
                         "kwargs": api_calls.launch_template_filter(spec["launch_template"])},
                "if_missing": {"service": "ec2", "operation": "create_launch_template",
                               "kwargs": api_calls.create_launch_template_request(spec)},
                "subnets": f"only those in capacity reservation {spec['capacity_reservation_id']}'s zone"}
        if spec["only_on_own_cluster"]:
            described.update(shared_by=f"every deployment on {cluster}",
                             estimate=f"{spec['scaling']['desired_size']} x {spec['instance_type']} "
                                      f"~${spec['hourly_usd']:.2f}/hour on demand (us-east-1 list price), "
                                      "on top of the plan's accelerator cost")
        return described

    def run(self, context: Context) -> Any:
        cluster_name = self.cluster["name"]
        cluster = rules.describe_cluster(self.hook.conn, cluster_name)
        if cluster is None:
            raise AirflowFailException(f"EKS cluster {cluster_name} does not exist (provision.ensure_cluster makes it)")
        if rules.auto_mode(cluster):
            self.log.info("EKS cluster %s runs EKS Auto Mode: its NodePools launch the nodes", cluster_name)
            return {"cluster": cluster_name, "nodegroup": None,
                    "action": "none: an EKS Auto Mode cluster (NodePools launch its nodes: provision.ensure_nodepool)"}
        if not (self._creates() and is_managed(cluster.get("tags"))) and self.nodegroup["only_on_own_cluster"]:
            return self._check_untainted()
        # A deployment is its namespace and name: the same name in another namespace is another one.
        owner = {k: self.nodegroup["tags"][k] for k in (NAMESPACE_KEY, DEPLOYMENT_KEY) if k in self.nodegroup["tags"]}
        others = [n for n in rules.list_nodegroups(self.hook.conn, cluster_name) if n != self.nodegroup["name"]
                  and _owned_by((self.find(n) or {}).get("tags") or {}, owner)] if DEPLOYMENT_KEY in owner else []
        if others:
            raise AirflowFailException(f"deployment {'/'.join(owner.values())} already has node group(s) {others} "
                                       f"in {cluster_name}; one deployment has one node group: delete them first")
        return self.ensure(context, self.nodegroup["name"])

    def find(self, name: str) -> dict[str, Any] | None:
        return rules.describe_nodegroup(self.hook.conn, self.cluster["name"], name)

    def send_create(self, name: str, context: Context) -> None:
        spec, cluster_name = self.nodegroup, self.cluster["name"]
        node_role = spec["node_role_arn"] or roles.find_arn(self.client("iam"),
                                                            role_name(cluster_name, self.aws["region"], "node"))
        if not node_role:
            raise AirflowFailException(f"node group {name} does not exist and creating it needs node_role_arn (a node "
                                       "role is made only with a cluster this project creates)")
        subnets, ec2, reservation = spec["subnet_ids"], self.client("ec2"), self.reservation
        if not subnets:
            cluster = rules.describe_cluster(self.hook.conn, cluster_name) or {}
            try:
                subnets = network.node_subnets(ec2, cluster_name,
                                               (cluster.get("resourcesVpcConfig") or {}).get("subnetIds") or [],
                                               spec["instance_type"])
            except network.NetworkError as exc:
                raise AirflowFailException(f"node group {name}: {exc}") from exc
        if reservation:
            # A reservation's instances launch only in its zone (EKS user guide, "Create a managed
            # node group with Capacity Blocks for ML": only subnets in that zone).
            zone, candidates = reservation["AvailabilityZone"], subnets
            subnets = network.in_zone(ec2, subnets, zone)
            if not subnets:
                raise AirflowFailException(
                    f"node group {name}: capacity reservation {spec['capacity_reservation_id']} is in {zone}, and "
                    f"none of the subnets {candidates} is: name a subnet in {zone} in subnet_ids")
            try:
                capacity.ensure_launch_template(ec2, api_calls.create_launch_template_request(
                    spec, reservation, creating_run_tags(context)), rules.owner_tags(spec), self.log)
            except capacity.CapacityError as exc:
                raise AirflowFailException(f"node group {name}: {exc}") from exc
        self.log.info("creating node group %s: %s x %s (%s, %s)", name, spec["scaling"]["desired_size"],
                      spec["instance_type"], spec["ami_type"], capacity.summary(reservation) if reservation
                      else "on-demand capacity")
        self.hook.conn.create_nodegroup(**api_calls.create_nodegroup_request(
            cluster_name, spec, subnets, creating_run_tags(context), node_role, reservation))

    def problems(self, group: dict[str, Any]) -> list[str]:
        return rules.nodegroup_problems(group, self.nodegroup, self.reservation)

    def refusal(self, group: dict[str, Any], problems: list[str]) -> str:
        return (f"node group {group['nodegroupName']} in {self.cluster['name']} exists but cannot be adopted: "
                + "; ".join(problems))

    def update(self, group: dict[str, Any]) -> bool:
        spec = self.nodegroup
        if not (spec["enforce_size"] and group["status"] in rules.NODEGROUP_USABLE
                and rules.scaling_differs(group, spec)):
            return False
        scaling = api_calls.scaling_config(spec)
        self.log.info("node group %s: scaling %s -> %s", spec["name"], group.get("scalingConfig"), scaling)
        self.hook.conn.update_nodegroup_config(clusterName=self.cluster["name"], nodegroupName=spec["name"],
                                               scalingConfig=scaling)
        return True

    def waiting(self, group: dict[str, Any]) -> dict[str, Any]:
        from llm_on_eks.triggers.eks import EksNodegroupActiveTrigger

        ids = {"clusterName": self.cluster["name"], "nodegroupName": group["nodegroupName"]}
        return {"trigger": EksNodegroupActiveTrigger,
                "ids": {"cluster_name": ids["clusterName"], "nodegroup_name": ids["nodegroupName"]},
                "waiter": self.hook.get_waiter("nodegroup_active"), "args": ids, "what": "node group ACTIVE",
                "status_args": ["nodegroup.status", "nodegroup.health.issues"]}

    def failure(self, group: dict[str, Any], why: str) -> str:
        told = rules.launch_failure(group, self.nodegroup["instance_type"])
        return f"node group {group['nodegroupName']} did not become ACTIVE: {told}" if told else why

    def result(self, group: dict[str, Any], action: str) -> Any:
        self.log.info("node group %s %s (%s)", group["nodegroupName"], action, group["status"])
        return {"cluster": self.cluster["name"], "nodegroup": group["nodegroupName"], "action": action,
                "status": group["status"], "instance_type": self.nodegroup["instance_type"],
                "scaling": group.get("scalingConfig"), "labels": group.get("labels"), "taints": group.get("taints"),
                "ready_after_s": ready_after_s(group, action)}

    def cleanup_name(self) -> str:
        return self.nodegroup["name"]

    def delete(self, group: dict[str, Any]) -> None:
        """The node group, and the launch template made for it: that may go while the node group
        is DELETING, EKS launches from its own copy (EKS user guide, "Launch template support":
        the EKS API creates the group's template by copying the one given)."""
        self.hook.conn.delete_nodegroup(clusterName=self.cluster["name"], nodegroupName=group["nodegroupName"])
        if self.nodegroup["capacity_reservation_id"]:
            capacity.remove_launch_template(self.client("ec2"), self.nodegroup["launch_template"],
                                            self.nodegroup["tags"][DEPLOYMENT_KEY], self.log)

    def _check_untainted(self) -> dict[str, Any]:
        cluster_name = self.cluster["name"]
        why = "create_cluster is off" if not self.cluster["create"] else "the cluster is not llm-on-eks's"
        found = [g["nodegroupName"] for g in rules.untainted_nodegroups(self.hook.conn, cluster_name)]
        warning = None if found else NO_SYSTEM_NODES.format(cluster=cluster_name)
        if warning:
            self.log.warning("%s", warning)
        else:
            self.log.info("EKS cluster %s: untainted node group(s) %s take coredns and weight staging", cluster_name,
                          found)
        return {"cluster": cluster_name, "nodegroup": None, "action": f"checked ({why}: none created)",
                "untainted_nodegroups": found, "warning": warning}


class EnsureAddonsOperator(_EksEnsureOperator):
    """The EKS add-ons the cluster section lists (CSI driver for FSx on GPU profiles), but those an
    EKS Auto Mode cluster runs itself.

    The provider has no add-on operator or trigger: EksAddonActiveTrigger fills that gap.

    :param tags: the owner tags a created add-on carries
    """

    template_fields = (*_EksEnsureOperator.template_fields, "tags")
    WAIT = (10, 90)
    KIND = "add-on"
    PENDING = rules.ADDON_PENDING

    def __init__(self, *, tags: dict[str, str], **kwargs) -> None:
        super().__init__(**kwargs)
        self.tags = tags

    def describe(self) -> Any:
        return {"ensure": [{"service": "eks", "operation": "create_addon",
                            "kwargs": api_calls.create_addon_request(self.cluster["name"], name, self.tags)}
                           for name in self.cluster["addons"]],
                "wait_for": "add-ons ACTIVE", "deferrable": self.deferrable}

    def run(self, context: Context) -> Any:
        built_in = rules.AUTO_MODE_BUILT_IN if rules.auto_mode(rules.describe_cluster(self.hook.conn,
                                                                                      self.cluster["name"])) else ()
        # Every missing add-on is created first, so that EKS makes them side by side (each takes
        # a minute or more); the loop then waits for each in turn and finds most of those after
        # the first ACTIVE. Deferred, the task resumes by running this again: nothing is missing
        # any more, the add-ons before the one waited for are found ACTIVE, and the loop goes on.
        for name in self.cluster["addons"]:
            if name not in built_in and self.find(name) is None:
                self.create(name, context)
        return {"cluster": self.cluster["name"],
                "addons": {name: "built into EKS Auto Mode" if name in built_in else self.ensure(context, name)
                           for name in self.cluster["addons"]}}

    def find(self, name: str) -> dict[str, Any] | None:
        return rules.describe_addon(self.hook.conn, self.cluster["name"], name)

    def send_create(self, name: str, context: Context) -> None:
        self.log.info("creating EKS add-on %s on %s", name, self.cluster["name"])
        self.hook.conn.create_addon(**api_calls.create_addon_request(self.cluster["name"], name, self.tags,
                                                                     creating_run_tags(context)))

    def problems(self, addon: dict[str, Any]) -> list[str]:
        return rules.addon_problems(addon)

    def refusal(self, addon: dict[str, Any], problems: list[str]) -> str:
        return f"EKS cluster {self.cluster['name']}: {'; '.join(problems)}"

    def waiting(self, addon: dict[str, Any]) -> dict[str, Any]:
        from llm_on_eks.triggers.eks import EksAddonActiveTrigger

        name = addon["addonName"]
        ids = {"clusterName": self.cluster["name"], "addonName": name}
        return {"trigger": EksAddonActiveTrigger, "ids": {"cluster_name": ids["clusterName"], "addon_name": name},
                "waiter": self.hook.conn.get_waiter("addon_active"), "args": ids, "what": f"add-on {name} ACTIVE",
                "status_args": ["addon.status"]}

    def result(self, addon: dict[str, Any], action: str) -> str:
        self.log.info("EKS add-on %s %s", addon["addonName"], action)
        return action


def _owned_by(tags: dict[str, str], owner: dict[str, str]) -> bool:
    return all(tags.get(k) == v for k, v in owner.items())

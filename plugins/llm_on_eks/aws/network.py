"""The cluster's network: checked when given, made when not, removed with the cluster.

Made, it is laid out as eksctl lays out its own (eksctl docs, "VPC Networking": 192.168.0.0/16,
a public and a private /19 per zone): a VPC with a public and a private subnet in each of two or
three availability zones that offer the node groups' instance types (DescribeInstanceTypeOfferings
by zone, as eksctl does), an internet gateway, one NAT gateway and two route tables. Every piece
carries the cluster's tags (``naming.cluster_tags``) and is found again by them, so a retry
adopts what an earlier try made; the teardown removes the pieces in dependency order.

Two runs that need the cluster at once (two deployments) may both find a piece missing and both
make it. Where AWS keeps one of a kind itself, the second create is refused and the piece adopted:
a subnet's CIDR block (InvalidSubnet.Conflict), a VPC's one internet gateway, a NAT gateway's
Elastic IP, a subnet's one route table. Where it does not (the VPC, a route table, the NAT gateway
on two addresses), each run looks again right after its create and both keep the same one, the
first made where AWS says when (a NAT gateway's CreateTime), else the lowest id; the other's maker
deletes it, by the id its create returned, before anything depends on it. EC2 reports no creation
time for a VPC or route table and has no conditional create for them: a run that looked again
before the other's create landed keeps its own, and both stay (only when one run's whole create
and look fall between the other's look and create; the cluster then goes into the VPC with the
lowest id). The VPC carries the zones its maker chose, so a run that adopts it lays out the same
subnets whatever its own instance type offered.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from llm_on_eks.naming import CLUSTER_KEY, CREATED_BY_RUN_KEY, LABEL_PREFIX, MANAGED_BY_KEY, PROJECT, is_managed

VPC_CIDR = "192.168.0.0/16"
# A route table's default route (every destination): a route, not an address anything listens on.
DEFAULT_ROUTE = "0.0.0.0/0"
SUBNET_CIDRS = {"public": ("192.168.0.0/19", "192.168.32.0/19", "192.168.64.0/19"),
                "private": ("192.168.96.0/19", "192.168.128.0/19", "192.168.160.0/19")}
# EKS needs subnets in at least two zones (EKS API, CreateCluster); eksctl uses up to three.
MIN_ZONES, MAX_ZONES = 2, 3
# Zones whose ids EKS's control plane cannot use (EKS user guide, "View Amazon EKS networking
# requirements for VPC and subnets").
EKS_UNSUPPORTED_ZONE_IDS = frozenset({"use1-az3", "usw1-az2", "cac1-az3"})
# The subnet tags the AWS Load Balancer Controller discovers subnets by (its docs, "Subnet auto-discovery").
ELB_ROLE_TAGS = {"public": "kubernetes.io/role/elb", "private": "kubernetes.io/role/internal-elb"}
# A node takes its primary address and, with the VPC CNI's default WARM_ENI_TARGET=1, a whole
# spare interface's worth (amazon-vpc-cni-k8s docs, "WARM_ENI_TARGET"): two interfaces' addresses.
ENIS_HELD_PER_NODE = 2
NAT_WAIT = {"Delay": 15, "MaxAttempts": 40}  # a NAT gateway is usually available in 1-3 minutes
# The VPC's tag naming the zones of its subnets (space-separated), as its maker chose them.
ZONES_KEY = f"{LABEL_PREFIX}/zones"
# What AWS answers a second internet gateway for a VPC ("Network vpc-... already has an internet
# gateway attached"), the same gateway attached again, a second NAT gateway on an Elastic IP, or a
# subnet's second route table.
ALREADY_ATTACHED = ("InvalidParameterValue", "Resource.AlreadyAssociated")
# What AWS answers for a spare gateway or address another run tidied away meanwhile (below): the
# gateway or NAT that run kept is then looked for, as after ALREADY_ATTACHED.
TIDIED_AWAY = ("InvalidInternetGatewayID.NotFound", "InvalidAllocationID.NotFound")


class NetworkError(Exception):
    """The network cannot be made or used as asked; the message says what would work."""


def _filters(**by: Iterable[str] | str) -> list[dict[str, Any]]:
    return [{"Name": k.replace("__", ":").replace("_", "-"), "Values": [v] if isinstance(v, str) else list(v)}
            for k, v in by.items()]


def tag_filters(cluster: str) -> list[dict[str, Any]]:
    return [{"Name": f"tag:{MANAGED_BY_KEY}", "Values": [PROJECT]}, {"Name": f"tag:{CLUSTER_KEY}", "Values": [cluster]}]


def _spec(resource_type: str, tags: dict[str, str], name: str) -> list[dict[str, Any]]:
    return [{"ResourceType": resource_type,
             "Tags": [{"Key": k, "Value": v} for k, v in {"Name": name, **tags}.items()]}]


def tags_of(resource: dict[str, Any]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in resource.get("Tags") or []}


def offering_zones(ec2, instance_type: str) -> list[str]:
    """The region's availability zones that offer the instance type, sorted."""
    offerings = ec2.describe_instance_type_offerings(
        LocationType="availability-zone", Filters=_filters(instance_type=instance_type))["InstanceTypeOfferings"]
    return sorted({o["Location"] for o in offerings})


def choose_zones(ec2, accelerator_type: str, system_type: str, required_zone: str | None = None) -> list[str]:
    """Two or three zones for a new network: those offering the accelerator type first (its node
    group goes there; ``required_zone``, a capacity reservation's, before all), then, when fewer
    than two do, zones offering the system type."""
    unsupported = {z["ZoneName"] for z in ec2.describe_availability_zones()["AvailabilityZones"]
                   if z.get("ZoneId") in EKS_UNSUPPORTED_ZONE_IDS}
    accelerator = sorted((z for z in offering_zones(ec2, accelerator_type) if z not in unsupported),
                         key=lambda zone: zone != required_zone)
    if required_zone and required_zone not in accelerator:
        raise NetworkError(f"the capacity reservation's zone {required_zone} cannot take an EKS cluster's subnets "
                           f"for {accelerator_type}: give subnet_ids there")
    if not accelerator:
        raise NetworkError(f"no availability zone of the region offers {accelerator_type}")
    system = [z for z in offering_zones(ec2, system_type) if z not in unsupported and z not in accelerator]
    zones = (accelerator + system)[:MAX_ZONES]
    if len(zones) < MIN_ZONES:
        raise NetworkError(f"EKS needs subnets in two availability zones; only {zones} offer {accelerator_type} "
                           f"or {system_type}")
    return zones


def subnets(ec2, subnet_ids: list[str]) -> list[dict[str, Any]]:
    return ec2.describe_subnets(SubnetIds=list(subnet_ids))["Subnets"] if subnet_ids else []


def addresses_needed(nodes: int, ipv4_per_eni: int) -> int:
    return nodes * ENIS_HELD_PER_NODE * ipv4_per_eni


def subnet_problems(found: list[dict[str, Any]], wanted: list[str], zones: list[str], instance_type: str,
                    needed_addresses: int) -> list[str]:
    """Why given subnets cannot carry the node group: each must be in a zone offering its
    instance type, all in one VPC, with enough free addresses between them."""
    problems = []
    missing = sorted(set(wanted) - {s["SubnetId"] for s in found})
    if missing:
        problems.append(f"subnets {missing} do not exist in the region")
    elsewhere = [f"{s['SubnetId']} ({s['AvailabilityZone']})" for s in found if s["AvailabilityZone"] not in zones]
    if elsewhere:
        problems.append(f"{', '.join(elsewhere)} {'is' if len(elsewhere) == 1 else 'are'} in a zone without "
                        f"{instance_type}; zones that offer it: {', '.join(zones) or 'none in this region'}")
    vpcs = sorted({s["VpcId"] for s in found})
    if len(vpcs) > 1:
        problems.append(f"the subnets are in more than one VPC ({', '.join(vpcs)}); EKS needs one")
    free = sum(s.get("AvailableIpAddressCount", 0) for s in found if s["AvailabilityZone"] in zones)
    if found and free < needed_addresses:
        problems.append(f"the subnets have {free} free addresses, the node group needs {needed_addresses}")
    return problems


def in_zone(ec2, subnet_ids: list[str], zone: str) -> list[str]:
    """Of the subnets, those in ``zone`` (a capacity reservation's: its instances launch only there)."""
    return [s["SubnetId"] for s in subnets(ec2, subnet_ids) if s["AvailabilityZone"] == zone]


def node_subnets(ec2, cluster: str, cluster_subnet_ids: list[str], instance_type: str) -> list[str]:
    """Of a cluster's subnets, the ones a node group of the instance type goes in: the private
    ones when the subnets are tagged (a public subnet would give nodes public addresses), in
    zones that offer it. NetworkError, naming the zones that would work, when there are none."""
    found = subnets(ec2, cluster_subnet_ids)
    private = [s for s in found if ELB_ROLE_TAGS["private"] in tags_of(s)]
    zones = offering_zones(ec2, instance_type)
    fitting = [s["SubnetId"] for s in (private or found) if s["AvailabilityZone"] in zones]
    if not fitting:
        raise NetworkError(f"none of cluster {cluster}'s subnets is in a zone offering {instance_type} "
                           f"({', '.join(zones) or 'no zone of the region'} would work): name subnet_ids there")
    return fitting


def cluster_vpcs(ec2, cluster: str) -> list[dict[str, Any]]:
    """The cluster's VPCs made by this project, lowest id first."""
    return sorted(ec2.describe_vpcs(Filters=tag_filters(cluster))["Vpcs"], key=lambda v: v["VpcId"])


def find_vpc(ec2, cluster: str) -> dict[str, Any] | None:
    """The cluster's VPC made by this project. Two runs creating it at once may both have made
    one: both adopt the lowest id, and the other one's maker deletes it (``Network.vpc``)."""
    vpcs = cluster_vpcs(ec2, cluster)
    return vpcs[0] if vpcs else None


def zones_of(vpc: dict[str, Any]) -> list[str]:
    """The zones the VPC's maker chose (empty for a VPC made before they were recorded)."""
    return tags_of(vpc).get(ZONES_KEY, "").split()


def _code(exc: Exception) -> str:
    return getattr(exc, "response", {}).get("Error", {}).get("Code", "")


def network_of(ec2, vpc_id: str) -> dict[str, Any]:
    """The VPC's subnets by kind (by their load-balancer role tag), as the cluster uses them."""
    found = ec2.describe_subnets(Filters=_filters(vpc_id=vpc_id))["Subnets"]
    kinds = {kind: sorted((s for s in found if tag in tags_of(s)), key=lambda s: s["AvailabilityZone"])
             for kind, tag in ELB_ROLE_TAGS.items()}
    return {"vpc_id": vpc_id, "zones": sorted({s["AvailabilityZone"] for s in kinds["private"]}),
            **{f"{kind}_subnet_ids": [s["SubnetId"] for s in group] for kind, group in kinds.items()}}


def cluster_subnet_ids(network: dict[str, Any]) -> list[str]:
    """The subnets a new cluster is given: private first (the cluster's first subnet is FSx's
    default), public too, so internet-facing load balancers can be made."""
    return [*network["private_subnet_ids"], *network["public_subnet_ids"]]


class Network:
    """Find-or-create of each piece of one cluster's network, in order; a retry adopts them."""

    def __init__(self, ec2, cluster: str, tags: dict[str, str], log: logging.Logger) -> None:
        self.ec2, self.cluster, self.tags, self.log = ec2, cluster, tags, log
        self.made: list[str] = []

    def ensure(self, zones: list[str]) -> dict[str, Any]:
        vpc = self.vpc(zones)
        # Laid out in the zones the VPC's maker chose, which may be another run's.
        vpc_id, zones = vpc["VpcId"], zones_of(vpc) or zones
        igw = self.internet_gateway(vpc_id)
        ids: dict[str, list[str]] = {"public": [], "private": []}
        for kind in ids:
            for index, zone in enumerate(zones):
                ids[kind].append(self.subnet(vpc_id, kind, zone, SUBNET_CIDRS[kind][index]))
        nat = self.nat_gateway(ids["public"][0])
        self.route_table(vpc_id, "public", ids["public"], {"GatewayId": igw})
        self.route_table(vpc_id, "private", ids["private"], {"NatGatewayId": nat})
        return {**network_of(self.ec2, vpc_id), "nat_gateway_id": nat, "made": self.made}

    def _name(self, *parts: str) -> str:
        return "-".join((self.cluster, *parts))

    def _made(self, what: str, resource_id: str) -> str:
        self.log.info("network of %s: created %s %s", self.cluster, what, resource_id)
        self.made.append(f"{what} {resource_id}")
        return resource_id

    def _find(self, call, key: str, **filters: Any) -> list[dict[str, Any]]:
        return call(Filters=[*tag_filters(self.cluster), *_filters(**filters)])[key]

    def vpc(self, zones: list[str]) -> dict[str, Any]:
        found = find_vpc(self.ec2, self.cluster)
        if found:
            return found
        vpc = self.ec2.create_vpc(CidrBlock=VPC_CIDR, TagSpecifications=_spec(
            "vpc", {**self.tags, ZONES_KEY: " ".join(zones)}, self._name("vpc")))
        vpc_id = vpc["Vpc"]["VpcId"]
        # Nodes reach the cluster endpoint and ECR by DNS name (EKS user guide, VPC requirements).
        self.ec2.modify_vpc_attribute(VpcId=vpc_id, EnableDnsHostnames={"Value": True})
        return self._keep_first("VPC", cluster_vpcs(self.ec2, self.cluster), "VpcId", vpc_id,
                                lambda extra: self.ec2.delete_vpc(VpcId=extra))

    def _keep_first(self, what: str, found: list[dict[str, Any]], key: str, made: str, delete) -> dict[str, Any]:
        """Of the ``what``s of ours found after this run made ``made``, keep the first (every run
        adopts the lowest id) and delete the others this run made: its own when another run's came
        first, and one a create whose answer was lost made (botocore resent it, and CreateVpc takes
        no client token, EC2 API reference). Another run's extra is that run's to delete."""
        def this_runs(resource: dict[str, Any]) -> bool:
            return resource[key] == made or self._this_runs(resource)

        kept = found[0]
        for extra in filter(this_runs, found[1:]):
            self.log.info("network of %s: %s %s is kept (the first made); deleting this run's %s", self.cluster, what,
                          kept[key], extra[key])
            delete(extra[key])
        if this_runs(kept):
            self._made(what, kept[key])
        return kept

    def _this_runs(self, resource: dict[str, Any]) -> bool:
        """Whether this run made it (its created-by-run tag)."""
        return tags_of(resource).get(CREATED_BY_RUN_KEY) == self.tags.get(CREATED_BY_RUN_KEY)

    def _lost(self, what: str, kept: str, mine: str, delete) -> str:
        """Another run made ``what`` at the same time and its one is kept: delete this run's."""
        self.log.info("network of %s: another run made %s %s meanwhile; deleting this run's, %s", self.cluster, what,
                      kept, mine)
        delete()
        return kept

    def _attached_gateway(self, vpc_id: str) -> str | None:
        found = self.ec2.describe_internet_gateways(Filters=[
            *tag_filters(self.cluster), {"Name": "attachment.vpc-id", "Values": [vpc_id]}])["InternetGateways"]
        return found[0]["InternetGatewayId"] if found else None

    def internet_gateway(self, vpc_id: str) -> str:
        """The VPC's internet gateway; one of ours left unattached (an earlier try's) is used first.
        A VPC takes one (VPC user guide, "Internet gateways"): when another run's was attached
        first, this run's goes."""
        from botocore.exceptions import ClientError

        attached = self._attached_gateway(vpc_id)
        if attached:
            return attached
        spare = [g for g in self._find(self.ec2.describe_internet_gateways, "InternetGateways")
                 if not g.get("Attachments")]
        made = None
        if spare:
            igw_id = spare[0]["InternetGatewayId"]
        else:
            igw_id = made = self._made("internet gateway", self.ec2.create_internet_gateway(
                TagSpecifications=_spec("internet-gateway", self.tags, self._name("igw")))["InternetGateway"][
                "InternetGatewayId"])
        try:
            self.ec2.attach_internet_gateway(InternetGatewayId=igw_id, VpcId=vpc_id)
        except ClientError as exc:
            attached = self._attached_gateway(vpc_id) if _code(exc) in ALREADY_ATTACHED + TIDIED_AWAY else None
            if not attached:
                raise
            if made and attached != made:
                self.log.info("network of %s: another run's internet gateway %s was attached first; this run's, "
                              "%s, is a spare", self.cluster, attached, made)
            igw_id = attached
        self._tidy("internet gateway", [g["InternetGatewayId"] for g in self._find(
            self.ec2.describe_internet_gateways, "InternetGateways") if not g.get("Attachments") and self._this_runs(g)],
            lambda spare: self.ec2.delete_internet_gateway(InternetGatewayId=spare))
        return igw_id

    def _tidy(self, what: str, spares: list[str], delete) -> None:
        """Delete this run's spare ``what``s once the one in use is settled: its own when another
        run's was used first, or one a lost answer left. CreateInternetGateway and AllocateAddress
        take no client token (EC2 API reference), so a create whose answer was lost and that
        botocore resent leaves one behind; an Elastic IP bills while it is held (Amazon VPC pricing,
        public IPv4 addresses). Another run's spares are that run's to delete; a run that took one
        of this run's meanwhile is told it is gone (TIDIED_AWAY) and adopts what this run kept."""
        from botocore.exceptions import ClientError

        for spare in spares:
            try:
                delete(spare)
                self.log.info("network of %s: deleted spare %s %s", self.cluster, what, spare)
            except ClientError as exc:
                if _code(exc) not in TIDIED_AWAY:
                    raise
            if f"{what} {spare}" in self.made:
                self.made.remove(f"{what} {spare}")

    def subnet(self, vpc_id: str, kind: str, zone: str, cidr: str) -> str:
        from botocore.exceptions import ClientError

        name = self._name(kind, zone)
        found = self._find(self.ec2.describe_subnets, "Subnets", vpc_id=vpc_id, tag__Name=name)
        if found:
            return found[0]["SubnetId"]
        try:
            created = self.ec2.create_subnet(VpcId=vpc_id, CidrBlock=cidr, AvailabilityZone=zone,
                                             TagSpecifications=_spec("subnet", {**self.tags, ELB_ROLE_TAGS[kind]: "1"},
                                                                     name))["Subnet"]
        except ClientError as exc:
            # The block is taken: by another run's subnet of this name, made meanwhile, adopted;
            # anything else is refused as before.
            found = (self._find(self.ec2.describe_subnets, "Subnets", vpc_id=vpc_id, tag__Name=name)
                     if _code(exc) == "InvalidSubnet.Conflict" else None)
            if not found:
                raise
            return found[0]["SubnetId"]
        return self._made(f"{kind} subnet ({zone})", created["SubnetId"])

    def _nat_gateways(self, public_subnet: str) -> list[dict[str, Any]]:
        """The subnet's live NAT gateways of ours, the first made first (CreateTime, then id)."""
        found = self._find(self.ec2.describe_nat_gateways, "NatGateways", subnet_id=public_subnet,
                           state=("pending", "available"))
        return sorted(found, key=lambda n: (n.get("CreateTime") is None, n.get("CreateTime") or 0,
                                            n["NatGatewayId"]))

    def nat_gateway(self, public_subnet: str) -> str:
        from botocore.exceptions import ClientError

        found = self._nat_gateways(public_subnet)
        if found:
            nat_id = found[0]["NatGatewayId"]
        else:
            address, allocated = self.elastic_ip()
            try:
                made = self.ec2.create_nat_gateway(
                    SubnetId=public_subnet, AllocationId=address,
                    TagSpecifications=_spec("natgateway", self.tags, self._name("nat")))["NatGateway"]["NatGatewayId"]
            except ClientError as exc:
                # Another run's NAT gateway took the spare address first (or that run tidied it
                # away): that gateway is the one.
                found = self._nat_gateways(public_subnet) if _code(exc) in ALREADY_ATTACHED + TIDIED_AWAY else []
                if not found:
                    raise
                nat_id = found[0]["NatGatewayId"]
            else:
                nat_id = self._nat_gateways(public_subnet)[0]["NatGatewayId"]
                if nat_id != made:
                    self._lost("NAT gateway", nat_id, made, lambda: self._delete_nat(made, address if allocated else None))
                else:
                    self._made("NAT gateway", made)
        self.ec2.get_waiter("nat_gateway_available").wait(NatGatewayIds=[nat_id], WaiterConfig=NAT_WAIT)
        # The gateway holds its address now; any other address this run made is a spare.
        self._tidy("Elastic IP", [a["AllocationId"] for a in self._find(self.ec2.describe_addresses, "Addresses")
                                  if not a.get("AssociationId") and self._this_runs(a)],
                   lambda spare: self.ec2.release_address(AllocationId=spare))
        return nat_id

    def _delete_nat(self, nat_id: str, address: str | None) -> None:
        """This run's NAT gateway, then the address allocated for it (held until the gateway is gone)."""
        self.ec2.delete_nat_gateway(NatGatewayId=nat_id)
        if address:
            self.ec2.get_waiter("nat_gateway_deleted").wait(NatGatewayIds=[nat_id], WaiterConfig=NAT_WAIT)
            self._tidy("Elastic IP", [address], lambda spare: self.ec2.release_address(AllocationId=spare))

    def elastic_ip(self) -> tuple[str, bool]:
        """An address of ours no NAT gateway holds (an earlier try's), or a new one; and whether new."""
        free = [a for a in self._find(self.ec2.describe_addresses, "Addresses") if not a.get("AssociationId")]
        if free:
            return free[0]["AllocationId"], False
        address = self.ec2.allocate_address(Domain="vpc",
                                            TagSpecifications=_spec("elastic-ip", self.tags, self._name("nat")))
        return self._made("Elastic IP", address["AllocationId"]), True

    def _route_tables(self, vpc_id: str, name: str) -> list[dict[str, Any]]:
        found = self._find(self.ec2.describe_route_tables, "RouteTables", vpc_id=vpc_id, tag__Name=name)
        return sorted(found, key=lambda t: t["RouteTableId"])

    def route_table(self, vpc_id: str, kind: str, subnet_ids: list[str], target: dict[str, str]) -> str:
        from botocore.exceptions import ClientError

        name = self._name(kind)
        found = self._route_tables(vpc_id, name)
        if not found:
            made = self.ec2.create_route_table(
                VpcId=vpc_id, TagSpecifications=_spec("route-table", self.tags, name))["RouteTable"]["RouteTableId"]
            found = [self._keep_first(f"{kind} route table", self._route_tables(vpc_id, name), "RouteTableId", made,
                                      lambda extra: self.ec2.delete_route_table(RouteTableId=extra))]
        table = found[0]
        table_id = table["RouteTableId"]
        # Another run may add the same route or association meanwhile: AWS refuses the second
        # (RouteAlreadyExists; a subnet takes one route table), which is then there.
        if not any(r.get("DestinationCidrBlock") == DEFAULT_ROUTE for r in table.get("Routes") or []):
            try:
                self.ec2.create_route(RouteTableId=table_id, DestinationCidrBlock=DEFAULT_ROUTE, **target)
            except ClientError as exc:
                if _code(exc) != "RouteAlreadyExists":
                    raise
        associated = {a.get("SubnetId") for a in table.get("Associations") or []}
        for subnet_id in subnet_ids:
            if subnet_id in associated:
                continue
            try:
                self.ec2.associate_route_table(RouteTableId=table_id, SubnetId=subnet_id)
            except ClientError as exc:
                now = {a.get("SubnetId") for a in self._route_tables(vpc_id, name)[0].get("Associations") or []}
                if _code(exc) not in ALREADY_ATTACHED or subnet_id not in now:
                    raise
        return table_id


def delete_network(ec2, cluster: str, vpc: dict[str, Any], log: logging.Logger) -> list[str]:
    """Remove the cluster's network, dependants first: NAT gateway (waited out), its address,
    the internet gateway, route tables, subnets, the security groups EKS or this project made
    for the cluster, then the VPC. Only pieces tagged as the cluster's are touched; anything
    else in the VPC (a load balancer's interfaces, a foreign instance) makes the VPC's delete
    fail with DependencyViolation, which names it, and the VPC is kept."""
    vpc_id, tagged = vpc["VpcId"], tag_filters(cluster)
    deleted: list[str] = []

    def gone(what: str, call, **kwargs: Any) -> None:
        call(**kwargs)
        log.info("network of %s: deleted %s", cluster, what)
        deleted.append(what)

    nats = [n["NatGatewayId"] for n in ec2.describe_nat_gateways(
        Filters=[*tagged, *_filters(vpc_id=vpc_id, state=("pending", "available", "deleting"))])["NatGateways"]]
    for nat in nats:
        gone(f"NAT gateway {nat}", ec2.delete_nat_gateway, NatGatewayId=nat)
    if nats:
        ec2.get_waiter("nat_gateway_deleted").wait(NatGatewayIds=nats, WaiterConfig=NAT_WAIT)
    for address in ec2.describe_addresses(Filters=tagged)["Addresses"]:
        gone(f"Elastic IP {address['AllocationId']}", ec2.release_address, AllocationId=address["AllocationId"])
    for igw in ec2.describe_internet_gateways(Filters=tagged)["InternetGateways"]:
        if any(a.get("VpcId") == vpc_id for a in igw.get("Attachments") or []):
            ec2.detach_internet_gateway(InternetGatewayId=igw["InternetGatewayId"], VpcId=vpc_id)
        gone(f"internet gateway {igw['InternetGatewayId']}", ec2.delete_internet_gateway,
             InternetGatewayId=igw["InternetGatewayId"])
    for table in ec2.describe_route_tables(Filters=[*tagged, *_filters(vpc_id=vpc_id)])["RouteTables"]:
        for association in table.get("Associations") or []:
            if not association.get("Main"):
                ec2.disassociate_route_table(AssociationId=association["RouteTableAssociationId"])
        gone(f"route table {table['RouteTableId']}", ec2.delete_route_table, RouteTableId=table["RouteTableId"])
    for subnet in ec2.describe_subnets(Filters=[*tagged, *_filters(vpc_id=vpc_id)])["Subnets"]:
        gone(f"subnet {subnet['SubnetId']}", ec2.delete_subnet, SubnetId=subnet["SubnetId"])
    for group in ec2.describe_security_groups(Filters=_filters(vpc_id=vpc_id))["SecurityGroups"]:
        tags = tags_of(group)
        # EKS tags the cluster security group it makes (EKS user guide, "View Amazon EKS security
        # group requirements for clusters"); it normally goes with the cluster.
        if group["GroupName"] != "default" and (is_managed(tags) and tags.get(CLUSTER_KEY) == cluster
                                                or tags.get("aws:eks:cluster-name") == cluster):
            gone(f"security group {group['GroupId']}", ec2.delete_security_group, GroupId=group["GroupId"])
    gone(f"VPC {vpc_id}", ec2.delete_vpc, VpcId=vpc_id)
    return deleted

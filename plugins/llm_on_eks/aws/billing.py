"""What still bills on a cluster after a teardown has acted, read from AWS: the EKS control plane,
the node groups, FSx file systems and NAT gateway this project made for it, each with its hourly
price and whether any deployment still uses it. A teardown's summary prints it, so that "$99.74
/hour stopped" is never read as "nothing bills any more".

Prices are on-demand list prices in us-east-1, for estimates only (they vary by region).
"""

from __future__ import annotations

from typing import Any

from llm_on_eks.aws import eks as rules
from llm_on_eks.aws import network
from llm_on_eks.aws.fsx_rules import users_of
from llm_on_eks.catalog import CatalogError, default_catalog
from llm_on_eks.naming import DEPLOYMENT_KEY, NAMESPACE_KEY, ROLE_KEY, SYSTEM_ROLE, fsx_name, fsx_user, is_managed
from llm_on_eks.plan.defaults import (
    EKS_CONTROL_PLANE_HOURLY_USD,
    FSX_GB_MONTH_USD,
    HOURS_PER_MONTH,
    NETWORK_HOURLY_USD,
    SYSTEM_HOURLY_USD,
    SYSTEM_INSTANCE_TYPE,
)


def _instance_hourly(instance_type: str) -> float | None:
    if instance_type == SYSTEM_INSTANCE_TYPE:
        return SYSTEM_HOURLY_USD
    try:
        return default_catalog().instance_type(instance_type).hourly_usd
    except CatalogError:
        return None


def nodegroup_item(group: dict[str, Any]) -> dict[str, Any]:
    """A node group of ours: its nodes' price, and who uses it (its deployment, or, the system
    group, every deployment on the cluster)."""
    tags, size = group.get("tags") or {}, (group.get("scalingConfig") or {}).get("desiredSize", 0)
    instance = (group.get("instanceTypes") or ["unknown"])[0]
    price = _instance_hourly(instance)
    owner = (fsx_user(tags[NAMESPACE_KEY], tags[DEPLOYMENT_KEY]) if DEPLOYMENT_KEY in tags and NAMESPACE_KEY in tags
             else tags.get(DEPLOYMENT_KEY))
    return {"kind": "node group", "name": group["nodegroupName"], "what": f"{size} x {instance}",
            "hourly_usd": round(price * size, 3) if price is not None else None,
            "used_by": [owner] if owner else [], "shared": tags.get(ROLE_KEY) == SYSTEM_ROLE}


def fsx_item(file_system: dict[str, Any]) -> dict[str, Any]:
    capacity = file_system.get("StorageCapacity", 0)
    throughput = (file_system.get("LustreConfiguration") or {}).get("PerUnitStorageThroughput")
    per_gb = FSX_GB_MONTH_USD.get(throughput)
    return {"kind": "FSx file system", "name": file_system["FileSystemId"],
            "what": f"{capacity} GiB at {throughput} MB/s/TiB",
            "hourly_usd": round(capacity * per_gb / HOURS_PER_MONTH, 3) if per_gb else None,
            "used_by": users_of(file_system), "shared": True}


def still_billing(eks, ec2, fsx_hook, cluster: str) -> dict[str, Any]:
    """Everything of ``cluster`` that bills by the hour, and the part of it nothing uses: node
    groups of ours without a deployment (the system group: once no deployment's group is left),
    FSx of ours without a user, and, with no deployment left, the control plane and the network."""
    found = rules.describe_cluster(eks, cluster)
    if found is None:
        return {"cluster": cluster, "items": [], "hourly_usd": 0.0, "unused_hourly_usd": 0.0,
                "summary": f"{cluster}: gone, nothing of it bills"}
    groups = [nodegroup_item(g) for g in (rules.describe_nodegroup(eks, cluster, n)
                                          for n in rules.list_nodegroups(eks, cluster)) if g and is_managed(g.get("tags"))]
    deployments = sorted({user for g in groups if not g["shared"] for user in g["used_by"]})
    items = [{"kind": "EKS control plane", "name": cluster, "what": "ours" if is_managed(found.get("tags")) else
              "not made by llm-on-eks", "hourly_usd": EKS_CONTROL_PLANE_HOURLY_USD, "used_by": deployments,
              "shared": True}]
    for group in groups:
        items.append({**group, "used_by": deployments} if group["shared"] else group)
    items += [fsx_item(fs) for fs in fsx_hook.find_file_systems(fsx_name(cluster), cluster)
              if fs.get("Lifecycle") not in ("DELETING", "DELETED")]
    vpc = network.find_vpc(ec2, cluster)
    if vpc is not None:
        items.append({"kind": "network", "name": vpc["VpcId"], "what": "NAT gateway and its public IPv4 address",
                      "hourly_usd": NETWORK_HOURLY_USD, "used_by": deployments, "shared": True})
    unused = [i for i in items if not i["used_by"]]
    total = round(sum(i["hourly_usd"] or 0 for i in items), 2)
    idle = round(sum(i["hourly_usd"] or 0 for i in unused), 2)
    lines = [f"{cluster}: ${total:.2f}/hour still billing, ${idle:.2f}/hour of it used by no deployment"]
    lines += [f"  {i['kind']} {i['name']} ({i['what']}): "
              + (f"${i['hourly_usd']:.2f}/hour" if i["hourly_usd"] is not None else "price unknown")
              + (f", used by {', '.join(i['used_by'])}" if i["used_by"] else ", used by no deployment")
              for i in items]
    return {"cluster": cluster, "items": items, "hourly_usd": total, "unused_hourly_usd": idle,
            "summary": "\n".join(lines)}

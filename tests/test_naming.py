"""Derived names, property-style: many generated identities (cluster, region, namespace,
deployment), each name valid by its target's own rule, and no two identities sharing a name
where the target's names must be unique."""

from __future__ import annotations

import random
import re
import string
from collections import defaultdict

import pytest

from llm_on_eks import naming
from llm_on_eks.inputs import PATTERNS, Allowed
from llm_on_eks.plan import build_plan

REGIONS = ["us-west-2", "us-east-1", "eu-central-1", "ap-southeast-2", "us-gov-west-1"]
# A small alphabet makes near-collisions (case, '_' vs '-', separators moved) common.
CLUSTER_CHARS = "aAbB-_1"
LABEL_CHARS = "ab-1"


def _word(rng: random.Random, chars: str, first: str, length: int) -> str:
    return rng.choice(first) + "".join(rng.choice(chars) for _ in range(length - 1))


def _label(rng: random.Random, first: str, max_len: int) -> str:
    length = rng.choice([1, 2, 3, 5, max_len - 1, max_len])
    word = _word(rng, LABEL_CHARS, first, length)
    return word if len(word) == 1 else word[:-1] + rng.choice("ab1")


def identities(count: int, seed: int = 14) -> list[tuple[str, str, str, str]]:
    rng = random.Random(seed)
    found = set()
    while len(found) < count:
        cluster = _word(rng, CLUSTER_CHARS, "aA1", rng.choice([1, 2, 4, 8, 40, 56, 57, 63, 99, 100]))
        namespace = _label(rng, "ab1", 63)
        if namespace in naming.RESERVED_NAMESPACES:
            continue
        found.add((cluster, rng.choice(REGIONS), namespace, _label(rng, "ab", 40)))
    return sorted(found)


IDENTITIES = identities(4000) + [
    # Hand-made near-collisions: moved separators, case, '_' against '-', regions past the cut.
    ("c", "us-west-2", "a-b", "c"), ("c", "us-west-2", "a", "b-c"),
    ("Prod", "us-west-2", "ns", "d"), ("prod", "us-west-2", "ns", "d"), ("prod_x", "us-west-2", "ns", "d"),
    ("prod-x", "us-west-2", "ns", "d"), ("x" * 100, "us-west-2", "ns", "d"), ("x" * 100, "us-east-1", "ns", "d"),
    ("x" * 99 + "y", "us-west-2", "ns", "d"),
]


def _valid(body: str, name: str) -> bool:
    return re.fullmatch(body, name) is not None


def _names(cluster: str, region: str, namespace: str, deployment: str) -> dict[str, str]:
    claim = naming.fsx_claim_name(cluster, region)
    return {"nodegroup": naming.nodegroup_name(cluster, region, namespace, deployment),
            "system_nodegroup": naming.system_nodegroup_name(cluster, region),
            "launch_template": naming.launch_template_name(cluster, region, namespace, deployment),
            "nodepool": naming.nodepool_name(cluster, region, namespace, deployment),
            "bucket": naming.artifact_bucket(cluster, region), "claim": claim,
            "pv": naming.fsx_pv_name(claim, namespace)}


# Each derived name: the rule it must pass, and the part of the identity that must tell two
# names apart (the target's scope holds the rest fixed).
RULES = {
    "nodegroup": (naming.NODEGROUP_BODY, lambda c, r, n, d: (c, r, n, d), lambda c, r, n, d: (c, r)),
    "system_nodegroup": (naming.NODEGROUP_BODY, lambda c, r, n, d: (c, r), lambda c, r, n, d: (c, r)),
    # Launch template names are per region (one account), whatever the cluster.
    "launch_template": (naming.LAUNCH_TEMPLATE_BODY, lambda c, r, n, d: (c, r, n, d), lambda c, r, n, d: (r,)),
    "bucket": (naming.S3_BUCKET_BODY, lambda c, r, n, d: (c, r), lambda c, r, n, d: ()),
    # NodePools are cluster-wide, their name a label value (the nodes' karpenter.sh/nodepool).
    "nodepool": (PATTERNS["nodepool"], lambda c, r, n, d: (c, r, n, d), lambda c, r, n, d: (c, r)),
    # One Kubernetes cluster per EKS cluster, but a Kubernetes connection may reach one under
    # several cluster names: claims and volumes differ by cluster within a region.
    "claim": (naming.DNS_LABEL_BODY, lambda c, r, n, d: (c, r), lambda c, r, n, d: (r,)),
    "pv": (naming.DNS_SUBDOMAIN_BODY, lambda c, r, n, d: (c, r, n), lambda c, r, n, d: (r,)),
}


@pytest.mark.parametrize("target", sorted(RULES))
def test_every_name_is_valid_and_unique_in_its_scope(target):
    body, key, scope = RULES[target]
    owners: dict[tuple, dict[str, tuple]] = defaultdict(dict)
    for identity in IDENTITIES:
        name = _names(*identity)[target]
        assert _valid(body, name), (identity, name)
        seen = owners[scope(*identity)].setdefault(name, key(*identity))
        assert seen == key(*identity), f"{target} {name!r} for both {seen} and {key(*identity)}"


def test_names_keep_the_region_and_say_when_they_were_altered():
    long = "x" * 100
    assert naming.artifact_bucket("llm-inference", "us-west-2") == "llm-on-eks-llm-inference-us-west-2"
    assert naming.artifact_bucket(long, "us-gov-west-1").endswith("-us-gov-west-1")
    assert naming.artifact_bucket("Prod", "us-west-2") != naming.artifact_bucket("prod", "us-west-2")
    assert naming.nodegroup_name("c", "us-west-2", "llm-serving", "scout") == "llm-serving_scout-nodes"
    assert naming.fsx_claim_name("Team_A", "us-west-2").startswith("team-a-")
    assert naming.system_nodegroup_name("llm-inference", "us-west-2") == "llm-inference-system"


@pytest.mark.parametrize("identity", IDENTITIES[::40])
def test_plans_carry_only_valid_names(identity):
    """Every identity the form accepts either plans with names valid by each target's rule, or
    is refused naming a field."""
    cluster, region, namespace, deployment = identity
    conf = {"model": "llama4-scout", "accelerator": "gpu", "cluster_name": cluster, "region": region,
            "namespace": namespace, "deployment_name": deployment}
    for field in ("cluster_name", "region", "namespace", "deployment_name"):
        assert _valid(PATTERNS[field], conf[field])
    plan = build_plan(conf, allowed=Allowed())
    assert_valid_names(plan)
    assert plan["nodegroup"]["tags"][naming.NAMESPACE_KEY] == namespace


def assert_valid_names(plan) -> None:
    """Every external name in a plan passes its target's own rule."""
    assert _valid(naming.NODEGROUP_BODY, plan["nodegroup"]["name"])
    assert _valid(naming.NODEGROUP_BODY, plan["system_nodegroup"]["name"])
    assert _valid(naming.LAUNCH_TEMPLATE_BODY, plan["nodegroup"]["launch_template"])
    assert _valid(PATTERNS["nodepool"], plan["nodepool"]["name"])
    assert _valid(naming.S3_BUCKET_BODY, plan["storage"]["artifact_bucket"])
    if plan["storage"]["fsx"]:  # weights staged on FSx (Scout and Maverick on GPU)
        assert _valid(naming.DNS_LABEL_BODY, plan["storage"]["fsx"]["pvc_name"])
    assert _valid(naming.DNS_LABEL_BODY, plan["kubernetes"]["release"])
    assert _valid(naming.DNS_LABEL_BODY, plan["kubernetes"]["namespace"])
    assert all(_valid(naming.DNS_LABEL_BODY, v) for v in plan["kubernetes"]["labels"].values())
    assert all(_valid(naming.DNS_LABEL_BODY, v) for v in plan["nodegroup"]["labels"].values())


def test_generated_identities_cover_the_edges():
    clusters = {c for c, *_ in IDENTITIES}
    assert any(len(c) == 100 for c in clusters) and any(set(c) & set(string.ascii_uppercase + "_") for c in clusters)
    assert len({n for _, _, n, _ in IDENTITIES}) > 100

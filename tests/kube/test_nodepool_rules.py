"""The NodePool rules (``llm_on_eks.kube.nodepool``, ``llm_on_eks.kube.cleanup.nodepool_decision``)
over planned sections, no servers: what a deployment's own NodePool is, when a named one fits,
and which one a teardown removes."""

from __future__ import annotations

import copy

import pytest

from llm_on_eks.inputs import Allowed
from llm_on_eks.kube.cleanup import nodepool_decision
from llm_on_eks.kube.nodepool import fit_problems, manifest
from llm_on_eks.plan import build_plan

SCOUT = {"model": "llama4-scout", "accelerator": "gpu", "region": "us-west-2", "namespace": "team-a",
         "deployment_name": "scout"}


def _plan(**extra):
    return build_plan({**SCOUT, **extra}, allowed=Allowed())


def test_the_deployments_own_nodepool_mirrors_its_node_group():
    plan = _plan()
    spec, group = plan["nodepool"], plan["nodegroup"]
    assert spec["name"] == "team-a.scout" and not spec["given"]
    made = manifest(spec)
    template = made["spec"]["template"]
    assert template["metadata"]["labels"] == group["labels"]
    assert template["spec"]["taints"] == [{"key": "nvidia.com/gpu", "value": "true", "effect": "NoSchedule"}]
    assert {"key": "node.kubernetes.io/instance-type", "operator": "In", "values": ["p5.48xlarge"]} in \
        template["spec"]["requirements"]
    assert template["spec"]["nodeClassRef"] == {"group": "eks.amazonaws.com", "kind": "NodeClass", "name": "default"}
    # One p5.48xlarge: it may launch no more than its eight GPUs.
    assert made["spec"]["limits"] == {"nvidia.com/gpu": "8"}
    assert made["metadata"]["labels"] == {"llm-on-eks.io/managed-by": "llm-on-eks",
                                          "llm-on-eks.io/deployment": "scout", "llm-on-eks.io/namespace": "team-a"}
    named = _plan(nodepool="gpu-reserved")["nodepool"]
    assert (named["name"], named["given"]) == ("gpu-reserved", True)


def _someone_elses(**spec_changes):
    pool = {"metadata": {"name": "gpu", "labels": {}},
            "spec": {"template": {"spec": {"requirements": [
                {"key": "eks.amazonaws.com/instance-family", "operator": "In", "values": ["p5", "p4d"]},
                {"key": "karpenter.sh/capacity-type", "operator": "In", "values": ["reserved", "on-demand"]}],
                "taints": [{"key": "nvidia.com/gpu", "value": "true", "effect": "NoSchedule"}]}},
                "limits": {"nvidia.com/gpu": 16, "cpu": "1000"}}}
    for path, value in spec_changes.items():
        pool["spec"]["template"]["spec"][path] = value
    return pool


@pytest.mark.parametrize(("changes", "problem"), [
    ({}, None),
    ({"requirements": [{"key": "node.kubernetes.io/instance-type", "operator": "In", "values": ["g6e.48xlarge"]}]},
     "its requirement node.kubernetes.io/instance-type In ['g6e.48xlarge'] leaves out p5.48xlarge"),
    ({"requirements": [{"key": "karpenter.k8s.aws/instance-family", "operator": "NotIn", "values": ["p5"]}]},
     "leaves out p5"),
    ({"taints": [{"key": "team", "value": "ml", "effect": "NoSchedule"}]},
     "it taints its nodes with team:NoSchedule, which the serving pods do not tolerate"),
    # A PreferNoSchedule taint keeps no pod off.
    ({"taints": [{"key": "team", "value": "ml", "effect": "PreferNoSchedule"}]}, None),
], ids=["fits", "other-instance-types", "family-excluded", "foreign-taint", "soft-taint"])
def test_a_named_nodepool_fits_or_says_why(changes, problem):
    spec = _plan(nodepool="gpu")["nodepool"]
    problems = fit_problems(_someone_elses(**changes), spec)
    assert (problem is None and problems == []) or any(problem in p for p in problems), problems


def test_a_named_nodepool_limited_below_the_deployment_is_refused():
    pool = _someone_elses()
    pool["spec"]["limits"] = {"nvidia.com/gpu": "4"}
    assert fit_problems(pool, _plan(nodepool="gpu")["nodepool"]) == [
        "its limit of 4 nvidia.com/gpu is below the 8 the deployment's nodes have"]


def test_teardown_removes_only_the_deployments_own_nodepool():
    own = manifest(_plan()["nodepool"])
    assert nodepool_decision(own, "team-a", "scout") == (True, "made for this deployment; its nodes go with it")
    other_namespace = copy.deepcopy(own)
    other_namespace["metadata"]["labels"]["llm-on-eks.io/namespace"] = "team-b"
    for found in (other_namespace, _someone_elses()):
        assert nodepool_decision(found, "team-a", "scout") == (False, "kept: not made by llm-on-eks for this "
                                                                      "deployment")
    assert nodepool_decision(None, "team-a", "scout")[0] is False

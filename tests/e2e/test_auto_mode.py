"""An EKS Auto Mode cluster adopted end to end through dag.test(): deploy_model and
teardown_deployment as dags/ builds them (tests/dags/lifecycle/lifecycle.py), on the moto server
and the local control plane, for Llama 3 8B on a g5.2xlarge.

Auto Mode's Karpenter runs in AWS's control plane; local_stack/karpenter.py stands in for it
(a kwok node per pod it can place through a NodePool). The control plane's own g5.2xlarge nodes
are cordoned meanwhile, so the serving pod can only run on a node a NodePool launched.

- No NodePool named: the deploy makes none of the managed node groups, nor the add-ons Auto Mode
  runs itself, nor a device plugin; it applies the deployment's NodePool, the pod lands on its
  node, and the teardown removes the NodePool (and with it its node).
- A NodePool named (``nodepool``): the step's check passes it as it is, and the teardown's
  cleanup keeps it.
"""

from __future__ import annotations

from contextlib import contextmanager

import pytest

from llm_on_eks.inputs import Allowed
from llm_on_eks.kube.cleanup import plan_cleanup
from llm_on_eks.kube.nodepool import ensure_nodepool
from llm_on_eks.plan import build_plan
from local_stack import karpenter
from tests.aws.test_preflight import auto_mode_cluster
from tests.dag_runs import load_dag, run_dag
from tests.integration.test_sandbox_cluster import wait_for

REGION, CLUSTER = "us-west-2", "auto-mode"
DAGS = "tests/dags/lifecycle/lifecycle.py"
GROUP, VERSION, PLURAL = "karpenter.sh", "v1", "nodepools"
NODE_CLASS = ("eks.amazonaws.com", "v1", "nodeclasses", "default")
# Another team's NodePool for g5 GPU nodes, as the EKS user guide's "Deploy an accelerated workload" writes one.
SHARED = {"apiVersion": "karpenter.sh/v1", "kind": "NodePool", "metadata": {"name": "gpu-shared"},
          "spec": {"template": {"spec": {
              "nodeClassRef": {"group": "eks.amazonaws.com", "kind": "NodeClass", "name": "default"},
              "requirements": [{"key": "eks.amazonaws.com/instance-family", "operator": "In", "values": ["g5", "g6e"]}],
              "taints": [{"key": "nvidia.com/gpu", "value": "true", "effect": "NoSchedule"}]}},
              "limits": {"nvidia.com/gpu": "4"}}}


@contextmanager
def cordoned(core, instance_type: str):
    """The control plane's own nodes of ``instance_type`` take no new pods while the block runs."""
    names = [n.metadata.name for n in core.list_node(label_selector=f"node.kubernetes.io/instance-type={instance_type},"
                                                                    "!karpenter.sh/nodepool").items]
    for name in names:
        core.patch_node(name, {"spec": {"unschedulable": True}})
    try:
        yield
    finally:
        for name in names:
            core.patch_node(name, {"spec": {"unschedulable": False}})


@pytest.fixture
def auto_mode(aws_env, sandbox_cluster, eks_access):
    """The Auto Mode cluster in moto, its default NodeClass on the control plane, and the stand-in
    Karpenter running while the test does; afterwards no NodePool of the test is left."""
    from kubernetes import client as k8s

    auto_mode_cluster(aws_env, REGION, CLUSTER)
    api = sandbox_cluster.api_client()
    custom = k8s.CustomObjectsApi(api)
    group, version, plural, name = NODE_CLASS
    custom.patch_cluster_custom_object(group, version, plural, name, {
        "apiVersion": f"{group}/{version}", "kind": "NodeClass", "metadata": {"name": name}, "spec": {}},
        field_manager="test", force=True, _content_type="application/apply-patch+yaml")
    with cordoned(k8s.CoreV1Api(api), "g5.2xlarge"), karpenter.while_running(api, deadline_s=900) as launched:
        yield custom, launched
    for pool in custom.list_cluster_custom_object(GROUP, VERSION, PLURAL)["items"]:
        custom.delete_cluster_custom_object(GROUP, VERSION, PLURAL, pool["metadata"]["name"])


def _conf(namespace: str, name: str) -> dict:
    # Weights from the hub: no staging Job, whose S3 path tests/e2e/test_teardown.py's deploys take.
    return {"model": "llama-3-8b", "accelerator": "gpu", "region": REGION, "cluster_name": CLUSTER,
            "namespace": namespace, "deployment_name": name, "smoke_test": False, "weights": "hub"}


def _deploy(namespace: str, name: str):
    result = run_dag(load_dag(DAGS, "lifecycle_deploy"), _conf(namespace, name))
    assert result.failed() == [], result.states
    return result


def _teardown(namespace: str, name: str):
    result = run_dag(load_dag(DAGS, "lifecycle_teardown"), {"deployment_name": name, "cluster_name": CLUSTER,
                                                             "region": REGION, "namespace": namespace})
    assert result.failed() == [], result.states
    return result


def _serving_node(core, namespace: str, release: str):
    pods = core.list_namespaced_pod(namespace, label_selector=f"app.kubernetes.io/instance={release}").items
    assert len(pods) == 1 and pods[0].spec.node_name, [(p.metadata.name, p.status.phase) for p in pods]
    return core.read_node(pods[0].spec.node_name).metadata.labels


def test_an_auto_mode_cluster_gets_nodepools_not_node_groups(auto_mode, sandbox_cluster, namespace, gaps):
    from kubernetes import client as k8s

    custom, launched = auto_mode
    api = sandbox_cluster.api_client()
    core = k8s.CoreV1Api(api)
    gaps.calls.clear()
    result = _deploy(namespace, "eight")
    ours = result.xcoms["provision.ensure_nodepool"]["nodepool"]
    assert result.xcoms["provision.ensure_nodepool"]["action"] == "created"
    assert result.xcoms["provision.ensure_nodegroup"]["nodegroup"] is None
    assert result.xcoms["provision.ensure_system_nodegroup"]["nodegroup"] is None
    assert result.xcoms["device_plugin"]["action"].startswith("none: EKS Auto Mode runs the device plugin")
    assert gaps.calls["eks.CreateNodegroup"] == 0
    assert {key[2] for key in gaps.addons if key[1] == CLUSTER} == {"aws-fsx-csi-driver"}
    node = _serving_node(core, namespace, "eight")
    assert node["karpenter.sh/nodepool"] == ours and node["llm-on-eks.io/deployment"] == "eight"
    assert launched == [core.list_node(label_selector=f"karpenter.sh/nodepool={ours}").items[0].metadata.name]

    removed = _teardown(namespace, "eight")
    assert {"kind": "NodePool", "name": ours} in [{k: o[k] for k in ("kind", "name")} for o in
                                                  removed.xcoms["teardown_kube.delete_cluster_objects"]["objects"]
                                                  if o["result"] == "deleted"]
    assert ours not in {p["metadata"]["name"] for p in custom.list_cluster_custom_object(GROUP, VERSION, PLURAL)["items"]}
    # Its node goes with it (the garbage collector, for Karpenter's termination).
    wait_for(lambda: not core.list_node(label_selector=f"karpenter.sh/nodepool={ours}").items, timeout_s=60,
             what=f"the nodes of NodePool {ours} removed")

    # A NodePool named in the params is checked and used as it is, and a teardown keeps it (the
    # steps' own calls, on the real CRD; the deploy and teardown around them are those above).
    custom.create_cluster_custom_object(GROUP, VERSION, PLURAL, SHARED)
    named = build_plan({**_conf(namespace, "eight"), "nodepool": "gpu-shared"}, allowed=Allowed())
    assert ensure_nodepool(api, named["nodepool"]) == {"nodepool": "gpu-shared", "action": "given: used as it is"}
    kept = plan_cleanup(api, namespace, "eight", "hf-token", "unused", "gpu-shared")[-1]
    assert (kept["kind"], kept["delete"]) == ("NodePool", False), kept

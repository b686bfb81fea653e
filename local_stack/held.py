"""The local stack with its long steps held for a set time, for the benchmarks that need a step to
last (benchmarks/critical_path.py, benchmarks/kill_steps.py): scripts/demo's parts on a control
plane of its own (``llm-on-eks-held``, so that its delayed pods touch no other cluster), with a
delaying layer standing in for AWS's and the nodes' own times. The local AWS keeps what it creates
CREATING per kind, and a deleted node group DELETING (``local_stack.aws --hold``); kwok's Stage
delays (local_stack/kwok_stages.py) keep the weight Job's pod running and the serving pods
unready. Stopped by PID at the end.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from local_stack import demo, stack
from local_stack.airflow import Api, LocalAirflow
from local_stack.aws import NODEGROUP_DELETE
from local_stack.aws_gaps import HOLD_KINDS
from local_stack.kwok_stages import write_held_stages

# The holds, in seconds: planning figures scaled down about 8x (plan/cold_start.py: an EKS cluster
# ~15 min, a p5 node group ~8 min; FSx for Lustre and the staging Job several minutes each), so a
# run takes minutes; EKS add-ons and FSx's S3 link at the local AWS's usual settle time; a node
# group's delete as long as its create.
HOLDS = {"cluster": 120.0, "nodegroup": 60.0, "fs": 60.0, "association": 20.0, "addon": 20.0, "job": 45.0,
         "rollout": 45.0, NODEGROUP_DELETE: 60.0}
CONTROL_PLANE = "llm-on-eks-held"
# What a deploy of ``deploy_conf`` leaves in the local AWS, one of each (``demo.holdings``' kinds).
ONE_EACH = ("clusters", "system node groups", "FSx file systems", "buckets", "deployment node groups")


@dataclass
class HeldStack:
    airflow: LocalAirflow
    api: Api
    aws_url: str
    identity: dict[str, str]
    kubeconfig: str
    vllm_url: str


@contextmanager
def held_stack(holds: dict[str, float], polling: bool = False, settings: dict[str, str] | None = None,
               front: Callable[[str], str] | None = None) -> Iterator[HeldStack]:
    """The stack with these holds; ``polling``: ``[operators] default_deferrable`` off, so that
    every wait polls in its worker slot; ``settings``: more Airflow settings; ``front``: given the
    control plane's kubeconfig, that of what the EKS clusters are served through (a fault proxy).
    Refused while another local stack is up."""
    state = stack.load_state()
    if state:
        raise SystemExit("a local stack is up (scripts/demo or a benchmark): scripts/demo-stop first")
    print("Holds (a delaying layer, stand-ins): " + ", ".join(f"{k} {v:.0f} s" for k, v in holds.items()))
    with tempfile.TemporaryDirectory() as workdir:
        # What it starts imports the project as scripts/env.sh makes it importable.
        os.environ["PYTHONPATH"] = os.pathsep.join([str(stack.ROOT / "plugins"), str(stack.ROOT)])
        os.environ["SANDBOX_CLUSTER_NAME"] = CONTROL_PLANE
        os.environ["SANDBOX_KWOK_STAGES"] = str(write_held_stages(Path(workdir) / "stages.yaml", holds["job"],
                                                                  holds["rollout"]))
        try:
            with demo.vllm_beside(state) as vllm:
                airflow = demo.launch_airflow(state, demo.helm_bin(), None, settings={
                    "AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE": str(not polling), **(settings or {})})
                kubeconfig = demo.ensure_control_plane(state)
                aws_url, identity = demo.ensure_aws(state, kubeconfig,
                                                    {k: holds[k] for k in (*HOLD_KINDS, NODEGROUP_DELETE)},
                                                    front(kubeconfig) if front else None)
                demo.ensure_job_markers(state, kubeconfig, aws_url)
                demo.connect_airflow(state, airflow, aws_url, identity)
                vllm.healthy.result()  # nothing beside the measured run
                vllm_url = vllm.url
            api = airflow.api()
            api.wait_for_dags(demo.DAG_ID)
            yield HeldStack(airflow, api, aws_url, identity, kubeconfig, vllm_url)
        finally:
            demo.stop()


def deploy_conf(local: HeldStack) -> dict:
    """Scout on GPU (weights staged on FSx) onto cluster ``held``, which does not exist yet."""
    conf = demo.deploy_conf({**demo.DEPLOYS["gpu"][1], "deployment_name": "scout-held"}, local.vllm_url)
    return conf | {"cluster_name": "held", "benchmark": False}


def in_the_cluster(kubeconfig: str, namespace: str, release: str) -> dict[str, int]:
    """What the API server holds of the deployment, from its own listings."""
    from kubernetes import client, config

    api = config.new_client_from_config(config_file=kubeconfig)
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    mine = f"app.kubernetes.io/instance={release}"
    return {
        "Deployments": len(apps.list_namespaced_deployment(namespace, label_selector=mine).items),
        "Services": len([s for s in core.list_namespaced_service(namespace).items if s.metadata.name == release]),
        "token Secrets": len([s for s in core.list_namespaced_secret(namespace).items if s.metadata.name == "hf-token"]),
        "Leases": len(client.CoordinationV1Api(api).list_namespaced_lease(namespace).items),
        "helm releases": len([s for s in core.list_namespaced_secret(namespace, label_selector="owner=helm").items
                              if s.metadata.labels.get("name") == release and s.metadata.labels.get("status") == "deployed"]),
    }

"""One deploy under the real scheduler with Kubernetes faults on the wire: does it end as a clean
run does?

One deploy of Scout on GPU (weights staged on FSx) onto a new cluster, on the local stack with its
long steps held (local_stack/held.py, holds scaled by ``--scale``), the EKS clusters served
through the Kubernetes fault proxy (local_stack/kube_faults.py, a stand-in for a busy or
restarting control plane): the local AWS gives the proxy's address and CA as each cluster's
endpoint, so every cluster-side call of the workers, the triggerer and helm goes through it with
its EKS token, as on EKS. Each call named in ``FAULTS`` meets its fault once: 429 with
Retry-After, 500, 503, a connection dropped before the request went on, one lost after it took
effect, an answer cut mid-body. It prints the faults met, the tries each step took (a try over one
is a fault the client's retries, the helm CLI's rerun or the step's look-again did not absorb),
the run's state and wall time, what the API server holds of the deployment (its own listings: one
release, Deployment, Service and token Secret; the Lease released) and what the local AWS holds.

    scripts/demo-stop      # if the demo is up
    .venv/bin/python benchmarks/kube_fault_run.py [--scale 0.25]
"""

from __future__ import annotations

import argparse
import sys
from contextlib import ExitStack
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "plugins")]

from local_stack import demo  # noqa: E402
from local_stack.held import HOLDS, ONE_EACH, deploy_conf, held_stack, in_the_cluster  # noqa: E402
from local_stack.kube_faults import KubeFault, KubeFaultProxy  # noqa: E402

NS = r"/namespaces/[^/]+"
# Each step's calls, one fault each (the step that makes the call first meets it).
FAULTS = [
    KubeFault("POST", r"/selfsubjectaccessreviews$", "503"),  # provision.check_access
    KubeFault("POST", rf"/apis/coordination.k8s.io/v1{NS}/leases$", "lost"),  # take_lease: made, unanswered
    KubeFault("PUT", rf"/apis/coordination.k8s.io/v1{NS}/leases/", "429"),  # a later step's renewal
    KubeFault("POST", r"^/api/v1/namespaces$", "429"),  # hf_token_secret's namespace
    KubeFault("GET", rf"{NS}/secrets/hf-token$", "503"),
    KubeFault("POST", rf"{NS}/secrets$", "lost"),  # made; the resend meets 409
    KubeFault("GET", r"/apis/apps/v1/namespaces/kube-system/daemonsets/", "500"),  # device_plugin
    KubeFault("POST", rf"/apis/batch/v1{NS}/jobs$", "drop"),  # the staging Job
    KubeFault("GET", rf"/apis/batch/v1{NS}/jobs/", "cut"),  # its wait
    KubeFault("GET", rf"/apis/apps/v1{NS}/deployments/", "cut"),  # helm's read, then wait_ready
    KubeFault("GET", rf"/api/v1{NS}/pods\?", "500"),  # wait_ready
    KubeFault("GET", rf"/api/v1{NS}/services/[^/]+$", "503"),  # smoke_test finds the Service
]
REGION = demo.DEPLOYS["gpu"][1]["region"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=0.25, help="multiplies every hold")
    args = parser.parse_args()
    holds = {kind: seconds * args.scale for kind, seconds in HOLDS.items()}
    with ExitStack() as stack:
        proxies: list[KubeFaultProxy] = []

        def front(kubeconfig: str) -> str:
            proxies.append(stack.enter_context(KubeFaultProxy(kubeconfig, FAULTS, client_certificate=False)))
            return proxies[0].kubeconfig

        local = stack.enter_context(held_stack(holds, front=front))
        conf = deploy_conf(local)
        dag_run, tis = demo.run_to_end(local.api, "faults", demo.DAG_ID, conf)
        (proxy,) = proxies
        print(f"\nrun {dag_run['dag_run_id']}: {dag_run['state']} in {demo.wall_s(dag_run):.0f} s "
              f"with {len(proxy.injected)} of {len(FAULTS)} faults met")
        for request, kind in proxy.injected:
            print(f"  {kind:<5} {request}")
        unmet = [f"{f.method} {f.path} ({f.kind})" for f, left in zip(proxy.faults, proxy.left, strict=True) if left]
        print("  not met: " + (", ".join(unmet) or "none"))
        retried = {ti["task_id"]: ti["try_number"] for ti in tis if (ti.get("try_number") or 0) > 1}
        print("  steps that took more than one try: "
              + (", ".join(f"{task} ({tries})" for task, tries in sorted(retried.items())) or "none"))
        held = in_the_cluster(local.kubeconfig, conf["namespace"], conf["deployment_name"])
        # One of each; the Lease went with the run's release_lease.
        one_each = held == {**dict.fromkeys(held, 1), "Leases": 0}
        print("  the API server holds: " + ", ".join(f"{n} {k}" for k, n in held.items())
              + (" (one of each, the Lease released)" if one_each else ""))
        aws = demo.holdings(local.aws_url, local.identity, REGION, conf["cluster_name"])
        aws_one_each = all(len(aws[kind]) == 1 for kind in ONE_EACH)
        print("  the local AWS holds: " + ", ".join(f"{len(v)} {k}" for k, v in aws.items())
              + (" (one of each)" if aws_one_each else ""))
        return 0 if dag_run["state"] == "success" and one_each and aws_one_each else 1


if __name__ == "__main__":
    raise SystemExit(main())

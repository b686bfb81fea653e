"""One deploy under the real scheduler with AWS faults on the wire: does it end as a clean run
does, and what do the faults cost?

One deploy of Scout on GPU (weights staged on FSx) onto a new cluster, on the local stack with its
long steps held (local_stack/held.py, holds scaled by ``--scale``), its AWS connection going through
the fault proxy (local_stack/aws_faults.py, a stand-in) with the provider's default retries, as a
user's connection has them. Every create the steps send over the wire has its first answer lost
after it took effect, then its resend meets a passing fault; every read named in READS meets one;
kinds rotate over throttling, 500, 503, a slow answer and a dropped connection (``--seed`` fixes
the draws; ``--probability`` below 1 spreads them). The triggerer's deferred waits and the
workers' calls meet them alike. It prints the faults each operation met, the tries each step
took (a try over one is a fault botocore's retries did not absorb), the run's state and wall
time, and what the local AWS holds in its own listings: one cluster, system node group, file
system and bucket, and the deployment's node group, or the run is counted a failure.

    scripts/demo-stop      # if the demo is up
    .venv/bin/python benchmarks/aws_fault_run.py [--scale 0.25] [--seed 7] [--probability 1]
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "plugins")]

from local_stack import demo  # noqa: E402
from local_stack.airflow import connections  # noqa: E402
from local_stack.aws_faults import AwsFaultProxy, Fault  # noqa: E402
from local_stack.held import HOLDS, ONE_EACH, deploy_conf, held_stack  # noqa: E402

CREATES = ("ec2.CreateVpc", "ec2.CreateSubnet", "ec2.CreateInternetGateway", "ec2.AllocateAddress",
           "ec2.CreateNatGateway", "ec2.CreateRouteTable", "iam.CreateRole", "eks.CreateCluster",
           "eks.CreateNodegroup", "s3.CreateBucket", "fsx.CreateFileSystem", "eks.CreateAddon",
           "fsx.CreateDataRepositoryAssociation")
READS = ("ec2.DescribeVpcs", "ec2.DescribeSubnets", "iam.GetRole", "eks.DescribeCluster", "eks.DescribeNodegroup",
         "eks.DescribeAddon", "s3.HeadBucket", "fsx.DescribeFileSystems", "servicequotas.GetServiceQuota")
PASSING = ("throttle", "500", "503", "slow", "drop")
REGION = demo.DEPLOYS["gpu"][1]["region"]


def faults(probability: float) -> list[Fault]:
    passing = itertools.cycle(PASSING)
    return [*(Fault(operation, "lost", probability=probability) for operation in CREATES),
            *(Fault(operation, next(passing), probability=probability, delay_s=3.0)
              for operation in (*CREATES, *READS))]


def through(local, proxy: AwsFaultProxy) -> None:
    """The local profile's connections, the AWS one through the proxy with the provider's default
    retries (the local profile's single attempt would make every fault a failed try)."""
    profile = connections(proxy.base_url, local.identity)
    extra = json.loads(profile["aws_default"]["extra"])
    extra.pop("config_kwargs")
    profile["aws_default"]["extra"] = json.dumps(extra)
    local.api.save_connections(profile)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=0.25, help="multiplies every hold")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--probability", type=float, default=1.0, help="each fault's chance per matching request")
    args = parser.parse_args()
    holds = {kind: seconds * args.scale for kind, seconds in HOLDS.items()}
    with held_stack(holds) as local:
        planned = faults(args.probability)
        with AwsFaultProxy(local.aws_url, planned, seed=args.seed) as proxy:
            through(local, proxy)
            dag_run, tis = demo.run_to_end(local.airflow, local.api, "faults", demo.DAG_ID, deploy_conf(local))
        print(f"\nrun {dag_run['dag_run_id']}: {dag_run['state']} in {demo.wall_s(dag_run):.0f} s "
              f"with {len(proxy.injected)} of {len(planned)} faults met")
        met: dict[str, Counter] = {}
        for operation, kind in proxy.injected:
            met.setdefault(operation, Counter())[kind] += 1
        print(f"  {'operation':<40} {'requests':>8}  faults met")
        for operation in sorted(set(proxy.seen) | set(met)):
            if operation in met:
                kinds = ", ".join(f"{kind} x{n}" if n > 1 else kind for kind, n in sorted(met[operation].items()))
                print(f"  {operation:<40} {proxy.seen[operation]:>8}  {kinds}")
        retried = {ti["task_id"]: ti["try_number"] for ti in tis if (ti.get("try_number") or 0) > 1}
        print("  steps that took more than one try: "
              + (", ".join(f"{task} ({tries})" for task, tries in sorted(retried.items())) or "none"))
        held = demo.holdings(local.aws_url, local.identity, REGION)
        one_each = all(len(held[kind]) == 1 for kind in ONE_EACH)
        print("  the local AWS holds: " + ", ".join(f"{len(v)} {k}" for k, v in held.items())
              + (" (one of each)" if one_each else f": {held}"))
        return 0 if dag_run["state"] == "success" and one_each else 1


if __name__ == "__main__":
    raise SystemExit(main())

"""What deploying an already-serving deployment again costs: every AWS and Kubernetes request that
creates or changes something, counted from what the servers received (the moto server's request
log, local_stack/request_log.py, and the API server's own counter apiserver_request_total), not
from our code's view; and the run's wall time beside the deployment's first deploy.

Runs on the local stack that scripts/demo leaves up (its state file names the parts):

    scripts/demo
    .venv/bin/python benchmarks/redeploy_cost.py [--runs N]

It deploys the demo's Llama 3 8B (llama3-gpu) with the demo's own conf. When the idle teardown
has removed it meanwhile, the first run makes it serve again and is not counted. Then it counts
``--runs`` deploys of the serving deployment, one after another (default 2).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "plugins")]

from local_stack import changes, stack  # noqa: E402
from local_stack.airflow import Api, LocalAirflow  # noqa: E402
from local_stack.demo import DEPLOYS, MODEL_DAG_ID, deploy_conf, run_to_end, wall_s  # noqa: E402

LABEL = "llama3"
DEPLOYMENT = DEPLOYS[LABEL][1]["deployment_name"]


def first_deploy_s(api: Api) -> float | None:
    """The deployment's first successful deploy run's duration, from Airflow's own records."""
    runs = api.get(f"/api/v2/dags/{MODEL_DAG_ID}/dagRuns?order_by=start_date&limit=100")["dag_runs"]
    for run in runs:
        if run["state"] == "success" and (run.get("conf") or {}).get("deployment_name") == DEPLOYMENT:
            return wall_s(run)
    return None


def serving(aws_url: str, identity: dict) -> bool:
    from local_stack.demo import holdings

    region = DEPLOYS[LABEL][1]["region"]
    return any(DEPLOYMENT in name for name in holdings(aws_url, identity, region)["deployment node groups"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2)
    args = parser.parse_args()
    state = stack.load_state()
    if "airflow" not in state or not stack.alive(state["aws"].get("pid")):
        print("no local stack: run scripts/demo first", file=sys.stderr)
        return 2
    airflow = LocalAirflow.from_state(state["airflow"])
    api = airflow.api()
    aws_url, identity = state["aws"]["url"], state["aws"]["identity"]
    kubeconfig = stack.sandbox("kubeconfig").stdout.strip()
    conf = deploy_conf(DEPLOYS[LABEL][1], state["vllm"]["url"])
    if not serving(aws_url, identity):
        print(f"{DEPLOYMENT} was removed (the idle teardown): deploying it again first, not counted")
        dag_run, _ = run_to_end(api, "first", MODEL_DAG_ID, conf)
        print(f"  {dag_run['state']} in {wall_s(dag_run):.0f} s")
    first = first_deploy_s(api)
    print(f"first deploy of {DEPLOYMENT} (Airflow's record): {first:.0f} s" if first else "first deploy: not found")
    for n in range(1, args.runs + 1):
        with changes.counting(aws_url, kubeconfig, identity["access_key_id"]) as made:
            dag_run, _ = run_to_end(api, f"again{n}", MODEL_DAG_ID, conf)
        seconds = wall_s(dag_run)
        share = f", {seconds / first:.0%} of the first deploy" if first else ""
        print(f"\nre-deploy {n}: {dag_run['state']} in {seconds:.0f} s{share}")
        for line in made.lines():
            print(f"  {line}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

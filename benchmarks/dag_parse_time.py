"""Parse-time budget: load every DAG file with a fresh DagBag and print cold and warm times.

Cold: a new interpreter per file, so module imports (Airflow, our package, anything the DAG
file pulls in at top level) are paid, as the dag-processor pays them after a restart.
Warm: the same file parsed again in that interpreter, as on every later parse loop.
Baseline: a DAG file of the same shape (the same task ids, dependencies and params) made of
EmptyOperators, written and parsed warm in the same interpreter; ``x baseline`` is the warm
median over the baseline's: what our operators, factory and catalog add to a parse.

    scripts/bench-parse            # or: python benchmarks/dag_parse_time.py [repeats]
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DAGS = sorted((ROOT / "dags").glob("*.py"))

# The baseline DAG file: the shape of each DAG the parsed file holds (SPEC), in EmptyOperators.
_BASELINE = """
import json
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG, Param
for spec in json.loads(SPEC):
    params = {k: Param(p["value"], description=p["description"], **p["schema"]) for k, p in spec["params"].items()}
    with DAG(spec["dag_id"] + "_baseline", schedule=None, params=params):
        ops = {t: EmptyOperator(task_id=t) for t in spec["tasks"]}
        for up, down in spec["edges"]:
            ops[up] >> ops[down]
"""

_PROBE = r"""
import json, sys, tempfile, time
from pathlib import Path
t0 = time.perf_counter()
from airflow.dag_processing.dagbag import DagBag
t1 = time.perf_counter()
bag = DagBag(dag_folder=sys.argv[1])
t2 = time.perf_counter()

def warm(path):
    times = []
    for _ in range(int(sys.argv[2])):
        start = time.perf_counter()
        DagBag(dag_folder=path)
        times.append(time.perf_counter() - start)
    return times

spec = [{"dag_id": dag.dag_id, "tasks": [t.task_id for t in dag.tasks],
         "edges": [[t.task_id, d] for t in dag.tasks for d in sorted(t.downstream_task_ids)],
         "params": {k: {"value": p.value, "description": p.description, "schema": p.schema}
                    for k, p in dag.params.items()}} for dag in bag.dags.values()]
baseline = Path(tempfile.mkdtemp()) / "baseline.py"
baseline.write_text(f"SPEC = {json.dumps(json.dumps(spec, default=str))}\n" + sys.argv[3])
print(json.dumps({"airflow_import": t1 - t0, "cold": t2 - t1, "warm": warm(sys.argv[1]),
                  "baseline": warm(str(baseline)), "dags": sorted(bag.dag_ids),
                  "errors": {k: str(v)[:300] for k, v in bag.import_errors.items()}}))
"""


def main(repeats: int = 5) -> int:
    print(f"{'file':<28} {'dags':<28} {'airflow import s':>16} {'cold s':>8} {'warm median s':>14} {'warm max s':>10} "
          f"{'baseline s':>10} {'x baseline':>10}")
    failed = False
    for path in DAGS:
        out = subprocess.run([sys.executable, "-c", _PROBE, str(path), str(repeats), _BASELINE],
                             check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
        result = json.loads(out)
        failed |= bool(result["errors"])
        warm, baseline = statistics.median(result["warm"]), statistics.median(result["baseline"])
        print(f"{path.name:<28} {','.join(result['dags']):<28} {result['airflow_import']:>16.3f} "
              f"{result['cold']:>8.3f} {warm:>14.3f} {max(result['warm']):>10.3f} {baseline:>10.3f} "
              f"{warm / baseline:>10.2f}")
        for file, error in result["errors"].items():
            print(f"  import error in {file}: {error}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(*(int(a) for a in sys.argv[1:])))

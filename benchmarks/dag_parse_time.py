"""Parse-time budget: load every DAG file with a fresh DagBag and print cold and warm times.

Cold: a new interpreter per file, so module imports (Airflow, our package, anything the DAG
file pulls in at top level) are paid, as the dag-processor pays them after a restart.
Warm: the same file parsed again in that interpreter, as on every later parse loop.

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

_PROBE = r"""
import json, sys, time
t0 = time.perf_counter()
from airflow.dag_processing.dagbag import DagBag
t1 = time.perf_counter()
bag = DagBag(dag_folder=sys.argv[1])
t2 = time.perf_counter()
warm = []
for _ in range(int(sys.argv[2])):
    start = time.perf_counter()
    again = DagBag(dag_folder=sys.argv[1])
    warm.append(time.perf_counter() - start)
print(json.dumps({"airflow_import": t1 - t0, "cold": t2 - t1, "warm": warm,
                  "dags": sorted(bag.dag_ids), "errors": {k: str(v)[:300] for k, v in bag.import_errors.items()}}))
"""


def main(repeats: int = 5) -> int:
    print(f"{'file':<28} {'dags':<28} {'airflow import s':>16} {'cold s':>8} {'warm median s':>14} {'warm max s':>10}")
    failed = False
    for path in DAGS:
        out = subprocess.run([sys.executable, "-c", _PROBE, str(path), str(repeats)],
                             check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
        result = json.loads(out)
        failed |= bool(result["errors"])
        print(f"{path.name:<28} {','.join(result['dags']):<28} {result['airflow_import']:>16.3f} "
              f"{result['cold']:>8.3f} {statistics.median(result['warm']):>14.3f} {max(result['warm']):>10.3f}")
        for file, error in result["errors"].items():
            print(f"  import error in {file}: {error}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(*(int(a) for a in sys.argv[1:])))

"""Run a DAG with `dag.test()` and read back what happened: task states and XComs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class DagRunResult:
    run_id: str
    state: str
    states: dict[str, str]
    xcoms: dict[str, Any]

    def failed(self) -> list[str]:
        return sorted(task for task, state in self.states.items() if state in ("failed", "upstream_failed"))


def load_dag(path: str, dag_id: str):
    """A fresh DAG object from ``path`` (relative to the repository root): the way Airflow loads
    it, and fresh because ``dag.test()`` leaves a run's conf in the DAG's params.

    The file's DAGs are also written to the metadata DB under the bundle that holds them: a
    dag.test() of a DAG the DB does not know yet walks every bundle, parsing and serializing
    each, until it finds it (apache/airflow#64884); one it knows re-syncs only its own bundle."""
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import DagBag, sync_bag_to_db

    from tests.conftest import ROOT

    folder = (ROOT / path).parent
    manager = DagBundlesManager()
    (bundle,) = [b for b in manager.get_all_dag_bundles() if Path(b.path) == folder]
    bag = DagBag(dag_folder=str(ROOT / path), bundle_path=folder, bundle_name=bundle.name)
    assert not bag.import_errors, bag.import_errors
    manager.sync_bundles_to_db()
    sync_bag_to_db(bag, bundle.name, None)
    return bag.dags[dag_id]


def run_dag(dag, conf: dict[str, Any] | None = None) -> DagRunResult:
    """Run ``dag`` in-process (triggers included) and collect states and return values."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    dag_run = dag.test(run_conf=conf or {})
    with create_session() as session:
        states = {ti.task_id: str(ti.state) for ti in dag_run.get_task_instances(session=session)}
        rows = session.query(XComModel).filter(
            XComModel.dag_id == dag.dag_id, XComModel.run_id == dag_run.run_id, XComModel.key == "return_value"
        )
        xcoms = {row.task_id: XComModel.deserialize_value(row) for row in rows}
    return DagRunResult(run_id=dag_run.run_id, state=str(dag_run.state), states=states, xcoms=xcoms)

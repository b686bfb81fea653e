"""Run a DAG with `dag.test()` and read back what happened: task states and XComs."""

from __future__ import annotations

import copy
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock


@dataclass
class DagRunResult:
    run_id: str
    state: str
    states: dict[str, str]
    xcoms: dict[str, Any]

    def failed(self) -> list[str]:
        return sorted(task for task, state in self.states.items() if state in ("failed", "upstream_failed"))


# One parse, one metadata-DB sync and one serialization per test DAG file and pytest run: each
# was about a third of an AWS test's time (the deploy DAGs carry 38 params into each of their
# operators, and serializing validates every copy).
_BAGS: dict[str, Any] = {}
_SERIALIZED: dict[tuple[str, str], dict[str, Any]] = {}


def load_dag(path: str, dag_id: str):
    """A fresh copy of DAG ``dag_id`` from ``path`` (relative to the repository root): parsed the
    way Airflow loads it, once per pytest run, and copied because ``dag.test()`` leaves a run's
    conf in the DAG's params.

    The file's DAGs are also written to the metadata DB under the bundle that holds them, once: a
    dag.test() of a DAG the DB does not know yet walks every bundle, parsing and serializing
    each, until it finds it (apache/airflow#64884)."""
    bag = _BAGS.get(path)
    if bag is None:
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
        _BAGS[path] = bag
    return _fresh(bag.dags[dag_id])


def _fresh(dag):
    """A copy of ``dag`` that shares no Param object with it: dag.test() writes a run's conf into
    the Param objects it resolves (the DAG's and its tasks'), and BaseOperator's deepcopy shares
    a task's (``params`` is one of its shallow-copy attributes)."""
    copied = copy.deepcopy(dag)
    for task in copied.tasks:
        task.params = copy.deepcopy(task.params)
    return copied


@contextmanager
def _synced_once() -> Iterator[None]:
    """dag.test() as it runs, without what load_dag already did once for the file: it re-parses
    and re-syncs the DAG's whole bundle on every call (for sibling DAGs a TriggerDagRunOperator
    may start, apache/airflow#64884; ours start none) and serializes the DAG again (every copy
    of a file's DAG serializes the same), and with its idle passes short."""
    from airflow.dag_processing import dagbag
    from airflow.sdk import DAG
    from airflow.serialization.serialized_objects import DagSerialization

    serialize = DagSerialization.serialize_dag
    sleep = time.sleep

    def short_poll(seconds):
        # dag.test() sleeps a second whenever a pass of its loop has nothing to run, which is
        # every pass while a failure's upstream_failed marks spread, one level per pass: 15 s of
        # a preflight refusal's 20. Its own sleeps only; a task's polls keep their intervals.
        sleep(min(seconds, 0.05) if sys._getframe(1).f_code is DAG.test.__code__ else seconds)

    def serialize_once(dag):
        key = (dag.fileloc, dag.dag_id)
        if key not in _SERIALIZED:
            _SERIALIZED[key] = serialize(dag)
        return copy.deepcopy(_SERIALIZED[key])

    with (mock.patch.object(dagbag, "BundleDagBag", lambda **_: None),
          mock.patch.object(dagbag, "sync_bag_to_db", lambda *_: None),
          mock.patch.object(DagSerialization, "serialize_dag", serialize_once),
          mock.patch.object(time, "sleep", short_poll)):
        yield


def run_dag(dag, conf: dict[str, Any] | None = None) -> DagRunResult:
    """Run ``dag`` in-process (triggers included) and collect states and return values."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with _synced_once():
        # On a copy: a second run of the same DAG object would start from the first one's conf.
        dag_run = _fresh(dag).test(run_conf=conf or {})
    with create_session() as session:
        states = {ti.task_id: str(ti.state) for ti in dag_run.get_task_instances(session=session)}
        rows = session.query(XComModel).filter(
            XComModel.dag_id == dag.dag_id, XComModel.run_id == dag_run.run_id, XComModel.key == "return_value"
        )
        xcoms = {row.task_id: XComModel.deserialize_value(row) for row in rows}
    return DagRunResult(run_id=dag_run.run_id, state=str(dag_run.state), states=states, xcoms=xcoms)

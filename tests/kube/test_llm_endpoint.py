"""``llm_endpoint`` on the local control plane, on a deployment that serves: the consumer run
adopts it (no deploy run), holds it while its tasks run, and releases it at the end; while
another run holds it a teardown refuses and the release leaves it; the last holder out starts
the teardown. (Bringing a deployment up through deploy_model is scripts/demo's, under the real
scheduler: dag.test() runs no second DAG.)"""

from __future__ import annotations

import pytest

from llm_on_eks.kube.holds import drop_hold, live_holds
from llm_on_eks.kube.lease import read
from tests.dag_runs import load_dag, run_dag

STEPS = "tests/dags/cluster_steps/llm_endpoint_steps.py"
GROUP = "llm_endpoint"
OTHER = "nightly_batch/scheduled__2026-12-03T02:00:00+00:00"


@pytest.fixture
def serving(sandbox_cluster, cluster_conf):
    """llama3 deployed and ready in the test's namespace, as a deploy run leaves it."""
    result = run_dag(load_dag("tests/dags/cluster_steps/cluster_steps.py", "test_cluster_steps"), cluster_conf)
    assert result.state == "success", result.states
    return cluster_conf


def _teardown_runs(deployment: str) -> list:
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session

    from tests.dags.cluster_steps.llm_endpoint_steps import TEARDOWN_DAG_ID

    with create_session() as session:
        return [run.conf for run in session.query(DagRun).filter(DagRun.dag_id == TEARDOWN_DAG_ID)
                if (run.conf or {}).get("deployment_name") == deployment]


def _consumer_events(dag_id: str) -> list[dict]:
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session

    with create_session() as session:
        events = session.query(AssetEvent).join(AssetModel, AssetEvent.asset_id == AssetModel.id).filter(
            AssetModel.name == "llm_deployments")
        return [e.extra for e in events if (e.extra or {}).get("consumer") == dag_id]


def test_a_consumer_adopts_holds_and_releases_and_never_pulls_it_from_another(sandbox_cluster, serving, capfd):
    from tests.dags.cluster_steps.llm_endpoint_steps import DAG_ID, TEARDOWN_DAG_ID

    api, namespace = sandbox_cluster.api_client(), serving["namespace"]
    deploy = {k: serving[k] for k in ("accelerator", "kubernetes_conn_id", "namespace", "deployment_name")}
    consumer = load_dag(STEPS, DAG_ID)

    # Two consumers at once: this run, and OTHER taking its hold while this one works.
    first = run_dag(consumer, {"deploy": deploy, "also_held_by": OTHER})
    assert first.state == "success", first.states
    assert first.xcoms[f"{GROUP}.hold"]["adopt"], first.xcoms[f"{GROUP}.hold"]
    assert first.states[f"{GROUP}.deploy"] == "skipped"  # serving with these values: no deploy run
    assert first.xcoms[f"{GROUP}.endpoint"]["model"] == "meta-llama/Meta-Llama-3-8B-Instruct"
    used = first.xcoms[f"{GROUP}.use"]
    assert sorted(used["holds"]) == sorted([f"{DAG_ID}/{first.run_id}", OTHER])
    assert used["next_run"].endswith("T02:00:00+00:00")  # what the idle judge and the warm-up read
    (record,) = _consumer_events(DAG_ID)  # this DAG declared its use of the deployment
    assert (record["deployment"], record["namespace"], record["conf"]["deployment_name"]) == ("llama3", namespace,
                                                                                            "llama3")
    assert record["cold_start_s"] > 0 and record["keep_within_minutes"] == -(-record["cold_start_s"] // 60)
    # Released: only OTHER holds it, so no teardown started; the Lease the check took is free.
    assert [h.holder for h in live_holds(api, namespace, "llama3")] == [OTHER]
    assert _teardown_runs("llama3") == [] and read(api, namespace, "llama3") is None

    # A teardown now refuses, names the holder and leaves the Lease free.
    refused = run_dag(load_dag(STEPS, TEARDOWN_DAG_ID), {k: serving[k] for k in (
        "deployment_name", "namespace", "kubernetes_conn_id")})
    assert refused.states["take_lease"] == "failed", refused.states
    assert f"llama3 is in use by {OTHER} (until " in capfd.readouterr().out
    assert read(api, namespace, "llama3") is None

    # OTHER ends; the next consumer run adopts again, and as the last holder out starts the teardown.
    assert drop_hold(api, namespace, "llama3", OTHER) == "released"
    second = run_dag(consumer, {"deploy": deploy})
    assert second.state == "success", second.states
    assert second.states[f"{GROUP}.deploy"] == "skipped"
    assert len(_consumer_events(DAG_ID)) == 2
    assert live_holds(api, namespace, "llama3") == []
    (started,) = _teardown_runs("llama3")
    assert started["namespace"] == namespace and started["kubernetes_conn_id"] == "sandbox_k8s"

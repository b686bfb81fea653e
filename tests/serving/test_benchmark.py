"""The benchmark task through dag.test() against the real vLLM server: the table in the log,
the numbers in XCom and on the release's Service, and a missed SLO failing the run."""

from __future__ import annotations

import json

from tests.dag_runs import run_dag
from tests.serving.conftest import release_service
from tests.serving.test_smoke import _dag

BENCH = {"benchmark": True, "benchmark_concurrency": 2, "benchmark_num_prompts": 6, "benchmark_input_len": 32,
         "benchmark_output_len": 16}


def _conf(scout_conf, namespace: str, **extra) -> dict:
    return {**scout_conf, **BENCH, "smoke_test": False, "kubernetes_conn_id": "sandbox_k8s", "namespace": namespace,
            "deployment_name": "scout", **extra}


def _annotation(sandbox_cluster, namespace: str) -> dict:
    from kubernetes import client

    from llm_on_eks.operators.serving_checks import BENCHMARK_ANNOTATION

    service = client.CoreV1Api(sandbox_cluster.api_client()).read_namespaced_service("scout", namespace)
    return json.loads(service.metadata.annotations[BENCHMARK_ANNOTATION])


def test_benchmark_reports_and_records(vllm_server, scout_conf, sandbox_cluster, sandbox_namespace, capfd):
    from kubernetes import client

    client.CoreV1Api(sandbox_cluster.api_client()).create_namespaced_service(sandbox_namespace,
                                                                            release_service("scout"))
    result = run_dag(_dag(), _conf(scout_conf, sandbox_namespace))
    assert result.state == "success", result.states
    assert result.states["smoke_test"] == "skipped"
    summary = result.xcoms["benchmark"]
    assert summary["requests"] == 6 and summary["concurrency"] == 2
    # ignore_eos + min_tokens: every request produced exactly output_len tokens.
    assert summary["output_throughput_tok_s"] > 0
    assert abs(summary["output_throughput_tok_s"] * summary["duration_s"] - 6 * 16) < 0.5
    for key in ("ttft_ms", "itl_ms", "tpot_ms", "e2e_ms", "output_tokens_per_s"):
        row = summary[key]
        assert 0 < row["p50"] <= row["p99"], (key, row)
    assert summary["ttft_ms"]["p99"] <= summary["e2e_ms"]["p99"]
    assert summary["slo_met"] is None and summary["recorded_on"] == f"service/{sandbox_namespace}/scout"
    out = capfd.readouterr().out
    assert "TTFT (ms)" in out and "ITL (ms)" in out and "output throughput" in out
    recorded = _annotation(sandbox_cluster, sandbox_namespace)
    assert recorded["ttft_ms"] == summary["ttft_ms"] and recorded["requests"] == 6


def test_missed_slo_fails_the_run_and_keeps_the_numbers(vllm_server, scout_conf, sandbox_cluster,
                                                        sandbox_namespace, capfd):
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from kubernetes import client

    client.CoreV1Api(sandbox_cluster.api_client()).create_namespaced_service(sandbox_namespace,
                                                                            release_service("scout"))
    result = run_dag(_dag(), _conf(scout_conf, sandbox_namespace, benchmark_slo_p99_ttft_ms=0.001))
    assert result.states["benchmark"] == "failed"
    out = capfd.readouterr()
    assert "misses the SLO of 0.001 ms" in out.out + out.err and "TTFT (ms)" in out.out
    with create_session() as session:
        row = session.query(XComModel).filter(XComModel.dag_id == "test_serving_steps", XComModel.key == "benchmark",
                                              XComModel.task_id == "benchmark").order_by(XComModel.timestamp.desc()).first()
        kept = XComModel.deserialize_value(row)
    assert kept["slo_met"] is False and kept["requests"] == 6 and kept["slo_p99_ttft_ms"] == 0.001
    assert _annotation(sandbox_cluster, sandbox_namespace)["slo_met"] is False

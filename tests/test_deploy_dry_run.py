"""deploy_llama4 as a dry run through dag.test(): every step describes itself, nothing is created."""

from __future__ import annotations

import json

import pytest

from tests.dag_runs import load_dag, run_dag

LLAMA4 = [(m, a) for m in ("llama4-scout", "llama4-maverick") for a in ("gpu", "neuron")]
WEIGHT_STEP = {"gpu": "prepare_weights.stage_to_fsx", "neuron": "prepare_weights.neuron_compile"}


@pytest.fixture
def deploy_llama4(airflow_db):
    return load_dag("dags/deploy_llama4.py", "deploy_llama4")


@pytest.mark.parametrize(("model", "accelerator"), LLAMA4)
def test_dry_run_describes_every_step(deploy_llama4, model, accelerator):
    result = run_dag(deploy_llama4, {"model": model, "accelerator": accelerator, "dry_run": True, "benchmark": True})
    assert result.state == "success", result.states
    plan = result.xcoms["plan_deployment"]
    assert plan["dry_run"] and plan["model"]["id"] == model and plan["profile"]["accelerator"] == accelerator

    chosen = WEIGHT_STEP[accelerator]
    skipped = set(WEIGHT_STEP.values()) - {chosen} | {"prepare_weights.weights_from_hub"}
    assert {t: result.states[t] for t in skipped} == {t: "skipped" for t in skipped}

    steps = [t for t, v in result.xcoms.items() if isinstance(v, dict) and v.get("dry_run") is True]
    for step in ("device_plugin", "hf_token_secret", chosen, "helm_deploy", "wait_ready", "smoke_test", "benchmark"):
        assert step in steps, (step, sorted(result.xcoms))
        assert result.xcoms[step]["would"], step
    # the AWS groups describe the calls they would make
    assert any(t.startswith("provision.") for t in steps) and any(t.startswith("storage.") for t in steps)
    helm = json.dumps(result.xcoms["helm_deploy"])
    repository, tag = plan["profile"]["image"].rsplit(":", 1)
    assert repository in helm and tag in helm and str(plan["profile"]["max_model_len"]) in helm
    assert "hf_" not in helm and "<redacted>" in json.dumps(result.xcoms["hf_token_secret"])
    plugin = {o["kind"]: o for o in result.xcoms["device_plugin"]["would"]["apply"]}["DaemonSet"]
    assert plugin["spec"]["template"]["spec"]["nodeSelector"] == {"llm-on-eks.io/accelerator": accelerator}
    assert result.xcoms["register"]["deployment"] == plan["deployment"]


def test_bad_conf_fails_in_plan_and_nothing_runs(deploy_llama4):
    result = run_dag(deploy_llama4, {"accelerator": "gpu", "tensor_parallel_size": 3, "dry_run": True})
    assert result.state == "failed"
    assert result.states["plan_deployment"] == "failed"
    assert all(state in ("upstream_failed", "None", "skipped") for task, state in result.states.items()
               if task != "plan_deployment"), result.states

"""The cluster triggers serialize ids only (never the plan) and rebuild from what they serialize,
as the triggerer does after a restart."""

from __future__ import annotations

import importlib
import json

import pytest

from llm_on_eks.plan import build_plan
from llm_on_eks.triggers.kube import JobCompleteTrigger, ReleaseReadyTrigger


@pytest.fixture(scope="module")
def access():
    return build_plan({"model": "llama4-scout", "accelerator": "neuron", "region": "us-east-2"})["target"]["access"]


@pytest.mark.parametrize("make", [
    lambda access: JobCompleteTrigger(access=access, job_name="scout-compile-1", deadline=1.0, budget_s=60),
    lambda access: ReleaseReadyTrigger(access=access, release="scout", multi_node=True, deadline=1.0, budget_s=60),
], ids=["job", "release"])
def test_round_trip_carries_ids_only(access, make):
    trigger = make(access)
    classpath, kwargs = trigger.serialize()
    assert len(json.dumps(kwargs)) < 600, kwargs  # ids, not a plan
    assert set(kwargs["access"]) == {"kubernetes_conn_id", "aws_conn_id", "region", "cluster", "namespace"}
    module, _, name = classpath.rpartition(".")
    rebuilt = getattr(importlib.import_module(module), name)(**kwargs)
    assert rebuilt.serialize() == (classpath, kwargs)

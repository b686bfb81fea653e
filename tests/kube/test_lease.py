"""The deployment's Lease on the local control plane: of two runs racing for it exactly one wins,
the loser's error names the holder, a stale Lease is taken over, releasing frees it, and a run
whose Lease was taken over cannot renew it."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest

from llm_on_eks.kube.lease import LeaseHeld, acquire, read, release, renew, try_acquire
from llm_on_eks.naming import lease_name

DEPLOYMENT = "scout"
DEPLOYER, TEARER = "deploy_llama4/manual__a", "teardown_deployment/manual__b"
DEPLOY, TEARDOWN = "deploy", "teardown"


def test_two_runs_race_and_exactly_one_wins(sandbox_cluster, namespace):
    contenders = [f"deploy_model/manual__{i}" for i in range(2)] + [f"teardown_deployment/manual__{i}" for i in range(2)]
    start, outcomes = threading.Barrier(len(contenders)), {}

    def contend(me: str) -> None:
        api = sandbox_cluster.api_client()
        start.wait()
        outcomes[me] = try_acquire(api, namespace, DEPLOYMENT, me, DEPLOY, 300)[0].step

    threads = [threading.Thread(target=contend, args=(me,)) for me in contenders]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    (winner,) = [me for me, step in outcomes.items() if step == "create"]
    assert sorted(outcomes.values()) == ["create", "wait", "wait", "wait"]
    assert read(sandbox_cluster.api_client(), namespace, DEPLOYMENT).holder == winner


def test_parallel_steps_of_the_holding_run_all_renew(sandbox_cluster, namespace):
    """Steps of one run that start together (the node groups, the bucket) each renew the Lease;
    the writes that lose to a sibling's are tried again (seen on the demo: a 409 failed one)."""
    acquire(sandbox_cluster.api_client(), namespace, DEPLOYMENT, DEPLOYER, DEPLOY, 300, wait_s=0)
    steps = 4
    start, outcomes = threading.Barrier(steps), []

    def step() -> None:
        api = sandbox_cluster.api_client()
        start.wait()
        outcomes.append(renew(api, namespace, DEPLOYMENT, DEPLOYER, DEPLOY, 600).step)

    threads = [threading.Thread(target=step) for _ in range(steps)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outcomes == ["renew"] * steps
    assert read(sandbox_cluster.api_client(), namespace, DEPLOYMENT).holder == DEPLOYER


def test_the_loser_fails_naming_the_holder_until_it_is_released(sandbox_cluster, namespace):
    api = sandbox_cluster.api_client()
    assert acquire(api, namespace, DEPLOYMENT, DEPLOYER, DEPLOY, 300, wait_s=0).step == "create"
    with pytest.raises(LeaseHeld, match=f"held by run {DEPLOYER} \\(deploy\\), renewed .*; waited 0 s"):
        acquire(api, namespace, DEPLOYMENT, TEARER, TEARDOWN, 300, wait_s=0)
    # Only the holder frees it.
    assert release(api, namespace, DEPLOYMENT, TEARER).startswith(f"not this run's: held by run {DEPLOYER}")
    assert release(api, namespace, DEPLOYMENT, DEPLOYER) == "released"
    assert read(api, namespace, DEPLOYMENT) is None
    assert release(api, namespace, DEPLOYMENT, DEPLOYER) == "already free"
    assert acquire(api, namespace, DEPLOYMENT, TEARER, TEARDOWN, 300, wait_s=0).step == "create"


def test_a_stale_lease_is_taken_over_and_its_old_holder_stops(sandbox_cluster, namespace):
    from kubernetes import client

    api = sandbox_cluster.api_client()
    # The deploy run renewed it last ten minutes ago for five: its worker is gone.
    long_ago = datetime.now(UTC) - timedelta(minutes=10)
    assert try_acquire(api, namespace, DEPLOYMENT, DEPLOYER, DEPLOY, 300, now=long_ago)[0].step == "create"
    decision = acquire(api, namespace, DEPLOYMENT, TEARER, TEARDOWN, 600, wait_s=0)
    assert decision.step == "take" and decision.reason.startswith(f"stale: held by run {DEPLOYER} (deploy)")
    lease = client.CoordinationV1Api(api).read_namespaced_lease(lease_name(DEPLOYMENT), namespace)
    assert (lease.spec.holder_identity, lease.spec.lease_duration_seconds, lease.spec.lease_transitions) == (
        TEARER, 600, 1)
    assert lease.metadata.labels["llm-on-eks.io/deployment"] == DEPLOYMENT
    # The old holder comes back: it may not act, and may not free the new holder's Lease.
    with pytest.raises(LeaseHeld, match=f"no longer holds .*held by run {TEARER} \\(teardown\\)"):
        renew(api, namespace, DEPLOYMENT, DEPLOYER, DEPLOY, 300)
    assert release(api, namespace, DEPLOYMENT, DEPLOYER).startswith("not this run's")
    # The holder renews: the same acquire time, a later renew time.
    renewed = renew(api, namespace, DEPLOYMENT, TEARER, TEARDOWN, 600)
    after = client.CoordinationV1Api(api).read_namespaced_lease(lease_name(DEPLOYMENT), namespace)
    assert renewed.step == "renew" and after.spec.acquire_time == lease.spec.acquire_time
    assert after.spec.renew_time > lease.spec.renew_time

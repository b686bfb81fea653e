"""Test DAGs: deploy_model, teardown_deployment and teardown_idle_deployments as dags/ builds
them (Airflow finds them by the calls), except that AWS waits poll every second (the test's stand-in AWS turns CREATING into
ACTIVE, and DELETING into gone, after one look) and the idle teardown runs when triggered."""

from __future__ import annotations

from llm_on_eks.factory import build_deploy_dag, build_idle_teardown_dag, build_teardown_dag

DEPLOY_DAG_ID, TEARDOWN_DAG_ID, IDLE_DAG_ID = "lifecycle_deploy", "lifecycle_teardown", "lifecycle_idle_teardown"

build_deploy_dag(DEPLOY_DAG_ID, doc_md=__doc__, waiter_delay=1)
build_teardown_dag(TEARDOWN_DAG_ID, doc_md=__doc__, waiter_delay=1)
build_idle_teardown_dag(IDLE_DAG_ID, doc_md=__doc__, schedule=None, waiter_delay=1)

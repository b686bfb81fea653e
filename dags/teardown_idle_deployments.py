"""
### teardown_idle_deployments

Every 10 minutes (`LLM_ON_EKS_IDLE_TEARDOWN_SCHEDULE` to change it), judges every deployment
llm-on-eks has registered, each in its own task: idle means vLLM's request and token counters
have not moved and nothing is in flight for at least the deployment's idle TTL. Protected,
not-ready, unreadable and too-young deployments are kept, each with its reason, and so are those
a DAG run holds through `llm_endpoint` and idle ones whose consumer DAG runs again within its keep
window (Airflow's next run of it). Failed deploys
(node group tagged `failed-at`) go after a 30-minute grace period, node groups with no release
after 3 hours. The idle ones go through the same teardown groups as `teardown_deployment`
(release and node group; shared things stay); the summary says what was kept and why, what was
removed, the hourly cost stopped and the money spent idle.

Watch it in the Airflow UI, or run one judgement now: `airflow dags trigger teardown_idle_deployments`.
"""

from __future__ import annotations

import os

from llm_on_eks.factory import build_idle_teardown_dag

DAG_ID = "teardown_idle_deployments"
SCHEDULE = os.environ.get("LLM_ON_EKS_IDLE_TEARDOWN_SCHEDULE", "*/10 * * * *")

build_idle_teardown_dag(DAG_ID, doc_md=__doc__, schedule=SCHEDULE)

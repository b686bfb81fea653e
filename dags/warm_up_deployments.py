"""
### warm_up_deployments

Every 10 minutes (`LLM_ON_EKS_WARM_UP_SCHEDULE` to change it), looks at every DAG that uses a
deployment through `llm_endpoint` and asks Airflow when it runs next. A deployment that is gone
(the idle teardown removed it) is deployed again through `deploy_model` once its consumer's next
run is due within the deployment's predicted cold start plus 10 minutes, so that the run adopts
a serving deployment instead of waiting for it. Paused and unscheduled consumers are left alone;
each consumer's verdict is in `plan_warm_ups`'s log.
"""

from __future__ import annotations

import os

from llm_on_eks.factory import build_warm_up_dag

DAG_ID = "warm_up_deployments"
SCHEDULE = os.environ.get("LLM_ON_EKS_WARM_UP_SCHEDULE", "*/10 * * * *")

build_warm_up_dag(DAG_ID, doc_md=__doc__, schedule=SCHEDULE)

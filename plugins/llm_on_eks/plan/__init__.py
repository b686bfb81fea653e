"""The plan: every decision of a deployment, made once, before anything is created.

The plan task turns the run's params and the catalog into one JSON document (pushed to XCom,
one key per section) that every later step reads. Steps never re-derive names or sizes, so a
retry of any step acts on exactly what the plan said, and a dry run can show all of it up front.
Each step is handed the sections it acts on (``types``); each section has one builder
(``sections``); ``deploy`` and ``teardown`` put them together; every default and constant is in
``defaults``.
"""

from llm_on_eks.plan.defaults import (
    ACCELERATORS,
    CLUSTER_HOURLY_USD,
    DEFAULTS,
    SERVING_PORT,
    SYSTEM_INSTANCE_TYPE,
    SYSTEM_SCALING,
    WEIGHT_SOURCES,
    PlanError,
    is_true,
    param,
)
from llm_on_eks.plan.deploy import build_plan
from llm_on_eks.plan.teardown import TEARDOWN_KEYS, build_cluster_removal_plan, build_teardown_plan, teardown_params
from llm_on_eks.plan.types import NodegroupSpec, Plan, TeardownPlan

__all__ = ["ACCELERATORS", "CLUSTER_HOURLY_USD", "DEFAULTS", "SERVING_PORT", "SYSTEM_INSTANCE_TYPE", "SYSTEM_SCALING",
           "TEARDOWN_KEYS", "WEIGHT_SOURCES", "NodegroupSpec", "Plan", "PlanError", "TeardownPlan",
           "build_cluster_removal_plan", "build_plan", "build_teardown_plan", "is_true", "param", "teardown_params"]

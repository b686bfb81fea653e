"""The libraries task processes import at run time, imported once where workers fork from.

Every step imports the Kubernetes client, boto3 and the Amazon provider's hooks and triggers
lazily, so that parsing a DAG file stays fast (benchmarks/dag_parse_time.py). A task process then
paid them on every try, and its DAG file's imports of this package besides: 2-5 s of CPU each (the Kubernetes client about 1.8 s, the Amazon EKS
triggers another 1.8 s for kubernetes_asyncio), on machines that run several deploys at once.
Imported in the process that workers fork from, they cost nothing per task:

- LocalExecutor: ``[scheduler] mp_start_method = forkserver`` and ``[scheduler]
  mp_forkserver_preload`` = these modules (Airflow 3.3's settings; ``forkserver_settings``).
- CeleryExecutor: ``[celery] celery_config_options = llm_on_eks.celery_config.CELERY_CONFIG``
  (Celery's ``imports``, loaded by the worker before its prefork pool starts).
"""

from __future__ import annotations

TASK_RUNTIME_MODULES = (
    # The task runner and its DAG-file parse (a forkserver's workers do not share the scheduler's).
    "airflow.sdk.execution_time.supervisor", "airflow.sdk.execution_time.task_runner",
    "airflow.dag_processing.dagbag",
    "boto3", "kubernetes.client", "kubernetes.config", "kubernetes.utils", "kubernetes.watch",
    "airflow.providers.amazon.aws.hooks.eks", "airflow.providers.amazon.aws.hooks.s3",
    "airflow.providers.amazon.aws.hooks.sts", "airflow.providers.amazon.aws.hooks.secrets_manager",
    "airflow.providers.amazon.aws.triggers.eks", "airflow.providers.amazon.aws.utils.eks_get_token",
    "airflow.providers.cncf.kubernetes.hooks.kubernetes", "airflow.providers.standard.triggers.external_task",
    # The smoke test's client and the metrics reader.
    "openai", "prometheus_client.parser",
    # This package, which every task process's parse of its DAG file imports: 0.27 s of CPU on an
    # idle machine, up to 2.7 s with three deploys and vLLM's start on 2 cores. Airflow loads plugins
    # once per process and needs a restart for changed plugin code anyway (its "Plugins" docs).
    "llm_on_eks.factory",
)


def forkserver_settings() -> dict[str, str]:
    """The LocalExecutor's settings, as ``AIRFLOW__*`` variables."""
    return {"AIRFLOW__SCHEDULER__MP_START_METHOD": "forkserver",
            "AIRFLOW__SCHEDULER__MP_FORKSERVER_PRELOAD": ",".join(TASK_RUNTIME_MODULES)}

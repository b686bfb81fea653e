"""Celery workers' configuration: Airflow's, and the task processes' libraries imported by the
worker before it forks its pool (llm_on_eks.worker_preload). Named by ``[celery]
celery_config_options`` (include/airflow/team.env); Airflow uses the dict whole, so it extends
Airflow's default, as the provider's documentation shows."""

from __future__ import annotations

from airflow.providers.celery.executors.default_celery import DEFAULT_CELERY_CONFIG

from llm_on_eks.worker_preload import TASK_RUNTIME_MODULES

CELERY_CONFIG = {**DEFAULT_CELERY_CONFIG, "imports": TASK_RUNTIME_MODULES}

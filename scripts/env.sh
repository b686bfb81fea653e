# Sourced by the scripts here: one place for the local Airflow environment.
# A local run keeps everything inside the work tree: SQLite metadata DB, logs, caches.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export ROOT
export VENV="$ROOT/.venv"
export PATH="$VENV/bin:$PATH"
export AIRFLOW_HOME="${AIRFLOW_HOME:-$ROOT/.airflow}"
export AIRFLOW__CORE__DAGS_FOLDER="$ROOT/dags"
export AIRFLOW__CORE__PLUGINS_FOLDER="$ROOT/plugins"
export AIRFLOW__CORE__LOAD_EXAMPLES=False
export AIRFLOW__CORE__EXECUTOR=LocalExecutor
# LocalExecutor pre-forks `parallelism` workers: keep it small on 2 cores.
export AIRFLOW__CORE__PARALLELISM=4
export AIRFLOW__API__HOST=127.0.0.1
export PYTHONPATH="$ROOT/plugins${PYTHONPATH:+:$PYTHONPATH}"

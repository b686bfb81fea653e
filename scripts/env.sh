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
# LocalExecutor forks up to `parallelism` workers; the steps mostly wait (local_stack/airflow.py).
export AIRFLOW__CORE__PARALLELISM=8
export AIRFLOW__API__HOST=127.0.0.1
export PYTHONPATH="$ROOT/plugins${PYTHONPATH:+:$PYTHONPATH}"

# The local control plane's binaries: built once per version set, then reused from the cache (about
# 13 minutes on a fresh 2-core machine). build_start runs the build in the background, in a process
# group of its own (setsid: the go commands under it too), so that it overlaps other work (the
# virtualenv installs, the moto-only tests); a script that stops early (a failure, an interrupt)
# stops it by that group. build_wait waits for it, showing the end of its log if it failed.
build_start() {
  BUILD_LOG="$ROOT/.sandbox-build.log"
  setsid "$ROOT/scripts/sandbox-cluster" build > "$BUILD_LOG" 2>&1 &
  BUILD_PID=$!
  trap 'kill -- -"$BUILD_PID" 2>/dev/null || true' EXIT
  trap 'exit 130' INT TERM
}
build_wait() {
  if ! wait "$BUILD_PID"; then
    echo "building the local control plane failed:" >&2
    tail -20 "$BUILD_LOG" >&2
    return 1
  fi
}

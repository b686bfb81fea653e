"""A local Airflow 3, as separate processes on 127.0.0.1: api-server, scheduler, dag-processor and
triggerer, on a SQLite metadata DB with the LocalExecutor (scripts/env.sh: a small parallelism);
or, with ``workers`` and the team stack's settings (local_stack/team.py), on PostgreSQL with the
CeleryExecutor and that many Celery workers, as docker-compose.yaml runs it.

The demo runs one in the work tree's ``.airflow``; the tests run one in a temporary home. Its
configuration is whole here (nothing ``AIRFLOW__*`` is inherited, so a test process's own
settings do not leak in). Log
servers are not started (they listen on every interface): the API server reads the task logs from
the local files. The simple auth manager's one user gets a random password, written to a file.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llm_on_eks.worker_preload import forkserver_settings
from local_stack.stack import LOGS, ROOT, alive, free_port, http_ok, spawn, stop_pids, wait_until

USER = "admin"
# The CLI of the interpreter's own environment, found without relying on PATH (an unactivated venv).
AIRFLOW = str(Path(sys.executable).with_name("airflow"))
COMPONENTS = {
    "api-server": [AIRFLOW, "api-server"],
    "scheduler": [AIRFLOW, "scheduler", "--skip-serve-logs"],
    "dag-processor": [AIRFLOW, "dag-processor"],
    "triggerer": [AIRFLOW, "triggerer", "--skip-serve-logs"],
}


def connections(aws_url: str, identity: dict[str, str]) -> dict[str, Any]:
    """The ``local`` profile: the connections a deploy reaches AWS (and through it, EKS) and the
    token by. ``identity``: the access key of the IAM user Airflow is."""
    return {
        "aws_default": {"conn_type": "aws", "login": identity["access_key_id"],
                        "password": identity["secret_access_key"], "extra": json.dumps({
                            "endpoint_url": aws_url, "region_name": "us-west-2",
                            # One attempt: moto answers what it lacks with errors botocore would retry for seconds.
                            "config_kwargs": {"retries": {"max_attempts": 1, "mode": "standard"}}})},
        "hf_default": {"conn_type": "generic", "password": "hf_local_demo_token_not_real"},
    }


@dataclass
class LocalAirflow:
    """``home`` holds the metadata DB, logs and the password file; ``pids`` what was started."""

    home: Path
    port: int = 0
    jwt_secret: str = ""
    extra_env: dict[str, str] = field(default_factory=dict)
    pids: dict[str, int] = field(default_factory=dict)
    log_prefix: str = "airflow"
    workers: int = 0

    @property
    def components(self) -> dict[str, list[str]]:
        """What runs: the four components, and the Celery workers (one hostname each)."""
        workers = {f"celery-worker-{n}": [AIRFLOW, "celery", "worker", "--skip-serve-logs",
                                          "--celery-hostname", f"worker{n}@%h"] for n in range(1, self.workers + 1)}
        return {**COMPONENTS, **workers}

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def password_file(self) -> Path:
        return self.home / "simple_auth_manager_passwords.json"

    @property
    def password(self) -> str:
        return json.loads(self.password_file.read_text())[USER]

    def env(self) -> dict[str, str]:
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW__")}
        return {
            **inherited,
            "PYTHONPATH": os.pathsep.join([str(ROOT / "plugins"), str(ROOT)]),
            "AIRFLOW_HOME": str(self.home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            # LocalExecutor forks up to `parallelism` workers. Steps wait on AWS and Kubernetes more
            # than they compute (the demo keeps 2 cores half busy): three deploys' side-by-side
            # steps (up to 6 each) would otherwise queue for a slot.
            "AIRFLOW__CORE__PARALLELISM": "8",
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(self.port),
            "AIRFLOW__API__BASE_URL": self.base_url,
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.base_url}/execution/",
            "AIRFLOW__API_AUTH__JWT_SECRET": self.jwt_secret,
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{USER}:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(self.password_file),
            "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
            # Each task process starts with what the steps import at run time (worker_preload); the
            # Celery workers' own setting is in the team stack's settings.
            **({} if self.workers else forkserver_settings()),
            # Every long wait goes to the triggerer, as in a team's deployment.
            "AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE": "True",
            **self.extra_env,
        }

    def cli(self, *args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
        return subprocess.run([AIRFLOW, *args], env=self.env(), capture_output=True, text=True, check=check,
                              timeout=timeout)

    def running(self) -> bool:
        return all(alive(self.pids.get(name)) for name in self.components) and http_ok(f"{self.base_url}/api/v2/monitor/health")

    def start(self, connection_profile: dict[str, Any] | None = None, on_start=print) -> None:
        """Start what is not running (the port is chosen when nothing is); idempotent."""
        self.launch(on_start)
        self.ready(connection_profile, on_start)

    def launch(self, on_start=print) -> None:
        """The DB migrated and every component but the scheduler started, without waiting for them."""
        self.home.mkdir(parents=True, exist_ok=True)
        if not any(alive(pid) for pid in self.pids.values()):
            self.port = free_port(self.port or 8080)
        self.jwt_secret = self.jwt_secret or secrets.token_urlsafe(32)
        if not self.password_file.exists():
            self.password_file.write_text(json.dumps({USER: secrets.token_urlsafe(12)}))
            os.chmod(self.password_file, 0o600)
        self.cli("db", "migrate", timeout=600)
        self._spawn([name for name in self.components if name != "scheduler"], on_start)

    def ready(self, connection_profile: dict[str, Any] | None = None, on_start=print) -> None:
        """Until the API server answers (raising if a component exited); then ``connection_profile``
        saved, through the REST API (`airflow connections import` would import Airflow anew: 6 s of
        CPU), and the scheduler started: a DAG left unpaused in the metadata DB whose schedule is
        due runs with these connections, not an earlier stack's."""
        wait_until(lambda: http_ok(f"{self.base_url}/api/v2/monitor/health"), 300, "Airflow API server",
                   self.pids["api-server"])
        dead = [name for name in self.pids if name in self.components and not alive(self.pids[name])]
        if dead:  # a component that fails at start (a setting, an import) exits within seconds
            raise RuntimeError(f"Airflow {', '.join(dead)} exited at start; see {LOGS}/{self.log_prefix}-<name>.log")
        if connection_profile:
            self.api().save_connections(connection_profile)
        self._spawn(["scheduler"], on_start)

    def _spawn(self, names: list[str], on_start) -> None:
        for name in names:
            if alive(self.pids.get(name)):
                on_start(f"  airflow {name:<14} reused   (pid {self.pids[name]})")
                continue
            self.pids[name] = spawn(f"{self.log_prefix}-{name}", self.components[name], self.env())
            on_start(f"  airflow {name:<14} started  (pid {self.pids[name]})")

    def stop(self) -> None:
        stop_pids(list(self.pids.values()))

    def api(self) -> Api:
        return Api(self.base_url, self.password)

    def to_state(self) -> dict[str, Any]:
        return {"home": str(self.home), "port": self.port, "jwt_secret": self.jwt_secret, "pids": self.pids,
                "workers": self.workers}

    @classmethod
    def from_state(cls, state: dict[str, Any], **kwargs: Any) -> LocalAirflow:
        return cls(home=Path(state["home"]), port=state["port"], jwt_secret=state["jwt_secret"],
                   pids=dict(state["pids"]), workers=state.get("workers", 0), **kwargs)


class Api:
    """The Airflow REST API (v2), as the UI uses it, with a token for the local user."""

    def __init__(self, base: str, password: str) -> None:
        self.base = base
        self.token = self._call("POST", "/auth/token", {"username": USER, "password": password}, auth=False)[
            "access_token"]

    def _call(self, method: str, path: str, body: Any = None, auth: bool = True) -> Any:
        request = urllib.request.Request(self.base + path, method=method,
                                         data=None if body is None else json.dumps(body).encode())
        request.add_header("Content-Type", "application/json")
        if auth:
            request.add_header("Authorization", f"Bearer {self.token}")
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read() or b"null")

    def get(self, path: str) -> Any:
        return self._call("GET", path)

    def patch(self, path: str, body: Any) -> Any:
        return self._call("PATCH", path, body)

    def post(self, path: str, body: Any) -> Any:
        return self._call("POST", path, body)

    def found(self, path: str) -> bool:
        try:
            self.get(path)
            return True
        except urllib.error.HTTPError as error:
            if error.code == 404:
                return False
            raise

    def wait_for_dags(self, *dag_ids: str, timeout_s: float = 300) -> None:
        """Until the dag-processor has parsed them; then unpaused, as a user would switch them on."""
        wait_until(lambda: all(self.found(f"/api/v2/dags/{dag_id}") for dag_id in dag_ids), timeout_s,
                   f"DAGs {', '.join(dag_ids)} parsed by the dag-processor")
        for dag_id in dag_ids:
            self.patch(f"/api/v2/dags/{dag_id}", {"is_paused": False})

    def save_connections(self, connections: dict[str, dict[str, Any]]) -> None:
        """Create or overwrite ``connections`` (by id), as the UI's Connections page saves them."""
        entities = [{"connection_id": conn_id, **fields} for conn_id, fields in connections.items()]
        result = self.patch("/api/v2/connections", {"actions": [
            {"action": "create", "entities": entities, "action_on_existence": "overwrite"}]})
        if result["create"]["errors"]:
            raise RuntimeError(f"connections not saved: {result['create']['errors']}")

    def trigger(self, dag_id: str, run_id: str, conf: dict[str, Any]) -> dict[str, Any]:
        """A manual run, as the UI's Trigger form posts it."""
        return self.post(f"/api/v2/dags/{dag_id}/dagRuns", {"dag_run_id": run_id, "logical_date": None, "conf": conf})

    def run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        return self.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        return self.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances?limit=200")["task_instances"]

    def xcom(self, dag_id: str, run_id: str, task_id: str) -> Any:
        try:
            return self.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/"
                            "return_value")["value"]
        except urllib.error.HTTPError as error:
            if error.code == 404:
                return None
            raise

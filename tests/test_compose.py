"""docker-compose.yaml, as Compose itself reads it.

scripts/compose-check.sh runs Compose's own loader (compose-go) and prints the normalized project:
interpolated, YAML anchors and merges resolved, short syntax expanded. So these tests check what
`docker compose` would run, not the file's text, and need no Docker engine (only Go, to build the
checker once into the per-user cache).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from local_stack.team import shared_settings

ROOT = Path(__file__).resolve().parents[1]
CHECK = ROOT / "scripts" / "compose-check.sh"
COMPOSE = ROOT / "docker-compose.yaml"

# Not a server, but out of the fast tier all the same: the first run builds the checker from Go modules
# (fetched through the module proxy: about a minute on a fresh machine), more than the edit loop's 90 s.
pytestmark = pytest.mark.integration

# The official Airflow 3 stack's services (apache/airflow: airflow-core/docs/howto/docker-compose).
AIRFLOW = ["airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-worker", "airflow-triggerer"]
LONG_RUNNING = ["postgres", "redis", *AIRFLOW]


def compose_check(path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # AIRFLOW_UID set and the user's own .env and COMPOSE_PROFILES left out: the same result on
    # every machine. The first run builds the checker (about 10 s), hence the generous timeout.
    env = {**os.environ, "AIRFLOW_UID": "50000", "COMPOSE_DISABLE_ENV_FILE": "1"}
    env.pop("COMPOSE_PROFILES", None)
    return subprocess.run([str(CHECK), *args, str(path)], capture_output=True, text=True, timeout=300, env=env)


@pytest.fixture(scope="module")
def services() -> dict:
    result = compose_check(COMPOSE, "-profile", "flower")
    assert result.returncode == 0, result.stderr
    project = json.loads(result.stdout)
    assert project["name"] == "llm-on-eks"
    return project["services"]


def test_the_official_services_are_all_there(services):
    assert set(services) >= {*LONG_RUNNING, "airflow-init", "flower"}


@pytest.mark.parametrize("name", [*LONG_RUNNING, "flower"])
def test_long_running_services_have_a_healthcheck(services, name):
    test = services[name].get("healthcheck", {}).get("test")
    assert test and not services[name]["healthcheck"].get("disable"), name


@pytest.mark.parametrize("name", AIRFLOW)
def test_airflow_services_wait_for_init_and_healthy_backends(services, name):
    depends = services[name]["depends_on"]
    assert depends["airflow-init"]["condition"] == "service_completed_successfully"
    assert depends["postgres"]["condition"] == "service_healthy"
    assert depends["redis"]["condition"] == "service_healthy"


def test_the_worker_waits_for_a_healthy_api_server(services):
    # Tasks report through the execution API: a worker started before it fails its first tasks.
    assert services["airflow-worker"]["depends_on"]["airflow-apiserver"]["condition"] == "service_healthy"


@pytest.mark.parametrize("name", [*AIRFLOW, "airflow-init"])
def test_the_project_is_mounted_and_configured(services, name):
    service = services[name]
    mounts = {v["target"]: v for v in service["volumes"]}
    # include/ next to plugins/: llm_on_eks.catalog finds it there (INCLUDE_DIR).
    for folder in ("dags", "plugins", "include"):
        mount = mounts[f"/opt/airflow/{folder}"]
        assert mount["type"] == "bind" and mount["source"] == str(ROOT / folder)
    env = service["environment"]
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://airflow-apiserver:8080/execution/"
    # The team stack's settings, the ones scripts/demo --team runs with (include/airflow/team.env).
    shared = shared_settings()
    assert {k: env[k] for k in shared} == shared
    assert shared["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor" and shared["AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE"] == "true"
    # One JWT secret for all: an empty one makes each process generate its own.
    assert env["AIRFLOW__API_AUTH__JWT_SECRET"]
    assert service["build"]["context"] == str(ROOT)


def test_the_api_server_publishes_8080(services):
    ports = services["airflow-apiserver"]["ports"]
    assert [(p["target"], p["published"], p["protocol"]) for p in ports] == [(8080, "8080", "tcp")]
    assert ports[0]["host_ip"] == "127.0.0.1"


def test_every_image_has_a_pinned_tag(services):
    for name, service in services.items():
        image = service["image"]
        repository, _, tag = image.rpartition(":")
        assert repository and "/" not in tag and tag not in ("", "latest"), f"{name}: {image}"


def test_no_secret_is_written_in_the_file(services):
    # Connections come from the caller's environment; unset, they are empty, not a credential.
    for name in AIRFLOW:
        env = services[name]["environment"]
        assert env["AIRFLOW_CONN_AWS_DEFAULT"] == env["AIRFLOW_CONN_HF_DEFAULT"] == "", name


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            "      airflow-apiserver:\n        condition: service_healthy",
            "      airflow-apiserve:\n        condition: service_healthy",
            'depends on undefined service "airflow-apiserve"',
        ),
        ('"${AIRFLOW_API_BIND_ADDR:-127.0.0.1}:8080:8080"', '"127.0.0.1:80a80:8080"', "Invalid hostPort: 80a80"),
    ],
    ids=["undefined-depends-on", "malformed-port"],
)
def test_the_checker_refuses_a_broken_file(tmp_path, old, new, message):
    text = COMPOSE.read_text()
    assert text.count(old) == 1
    broken = tmp_path / "docker-compose.yaml"
    broken.write_text(text.replace(old, new))
    result = compose_check(broken)
    assert result.returncode != 0
    assert message in result.stderr
    assert result.stdout == ""

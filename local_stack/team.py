"""The team stack's back ends without Docker: docker-compose.yaml's ``postgres`` and ``redis``
services as local processes on 127.0.0.1, from Debian's ``postgresql`` and ``redis-server``
packages (scripts/setup-team installs them), each with a random password.

Airflow then runs on them as the compose file runs it: the settings both read are in
``include/airflow/team.env`` (executor, deferral, Celery worker concurrency); only the addresses
differ (``settings``). PostgreSQL refuses to run as root: as root, its processes run as the
package's ``postgres`` user, which owns the data directory.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from local_stack.stack import ROOT, alive, free_port, port_open, spawn, wait_until

TEAM_ENV = ROOT / "include" / "airflow" / "team.env"
DATABASE = "airflow"
USER = "airflow"
# Celery workers, as docker-compose.yaml's airflow-worker service scaled to two.
WORKERS = 2


def shared_settings() -> dict[str, str]:
    """The Airflow settings docker-compose.yaml reads too (its ``env_file``)."""
    settings = {}
    for line in TEAM_ENV.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            settings[key.strip()] = value.strip()
    return settings


def settings(backends: dict[str, Any]) -> dict[str, str]:
    """The shared settings, and where Airflow finds the metadata DB, the Celery broker and its
    result backend (the compose file's AIRFLOW__DATABASE__SQL_ALCHEMY_CONN, AIRFLOW__CELERY__BROKER_URL
    and RESULT_BACKEND); the scheduler's cap on running tasks is every worker's slots."""
    pg, redis = backends["postgres"], backends["redis"]
    db = f"{USER}:{pg['password']}@127.0.0.1:{pg['port']}/{DATABASE}"
    shared = shared_settings()
    return {**shared,
            "AIRFLOW__CORE__PARALLELISM": str(WORKERS * int(shared["AIRFLOW__CELERY__WORKER_CONCURRENCY"])),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"postgresql+psycopg2://{db}",
            # The driver named: SQLAlchemy 2.1 made psycopg (3) the default for postgresql://.
            "AIRFLOW__CELERY__RESULT_BACKEND": f"db+postgresql+psycopg2://{db}",
            "AIRFLOW__CELERY__BROKER_URL": f"redis://:{redis['password']}@127.0.0.1:{redis['port']}/0"}


def ensure_backends(home: Path, backends: dict[str, Any], on_start=print) -> dict[str, str]:
    """PostgreSQL and Redis, started or reused (``backends``: their state, updated); the settings."""
    for name, ensure in (("postgres", ensure_postgres), ("redis", ensure_redis)):
        was = (backends.get(name) or {}).get("pid")
        backends[name] = ensure(home, backends)
        on_start(f"  {name:<18} {'reused ' if was == backends[name]['pid'] else 'started'}  "
                 f"127.0.0.1:{backends[name]['port']}")
    return settings(backends)


def _postgres_bin(name: str) -> str:
    """Debian keeps the server's programs off PATH, under /usr/lib/postgresql/<version>/bin."""
    found = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), key=lambda p: int(p.parts[-3]))
    path = str(found[-1]) if found else shutil.which(name)
    if not path:
        raise RuntimeError(f"PostgreSQL's {name} is missing: run scripts/setup-team (Debian's postgresql package)")
    return path


def _as_postgres() -> list[str]:
    return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []


def ensure_postgres(home: Path, state: dict[str, Any]) -> dict[str, Any]:
    """A PostgreSQL server with database and user ``airflow``; reused while it runs."""
    pg = state.get("postgres") or {}
    if alive(pg.get("pid")) and port_open(pg["port"]):
        return pg
    data, password_file = home / "postgres", home / "postgres.password"
    if not (data / "PG_VERSION").exists():
        data.mkdir(parents=True, exist_ok=True)
        password_file.write_text(secrets.token_urlsafe(16))
        os.chmod(password_file, 0o600)
        if os.geteuid() == 0:
            shutil.chown(data, "postgres", "postgres")
            shutil.chown(password_file, "postgres", "postgres")
        made = subprocess.run([*_as_postgres(), _postgres_bin("initdb"), "-D", str(data), "-U", USER, "-E", "UTF8",
                               "--auth=scram-sha-256", f"--pwfile={password_file}"],
                              capture_output=True, text=True, timeout=300)
        if made.returncode:
            # As root the server runs as user postgres, which must be able to reach ``home``.
            raise RuntimeError(f"initdb failed in {data}: {made.stderr.strip()}")
    # Kept beside the data (mode 0600), which stays between runs as the SQLite DB does.
    pg = {"password": password_file.read_text().strip(), "port": free_port(pg.get("port") or 5432)}
    # Listening on loopback only; its socket in the data directory, not /var/run/postgresql.
    pg["pid"] = spawn("postgres", [*_as_postgres(), _postgres_bin("postgres"), "-D", str(data), "-p", str(pg["port"]),
                                   "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={data}"],
                      dict(os.environ))
    wait_until(lambda: port_open(pg["port"]), 120, "PostgreSQL", pg["pid"])
    _create_database(pg)
    return pg


def _create_database(pg: dict[str, Any]) -> None:
    import psycopg2

    deadline = time.monotonic() + 60
    while True:
        try:
            connection = psycopg2.connect(host="127.0.0.1", port=pg["port"], user=USER, password=pg["password"],
                                          dbname="postgres")
            break
        except psycopg2.OperationalError:  # accepting connections a moment after it listens
            if time.monotonic() > deadline:
                raise
            time.sleep(1)
    connection.autocommit = True  # CREATE DATABASE runs outside a transaction
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,))
            if cursor.fetchone() is None:
                cursor.execute(f"CREATE DATABASE {DATABASE} OWNER {USER}")
    finally:
        connection.close()


def ensure_redis(home: Path, state: dict[str, Any]) -> dict[str, Any]:
    """A Redis server for the Celery broker, nothing kept on disk; reused while it runs."""
    redis = state.get("redis") or {}
    if alive(redis.get("pid")) and port_open(redis["port"]):
        return redis
    binary = shutil.which("redis-server")
    if not binary:
        raise RuntimeError("redis-server is missing: run scripts/setup-team (Debian's redis-server package)")
    redis = {"password": redis.get("password") or secrets.token_urlsafe(16), "port": free_port(redis.get("port") or 6379)}
    directory = home / "redis"
    directory.mkdir(parents=True, exist_ok=True)
    # The password in a file only we read, not on the command line (where `ps` shows it).
    config = directory / "redis.conf"
    config.write_text(f"bind 127.0.0.1\nport {redis['port']}\nsave \"\"\nappendonly no\ndir {directory}\n"
                      f"requirepass {redis['password']}\n")
    os.chmod(config, 0o600)
    redis["pid"] = spawn("redis", [binary, str(config)], dict(os.environ))
    wait_until(lambda: port_open(redis["port"]), 60, "Redis", redis["pid"])
    return redis

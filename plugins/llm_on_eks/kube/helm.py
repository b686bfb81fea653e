"""The helm CLI, as the deploy and readiness steps use it (helm v3 and v4 alike: only flags
both share; neither waits for resources unless told, so readiness is ours to check)."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import yaml

from llm_on_eks.kube.access import Kubeconfig
from llm_on_eks.kube.helm_values import CHART_NAME, HELM_TIMEOUT_S, helm_command
from llm_on_eks.naming import MANAGED_BY_KEY, PROJECT, is_managed
from llm_on_eks.plan.types import ReleaseSpec

# helm stops at its own --timeout and records the revision failed; the subprocess is killed only
# if helm hangs well past that, since a killed helm leaves the release pending-install/upgrade.
KILL_AFTER_S = HELM_TIMEOUT_S + 120
# A pending-* revision older than this has no helm behind it any more (ours would have timed out).
STUCK_AFTER_S = KILL_AFTER_S + 60
PENDING = frozenset({"pending-install", "pending-upgrade", "pending-rollback"})
# What helm (client-go) says when the API server did not answer one request: a body cut short
# (client-go's request.go: "unexpected error when reading response body. Please retry."), a
# connection reset or closed before the answer (Go's net/http: `Patch "https://...": EOF`), a 5xx.
# client-go itself retries only answers with Retry-After.
# helm exits before it records a release for these, or records it failed, which the next
# upgrade --install supersedes; so the command is run again, a bounded number of times.
TRANSIENT = ("Please retry", "unexpected EOF", '": EOF', "connection reset by peer", "GOAWAY", "TLS handshake timeout",
             "the server is currently unable to handle the request", "Internal error occurred")
ATTEMPTS = 3

log = logging.getLogger(__name__)


class HelmError(RuntimeError):
    """helm exited non-zero; the message carries its stderr."""


def helm_binary() -> str | None:
    """``HELM_BIN`` or helm on PATH; None when there is none."""
    return os.environ.get("HELM_BIN") or shutil.which("helm")


@contextmanager
def _values_file(values: dict[str, Any]) -> Iterator[str]:
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as handle:
        yaml.safe_dump(values, handle)
        handle.flush()
        yield handle.name


def _run(args: list[str]) -> str:
    binary = helm_binary()
    if not binary:
        raise HelmError("helm not found: put it on PATH or set HELM_BIN")
    attempt = 1
    while True:
        result = subprocess.run([binary, *args], capture_output=True, text=True, timeout=KILL_AFTER_S)
        if not result.returncode:
            return result.stdout
        if attempt == ATTEMPTS or not any(marker in result.stderr for marker in TRANSIENT):
            raise HelmError(f"helm {args[0]} failed: {result.stderr.strip()}")
        log.warning("helm %s met a transient API server error; running it again in %d s: %s", args[0], 2 ** attempt,
                    result.stderr.strip()[-300:])
        time.sleep(2 ** attempt)
        attempt += 1


class HelmBusy(HelmError):
    """Another helm may be working on the release: its last revision is pending and younger than
    STUCK_AFTER_S. Waiting is the answer: until that revision is no longer pending (``unlocked``)
    or ``stuck_at`` (a Unix time) passes, when it counts as stuck and is recovered."""

    def __init__(self, message: str, revision: int, stuck_at: float):
        super().__init__(message)
        self.revision = revision
        self.stuck_at = stuck_at


def foreign_release(found: dict[str, Any] | None, values: dict[str, Any] | None) -> str | None:
    """Why a release of our name is not ours to change (another chart, or our chart without our
    managed-by label), or None for ours or none."""
    if found is None:
        return None
    chart = found.get("chart", "")
    if not chart.startswith(f"{CHART_NAME}-"):
        return f"made from chart {chart or 'unknown'}, not llm-on-eks's {CHART_NAME}"
    if not is_managed((values or {}).get("labels")):
        return f"its values lack the label {MANAGED_BY_KEY}={PROJECT}"
    return None


def stuck_recovery(history: list[dict[str, Any]], now: datetime) -> tuple[str, int | None] | None:
    """What brings a release whose last revision is stuck in a pending state (a killed worker,
    a killed helm) back to where helm acts on it again: ("rollback", the last deployed revision),
    or ("uninstall", None) for a first install that never got deployed. None when the last
    revision is not pending. Raises HelmBusy while the pending revision is younger than
    STUCK_AFTER_S: some helm may still be working on it."""
    if not history or history[-1]["status"] not in PENDING:
        return None
    last = history[-1]
    updated = datetime.fromisoformat(last["updated"])
    age = (now - updated).total_seconds()
    if age < STUCK_AFTER_S:
        raise HelmBusy(f"revision {last['revision']} is {last['status']} since {age:.0f} s: another helm "
                       f"operation may still run (recovered after {STUCK_AFTER_S} s)",
                       last["revision"], updated.timestamp() + STUCK_AFTER_S)
    deployed = [h["revision"] for h in history if h["status"] == "deployed"]
    if deployed:
        return "rollback", deployed[-1]
    # Superseded or failed revisions only: nothing to roll back to, so start afresh.
    return "uninstall", None


def unlocked(history: list[dict[str, Any]], revision: int) -> bool:
    """Whether the release's pending ``revision`` is settled: its helm finished (deployed, failed)
    or the release is gone."""
    return not history or history[-1]["revision"] != revision or history[-1]["status"] not in PENDING


@dataclass
class Helm:
    kubeconfig: Kubeconfig
    namespace: str

    def run(self, *args: str) -> str:
        """helm against this cluster, its token renewed first; callers name the namespace."""
        self.kubeconfig.renew()
        return _run([args[0], "--kubeconfig", self.kubeconfig.path, *args[1:]])

    def history(self, release: str) -> list[dict[str, Any]]:
        try:
            return json.loads(self.run("history", release, "--namespace", self.namespace, "--output", "json"))
        except HelmError as exc:
            if "release: not found" in str(exc):
                return []
            raise

    def values(self, release: str, revision: int) -> dict[str, Any]:
        """The values of one revision: without --revision helm reads the latest, which after a
        failed upgrade is the failed one, and a re-run would take it as applied."""
        return json.loads(self.run("get", "values", release, "--namespace", self.namespace, "--revision",
                                   str(revision), "--output", "json")) or {}

    def upgrade_install(self, release: ReleaseSpec, values: dict[str, Any]) -> None:
        with _values_file(values) as path:
            self.run(*helm_command(release, path)[1:])

    def rollback(self, release: str, revision: int) -> None:
        self.run("rollback", release, str(revision), "--namespace", self.namespace, "--timeout", f"{HELM_TIMEOUT_S}s")

    def release(self, release: str) -> dict[str, Any] | None:
        """The release as `helm list` shows it (name, chart, status, revision), or None. Helm 4 lists
        every status by default and has no `--all` (helm v4 `helm list --help`)."""
        found = json.loads(self.run("list", "--namespace", self.namespace, "--output", "json",
                                    "--filter", f"^{release}$"))
        return found[0] if found else None

    def uninstall(self, release: str, timeout_s: int) -> None:
        """Uninstall and let helm wait for the release's resources to go (its own --timeout)."""
        self.run("uninstall", release, "--namespace", self.namespace, "--wait", "--timeout", f"{timeout_s}s")

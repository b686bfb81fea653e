"""The helm CLI, as the deploy and readiness steps use it (helm v3 and v4 alike: only flags
both share; neither waits for resources unless told, so readiness is ours to check)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import yaml

from llm_on_eks.kube.helm_values import helm_command
from llm_on_eks.plan import Plan

HELM_TIMEOUT_S = 300


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
    result = subprocess.run([binary, *args], capture_output=True, text=True, timeout=HELM_TIMEOUT_S)
    if result.returncode:
        raise HelmError(f"helm {args[0]} failed: {result.stderr.strip()}")
    return result.stdout


@dataclass
class Helm:
    kubeconfig: str
    namespace: str

    def run(self, *args: str) -> str:
        """helm against this cluster; callers name the namespace."""
        return _run([args[0], "--kubeconfig", self.kubeconfig, *args[1:]])

    def history(self, release: str) -> list[dict[str, Any]]:
        try:
            return json.loads(self.run("history", release, "--namespace", self.namespace, "--output", "json"))
        except HelmError as exc:
            if "release: not found" in str(exc):
                return []
            raise

    def deployed_values(self, release: str) -> dict[str, Any]:
        return json.loads(self.run("get", "values", release, "--namespace", self.namespace, "--output", "json")) or {}

    def upgrade_install(self, plan: Plan, values: dict[str, Any]) -> None:
        with _values_file(values) as path:
            self.run(*helm_command(plan, path)[1:])

    def rollback(self, release: str, revision: int) -> None:
        self.run("rollback", release, str(revision), "--namespace", self.namespace)

    def release(self, release: str) -> dict[str, Any] | None:
        """The release as `helm list --all` shows it (name, chart, status, revision), or None."""
        found = json.loads(self.run("list", "--namespace", self.namespace, "--all", "--output", "json",
                                    "--filter", f"^{release}$"))
        return found[0] if found else None

    def uninstall(self, release: str, timeout_s: int) -> None:
        """Uninstall and let helm wait for the release's resources to go (its own --timeout)."""
        self.run("uninstall", release, "--namespace", self.namespace, "--wait", "--timeout", f"{timeout_s}s")

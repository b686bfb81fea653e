"""The helm CLI, as the deploy and readiness steps use it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from typing import Any

import yaml

from llm_on_eks.kube.helm_values import helm_command

HELM_TIMEOUT_S = 300


class HelmError(RuntimeError):
    """helm exited non-zero; the message carries its stderr."""


@dataclass
class Helm:
    kubeconfig: str
    namespace: str

    @property
    def binary(self) -> str:
        binary = os.environ.get("HELM_BIN") or shutil.which("helm")
        if not binary:
            raise HelmError("helm not found: put it on PATH or set HELM_BIN")
        return binary

    def run(self, *args: str) -> str:
        """helm with this cluster's kubeconfig; callers name the namespace."""
        result = subprocess.run([self.binary, "--kubeconfig", self.kubeconfig, *args],
                                capture_output=True, text=True, timeout=HELM_TIMEOUT_S)
        if result.returncode:
            raise HelmError(f"helm {args[0]} failed: {result.stderr.strip()}")
        return result.stdout

    def history(self, release: str) -> list[dict[str, Any]]:
        try:
            return json.loads(self.run("history", release, "--namespace", self.namespace, "--output", "json"))
        except HelmError as exc:
            if "release: not found" in str(exc):
                return []
            raise

    def deployed_values(self, release: str) -> dict[str, Any]:
        return json.loads(self.run("get", "values", release, "--namespace", self.namespace, "--output", "json")) or {}

    def upgrade_install(self, plan: dict[str, Any], values: dict[str, Any]) -> None:
        with tempfile.NamedTemporaryFile("w", suffix=".yaml") as handle:
            yaml.safe_dump(values, handle)
            handle.flush()
            self.run(*helm_command(plan, handle.name)[1:])

    def rollback(self, release: str, revision: int) -> None:
        self.run("rollback", release, str(revision), "--namespace", self.namespace)

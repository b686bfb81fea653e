"""The libraries imported once where workers fork from (llm_on_eks.worker_preload) are the ones
the steps import at run time: every import inside a function of the package (the lazy ones, kept
out of a DAG file's parse) is already loaded after the preload, in a clean interpreter. A lazy
import the list misses would be paid by every task process again; a preload module that does not
import is skipped silently by the forkserver and by Celery, so it must import here. So is this
package, as the DAG files import it (each task process parses its DAG file)."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from llm_on_eks.worker_preload import TASK_RUNTIME_MODULES, forkserver_settings

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "plugins" / "llm_on_eks"
# The package's own lazy imports come with its modules (dag_file_imports); the standard library
# is cheap.
OWN_OR_STDLIB = ("llm_on_eks", *sys.stdlib_module_names)


def lazy_imports() -> dict[str, str]:
    """Each module imported inside a function of the package, and where."""
    found = {}
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text(), str(path))
        for function in (n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)):
            for node in ast.walk(function):
                names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                         else [node.module] if isinstance(node, ast.ImportFrom) and node.module and not node.level
                         else [])
                for name in names:
                    if name.split(".")[0] not in OWN_OR_STDLIB:
                        found.setdefault(name, f"{path.relative_to(PACKAGE)}:{node.lineno}")
    return found


def dag_file_imports() -> dict[str, str]:
    """Each module of the package a DAG file imports, and which file."""
    found = {}
    for path in (ROOT / "dags").glob("*.py"):
        for node in ast.parse(path.read_text(), str(path)).body:
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "llm_on_eks":
                found.setdefault(node.module, f"dags/{path.name}")
    return found


# No server, but a clean interpreter importing Airflow and both Kubernetes clients: about 12 s,
# more than the edit loop's tier has room for.
@pytest.mark.integration
def test_every_lazy_import_of_a_step_is_loaded_by_the_preload():
    wanted = {**lazy_imports(), **dag_file_imports()}
    assert "kubernetes" in wanted and "llm_on_eks.factory" in wanted and "airflow.providers.amazon.aws.triggers.eks" in wanted  # the costly ones
    probe = ("import importlib, json, sys\n"
             f"for name in {list(TASK_RUNTIME_MODULES)!r}: importlib.import_module(name)\n"
             "print(json.dumps(sorted(sys.modules)))")
    # The path the local stack's Airflow runs with (local_stack/airflow.py).
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "plugins"), str(ROOT)])}
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    loaded = set(json.loads(result.stdout.strip().splitlines()[-1]))
    missing = {name: where for name, where in wanted.items() if name not in loaded}
    assert missing == {}, f"imported at run time but not preloaded (add to TASK_RUNTIME_MODULES): {missing}"


def test_the_local_executor_settings_name_every_module():
    settings = forkserver_settings()
    assert settings["AIRFLOW__SCHEDULER__MP_START_METHOD"] == "forkserver"
    assert settings["AIRFLOW__SCHEDULER__MP_FORKSERVER_PRELOAD"].split(",") == list(TASK_RUNTIME_MODULES)

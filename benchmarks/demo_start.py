"""The README's main command timed as a newcomer meets it: ``scripts/demo`` on a fresh clone with
empty caches (cold: the virtualenvs installed and the control plane built from Go modules), then,
once ``scripts/demo-stop`` has stopped everything, again (warm: all built and installed, nothing
running).

For each it prints when the local stack began to start (before it: the virtualenv installs and
the control-plane build, side by side), the first deploy's trigger (the stack up, its DAGs
parsed), the first token (the first
deployment's smoke test passed: its chat and streamed requests answered through the endpoint),
when every deploy of the first batch served, and the end; then it stops what the demo started.

    .venv/bin/python benchmarks/demo_start.py /work/fresh    # where to clone (must not exist)

A local copy of the CPU torch wheel beside the clone (``../shared/wheels``, or
``VLLM_TORCH_WHEELS``) is used as scripts/setup-vllm uses it; without one, the wheel comes from
PyTorch's CPU index. The empty caches (XDG_CACHE_HOME: uv's,
Go's build cache, the control plane's binaries; GOPATH: Go's modules) are a temporary directory,
removed at the end; ``--keep-caches`` runs the cold pass with this user's caches instead.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# What scripts/demo prints (local_stack/demo.py), in the order it happens.
MARKS = (
    ("stack starts", re.compile(r"^Starting \(or reusing\) the local stack")),
    ("first trigger", re.compile(r"^  deploy_\w+: run demo-")),
    ("first token", re.compile(r"^  \[\d\d:\d\d\] \S+ +smoke_test +success")),
    ("first deploys serve", re.compile(r"^On the shared cluster, a teardown")),
)
DEMO_DEADLINE_S = 3600


def timed_demo(clone: Path, env: dict[str, str], log: Path) -> dict[str, float]:
    """Run scripts/demo in ``clone``; the seconds from its start to each of MARKS and to its end."""
    seen: dict[str, float] = {}
    start = time.monotonic()
    with log.open("w") as out, subprocess.Popen(["scripts/demo"], cwd=clone, env=env, stdout=subprocess.PIPE,
                                                stderr=subprocess.STDOUT, text=True) as demo:
        for line in demo.stdout:
            out.write(line)
            for mark, pattern in MARKS:
                if mark not in seen and pattern.search(line):
                    seen[mark] = time.monotonic() - start
                    print(f"  {seen[mark]:7.0f} s  {mark}", flush=True)
            if time.monotonic() - start > DEMO_DEADLINE_S:
                demo.kill()
                raise SystemExit(f"scripts/demo ran past {DEMO_DEADLINE_S} s; its output: {log}")
    seen["end"] = time.monotonic() - start
    seen["rc"] = demo.returncode
    print(f"  {seen['end']:7.0f} s  end (rc {demo.returncode})", flush=True)
    return seen


def stop(clone: Path, env: dict[str, str]) -> float:
    start = time.monotonic()
    subprocess.run(["scripts/demo-stop"], cwd=clone, env=env, check=True, stdout=subprocess.DEVNULL, timeout=300)
    return time.monotonic() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("clone", type=Path, help="where to clone this repository (must not exist)")
    parser.add_argument("--keep-caches", action="store_true", help="cold pass with this user's caches")
    args = parser.parse_args()
    if args.clone.exists():
        parser.error(f"{args.clone} exists: give a new path")
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(args.clone)], check=True)
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    caches = None if args.keep_caches else Path(tempfile.mkdtemp(prefix="llm-on-eks-demo-caches-"))
    if caches:
        env |= {"XDG_CACHE_HOME": str(caches / "xdg"), "GOPATH": str(caches / "go")}
    results: dict[str, dict[str, float]] = {}
    try:
        for name in ("cold", "warm"):
            print(f"{name}: scripts/demo in {args.clone}" + (f" (caches in {caches})" if caches else ""), flush=True)
            results[name] = timed_demo(args.clone, env, Path(tempfile.gettempdir()) / f"demo_start_{name}.log")
            results[name]["stop"] = stop(args.clone, env)
    finally:
        if caches:
            subprocess.run(["chmod", "-R", "u+w", str(caches)], check=False)  # Go's module cache is read-only
            shutil.rmtree(caches, ignore_errors=True)
    columns = [mark for mark, _ in MARKS] + ["end", "stop"]
    print(f"\n{'run':<6}" + "".join(f"{c:>21}" for c in columns) + f"{'rc':>4}")
    for name, seen in results.items():
        print(f"{name:<6}" + "".join(f"{seen[c]:>19.0f} s" if c in seen else f"{'-':>21}" for c in columns)
              + f"{seen['rc']:>4.0f}")
    memory_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    print(f"\nOn {os.cpu_count()} CPUs and {memory_gib:.0f} GiB. The clone stays at {args.clone}; remove it when done.")
    return 0 if all(seen["rc"] == 0 for seen in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())

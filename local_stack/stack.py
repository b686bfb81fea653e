"""The processes of the local stack: started detached, recorded by PID, reused while they answer,
stopped by PID (never by name).

Each one's PID, port and what it needs to be found again are kept in ``.cache/demo/state.json``,
so a second ``scripts/demo`` reuses what is up and ``scripts/demo-stop`` ends exactly what
``scripts/demo`` started (the local control plane only if it was not already running).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STATE_DIR = ROOT / ".cache" / "demo"
STATE = STATE_DIR / "state.json"
LOGS = STATE_DIR / "logs"
SANDBOX = ROOT / "scripts" / "sandbox-cluster"


def load_state() -> dict:
    return json.loads(STATE.read_text()) if STATE.exists() else {}


def save_state(state: dict) -> None:
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    tmp = STATE.with_suffix(".tmp")
    tmp.write_text(json.dumps(state))
    os.chmod(tmp, 0o600)  # it holds the JWT secret of the local Airflow
    tmp.replace(STATE)


def alive(pid: int | None) -> bool:
    """True while the process runs: a zombie (PID 1 here does not always reap) counts as gone."""
    if not pid:
        return False
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return False
    return fields[0] != "Z"


def is_airflow(pid: int | None) -> bool:
    """The pid Airflow recorded for a try is still one of Airflow's processes (not one that took
    the number since)."""
    try:
        return alive(pid) and b"airflow" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex((host, port)) == 0


def free_port(preferred: int) -> int:
    """``preferred`` when nothing listens on it, else one the kernel picks (127.0.0.1 only)."""
    if not port_open(preferred):
        return preferred
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http_ok(url: str, timeout: float = 3) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status < 400
    except (urllib.error.URLError, OSError):
        return False


def spawn(name: str, args: list[str], env: dict[str, str]) -> int:
    """Start ``args`` in a session of its own (so its children stop with it), output to its log."""
    LOGS.mkdir(parents=True, exist_ok=True)
    with open(LOGS / f"{name}.log", "ab") as log:
        process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                   cwd=ROOT, start_new_session=True)
    return process.pid


def wait_until(check: Callable[[], bool], timeout_s: float, what: str, pid: int | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if pid is not None and not alive(pid):
            raise RuntimeError(f"{what}: the process exited; see its log in {LOGS}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout_s:.0f} s; see the logs in {LOGS}")
        time.sleep(1)


def stop_pid(pid: int | None, grace_s: float = 20) -> None:
    """SIGTERM the process's session, SIGKILL what is left after ``grace_s``."""
    stop_pids([pid], grace_s)


def stop_pids(pids: list[int | None], grace_s: float = 20) -> None:
    """``stop_pid`` for several processes at once: each is signalled before any is waited for, so
    stopping them takes the slowest one's time, not the sum (Airflow's components each take a few
    seconds to shut down). Once a session's leader is gone, whatever is left of the session is
    signalled again: a process started while it shut down (a LocalExecutor worker forked then by
    the scheduler's forkserver) got no signal the first time, and would outlive the stack."""
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 10)):
        left = [pid for pid in pids if pid and _session_alive(pid)]
        _signal_sessions(left, sig)
        deadline = time.monotonic() + wait_s
        while any(alive(pid) for pid in left) and time.monotonic() < deadline:
            time.sleep(0.3)
        _signal_sessions([pid for pid in left if _session_alive(pid)], sig)
        while any(_session_alive(pid) for pid in left) and time.monotonic() < deadline:
            time.sleep(0.3)


def _signal_sessions(pids: list[int], sig: int) -> None:
    for pid in pids:
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            pass


def group_stats(pgid: int) -> Iterator[list[str]]:
    """The /proc stat fields (from the state on) of each process in process group ``pgid``."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:
            yield fields


def _session_alive(pgid: int) -> bool:
    """Whether a process of the group ``spawn`` made ``pgid`` the leader of runs (the leader or
    not; zombies count as gone, as in ``alive``)."""
    return any(fields[0] != "Z" for fields in group_stats(pgid))


def sandbox(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    """scripts/sandbox-cluster ``args``; with ``check``, a failure raises with the end of what it said."""
    done = subprocess.run([str(SANDBOX), *args], capture_output=True, text=True, timeout=1800)
    if check and done.returncode:
        said = "\n".join((done.stdout + done.stderr).splitlines()[-20:])
        raise RuntimeError(f"scripts/sandbox-cluster {' '.join(args)} failed (exit {done.returncode}):\n{said}")
    return done

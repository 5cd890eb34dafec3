"""A real local Ray cluster for the ray backend's tests and benchmark: a head and a second
node on this machine, started with the ``ray`` CLI of this environment (the ``ray`` extra).

Each node declares one agent slot (``claude: 1``) and a marker resource (``head: 1``,
``worker: 1``), so a test can place an agent on either node, and gets its own ``HOME`` (with
``.claude.json``) through the environment ``ray start`` runs in, which every job on that node
inherits: a session transcript under a node's ``HOME`` was written by a claude on that node.
Both nodes share one ``--temp-dir``: with two temp dirs on one machine the head reads a job's
log from its own log directory, not the one of the node that ran it (checked with Ray 2.60;
on separate machines each node has its own). Small settings for a small machine: one CPU,
an 80 MB object store, no memory monitor, no usage stats; a node is declared dead after ~3 s
without heartbeats, so the "node died" test does not wait Ray's default 30 s.

Stopping is by process id (every process whose command line names the cluster's temp dir,
and what they started), never ``ray stop``, which stops every Ray on the machine.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Mapping
from pathlib import Path

from orch_plugins.procs import descendants
from orch_plugins.testing.pytest_plugin import QUIET_ENV, TEST_API_KEY, write_claude_config

RAY = Path(sys.executable).with_name("ray")
#: Each node's agent slots and marker resource.
HEAD_RESOURCES = {"claude": 1, "head": 1}
WORKER_RESOURCES = {"claude": 1, "worker": 1}
#: Ray's own settings for a 2-core machine shared with other work.
RAY_ENV = {
    "RAY_memory_monitor_refresh_ms": "0",
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_health_check_period_ms": "1000",
    "RAY_health_check_failure_threshold": "3",
    "RAY_health_check_initial_delay_ms": "1000",
    # Each job's supervisor is a Ray actor in a new worker process; with one CPU Ray starts
    # those one at a time.
    "RAY_worker_maximum_startup_concurrency": "4",
}


class RayMissing(RuntimeError):
    """The ``ray`` CLI is not installed here (``pip install 'orch-plugins[ray]'``)."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Cluster:
    """A running head (``head``) and second node (``worker``)."""

    def __init__(
        self,
        root: Path,
        api_url: str,
        claude_dir: str,
        resources: Mapping[str, Mapping[str, int]] | None = None,
    ) -> None:
        if not RAY.exists():
            raise RayMissing(f"{RAY} not found: pip install 'orch-plugins[ray]'")
        self.root = root
        self.temp = root / "t"  # short: Ray's socket paths live below it
        self.homes = {"head": root / "head-home", "worker": root / "worker-home"}
        self.api_url = api_url
        self.claude_dir = claude_dir
        self.gcs_port = free_port()
        self.dashboard_port = free_port()
        self.address = f"http://127.0.0.1:{self.dashboard_port}"
        self.resources = dict(resources or {"head": HEAD_RESOURCES, "worker": WORKER_RESOURCES})

    def env(self, node: str) -> dict[str, str]:
        """What ``ray start`` runs with for ``node``: its HOME, claude on PATH, the stand-in."""
        home = self.homes[node]
        home.mkdir(parents=True, exist_ok=True)
        write_claude_config(home)
        keep = ("LANG", "LC_ALL", "TZ", "TMPDIR")
        env = {k: v for k, v in os.environ.items() if k in keep}
        path = [self.claude_dir, str(Path(sys.executable).parent), "/usr/local/bin", "/usr/bin",
                "/bin"]  # fmt: skip
        env.update(
            HOME=str(home),
            PATH=os.pathsep.join(dict.fromkeys(path)),
            ANTHROPIC_BASE_URL=self.api_url,
            ANTHROPIC_API_KEY=TEST_API_KEY,
            **QUIET_ENV,
            **RAY_ENV,
        )
        env.setdefault("LANG", "C.UTF-8")
        return env

    def _ray_start(self, node: str, args: list[str]) -> None:
        resources = self.resources[node]
        argv = [
            str(RAY), "start", "--num-cpus", "1", "--object-store-memory", "80000000",
            "--resources", json.dumps(resources), "--temp-dir", str(self.temp),
            "--node-ip-address", "127.0.0.1", "--dashboard-agent-listen-port", str(free_port()),
            "--disable-usage-stats", *args,
        ]  # fmt: skip
        proc = subprocess.run(
            argv, env=self.env(node), capture_output=True, text=True, timeout=180,
            cwd=self.root, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        if proc.returncode != 0:
            raise RuntimeError(f"ray start ({node}) failed: {proc.stderr[-3000:]}")

    def start(self) -> Cluster:
        self.temp.mkdir(parents=True, exist_ok=True)
        self._ray_start(
            "head",
            ["--head", "--port", str(self.gcs_port), "--dashboard-port", str(self.dashboard_port),
             "--dashboard-host", "127.0.0.1", "--include-dashboard", "true",
             "--ray-client-server-port", str(free_port())],
        )  # fmt: skip
        self.wait_api()
        self.start_worker()
        return self

    def start_worker(self) -> None:
        self._ray_start("worker", ["--address", f"127.0.0.1:{self.gcs_port}"])
        self.wait_nodes(2)

    def wait_api(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(self.address + "/api/version", timeout=5):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    def alive_nodes(self) -> list[dict[str, object]]:
        with urllib.request.urlopen(self.address + "/nodes?view=summary", timeout=10) as resp:
            data = json.loads(resp.read())
        nodes = data["data"]["summary"]
        return [n for n in nodes if n.get("raylet", {}).get("state") == "ALIVE"]

    def wait_nodes(self, count: int, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while len(self.alive_nodes()) != count:
            if time.monotonic() > deadline:
                raise AssertionError(f"the cluster has not {count} live nodes")
            time.sleep(0.5)

    def pids(self, needle: str | None = None) -> list[int]:
        """Processes whose command line names this cluster's temp dir (and ``needle``)."""
        mark = str(self.temp).encode()
        out = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if mark in cmdline and (needle is None or needle.encode() in cmdline):
                out.append(int(entry.name))
        return out

    def kill_worker(self) -> None:
        """The second node dies: its raylet and everything under it (its agents' jobs too),
        with SIGKILL, as a machine that loses power."""
        raylets = [p for p in self.pids("raylet/raylet") if _has(p, b"worker,1")]
        assert raylets, "the worker node's raylet is not running"
        _kill_trees(raylets)

    def stop(self) -> None:
        _kill_trees(self.pids())
        shutil.rmtree(self.root, ignore_errors=True)


def _has(pid: int, needle: bytes) -> bool:
    try:
        return needle in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def _kill_trees(pids: list[int]) -> None:
    everyone = set()
    for pid in pids:
        everyone.add(pid)
        everyone.update(descendants(pid))
    for pid in everyone:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


def start_cluster(
    api_url: str, claude_dir: str, resources: Mapping[str, Mapping[str, int]] | None = None
) -> Cluster:
    """A fresh cluster under a new temp directory (``/tmp/orch-ray-*``); ``resources``:
    ``{"head": {...}, "worker": {...}}`` instead of one slot and a marker each."""
    root = Path(tempfile.mkdtemp(prefix="orch-ray-", dir="/tmp"))
    cluster = Cluster(root, api_url, claude_dir, resources)
    try:
        return cluster.start()
    except BaseException:
        cluster.stop()
        raise

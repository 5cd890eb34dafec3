"""Speed of the ray backend on a real local Ray cluster; prints figures, asserts nothing.

    python benchmarks/bench_ray.py [--agents 20] [--repeat 5]

Starts a local cluster (tests/ray/cluster.py: a head and a second node on this machine, here
with ``agents`` slots between them) whose "claude" is a stub that notes when it started,
reports a session and sleeps, and measures, beside the local subprocess backend:

- launch to running: from the start of ``orch launch`` to the stub claude running (its start
  time, written by the stub itself, so no polling delay counts), one agent at a time;
- one status read with ``agents`` running agents: ``orch status --json`` as a whole command
  (what a person or the orchestrator pays), and the core's read in-process
  (``Orchestrator.status``: the backend's poll, logs of running jobs included).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.ray.cluster import start_cluster  # noqa: E402

ORCH = [sys.executable, "-m", "orch_plugins.cli"]
#: A claude that notes when it started (for launch-to-running), reports a session, sleeps.
STUB = """#!/bin/sh
python3 -c 'import time; print(repr(time.time()))' > "{marks}/$ORCH_AGENT-$ORCH_RUN_ID"
sid=00000000-0000-0000-0000-$(printf %012d "$ORCH_RUN_ID")
echo '{{"type":"system","subtype":"init","session_id":"'$sid'"}}'
exec sleep 600
"""


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


def summary(samples: list[float]) -> str:
    return f"median {ms(statistics.median(samples))} (min {ms(min(samples))}, n={len(samples)})"


def orch(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*ORCH, *args], env=env, check=True, capture_output=True, text=True, timeout=300
    )


def launch_to_running(env: dict[str, str], marks: Path, backend: str, name: str) -> float:
    """Seconds from ``orch launch`` to the stub claude's own start."""
    t0 = time.time()
    out = orch(env, "launch", name, "bench task", "-b", backend, "--json")
    run_id = json.loads(out.stdout)["run_id"]
    mark = marks / f"{name}-{run_id}"
    deadline = time.monotonic() + 120
    while not mark.exists() or not mark.read_text().strip():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{name} did not start on {backend}")
        time.sleep(0.01)
    started = float(mark.read_text())
    orch(env, "cancel", name)
    return started - t0


def status_reads(env: dict[str, str], repeat: int) -> tuple[list[float], list[float]]:
    """Whole ``orch status --json`` commands, and in-process status reads (a fresh
    orchestrator each time, as each command has)."""
    whole = []
    for _ in range(repeat):
        t = time.perf_counter()
        orch(env, "status", "--json")
        whole.append(time.perf_counter() - t)
    # Each read starts cold, as a new ``orch`` process does: the ray backend's note of when
    # this process last read each log (``poll_interval``) is forgotten first.
    code = (
        "import json, os, sys, time\n"
        "from orch_plugins.core import Orchestrator\n"
        "from orch_plugins.backends.ray import backend\n"
        "samples = []\n"
        f"for _ in range({repeat}):\n"
        "    backend._LAST_READ.clear()\n"
        "    t = time.perf_counter(); Orchestrator().status(); "
        "samples.append(time.perf_counter() - t)\n"
        "print(json.dumps(samples))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, check=True, capture_output=True, text=True
    )
    return whole, json.loads(proc.stdout)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--agents", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    n, repeat = args.agents, args.repeat
    base = Path(tempfile.mkdtemp(prefix="orch-bench-ray-"))
    marks = base / "marks"
    marks.mkdir()
    stub = base / "claude-stub"
    stub.write_text(STUB.format(marks=marks))
    stub.chmod(0o755)
    half = (n + 1) // 2
    cluster = start_cluster(
        "http://127.0.0.1:9",
        str(base),
        {"head": {"claude": half, "head": 1}, "worker": {"claude": n - half + 1, "worker": 1}},
    )
    try:
        project = base / "project"
        project.mkdir()
        (project / "README.md").write_text("a small project\n")
        config = base / "config.toml"
        config.write_text(
            f"max_parallel = {n + 5}\n[backends.ray]\n"
            f'address = "{cluster.address}"\nclaude = "{stub}"\n'
        )
        env = {
            **os.environ,
            "ORCH_STATE_DIR": str(project / ".orchestrate"),
            "ORCH_CONFIG": str(config),
            "ORCH_CLAUDE_BIN": str(stub),
            "HOME": str(base / "home"),
            "PYTHONPATH": str(ROOT / "src"),
        }
        os.chdir(project)
        results: dict[str, list[float]] = {}
        for backend in ("subprocess", "ray"):
            samples = []
            for i in range(repeat):
                samples.append(launch_to_running(env, marks, backend, f"{backend[:3]}{i}"))
            results[f"launch to running, {backend}"] = samples
        orch(env, "clear")
        for backend in ("subprocess", "ray"):
            t0 = time.monotonic()
            orch(env, "parallel", *(["bench task"] * n), "-b", backend, "--prefix",
                 f"{backend[:3]}-s")  # fmt: skip
            deadline = time.monotonic() + 900
            while (
                started := len(
                    [m for m in marks.iterdir() if m.name.startswith(f"{backend[:3]}-s")]
                )
            ) < n:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"only {started} of {n} {backend} agents started")
                time.sleep(0.2)
            results[f"orch parallel of {n} until all run, {backend}"] = [time.monotonic() - t0]
            orch(env, "status")  # the first read records every agent's progress
            whole, inproc = status_reads(env, repeat)
            results[f"orch status --json, {n} running {backend} agents"] = whole
            results[f"status read in-process, {n} running {backend} agents"] = inproc
            orch(env, "cancel", "--all")
            orch(env, "clear")
        width = max(map(len, results))
        load = os.getloadavg()[0]
        print(f"ray backend: local 2-node cluster, {os.cpu_count()} CPUs, load {load:.1f}")
        for what, samples in results.items():
            print(f"  {what.ljust(width)}  {summary(samples)}")
    finally:
        cluster.stop()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()

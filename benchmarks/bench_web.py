"""How fast ``orch web`` serves the agents page; prints figures, asserts nothing.

    python benchmarks/bench_web.py [--recorded 500] [--running 50]

A store with RECORDED ended runs and RUNNING agents really running (a stub claude that sleeps,
each under its own supervisor, ``orch parallel``), then: the agents page (``GET /``, the whole
HTML of RECORDED + RUNNING rows) over HTTP from the real ``orch web`` server, beside
``orch status --json`` on the same store as a baseline (a whole CLI process: start-up, store
read, liveness check of the running agents, JSON). Target (issue 14): under 300 ms.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_core import seed_runs

ORCH = [sys.executable, "-m", "orch_plugins.cli"]
STUB = "#!/bin/sh\ncat >/dev/null\nexec sleep 600\n"


def ms(samples: list[float]) -> str:
    return f"median {statistics.median(samples) * 1000:.1f} ms (min {min(samples) * 1000:.1f}, max {max(samples) * 1000:.1f})"  # noqa: E501


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--recorded", type=int, default=500)
    ap.add_argument("--running", type=int, default=50)
    ap.add_argument("--samples", type=int, default=20)
    args = ap.parse_args()
    base = Path(tempfile.mkdtemp(prefix="bench-web-"))
    stub = base / "claude-stub"
    stub.write_text(STUB)
    stub.chmod(0o755)
    env = dict(os.environ)
    env.update(
        ORCH_STATE_DIR=str(base / "state"),
        ORCH_CLAUDE_BIN=str(stub),
        ORCH_CONFIG=str(base / "none.toml"),
        ORCH_MAX_PARALLEL=str(args.running + 10),
    )
    seed_runs(base / "state", args.recorded)
    web = None
    try:
        tasks = [f"running task {i}" for i in range(args.running)]
        subprocess.run(
            [*ORCH, "parallel", "--prefix", "live", *tasks],
            env=env,
            cwd=base,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        status = [_timed([*ORCH, "status", "--json"], env) for _ in range(5)]
        web = subprocess.Popen(
            [*ORCH, "web", "--port", "0"],
            env=env,
            cwd=base,
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        assert web.stdout is not None
        m = re.search(r"on (http://\S+)/\?token=(\S+)", web.stdout.readline())
        assert m, "orch web printed no URL"
        url, head = m[1] + "/", {"X-Orch-Token": m[2]}
        first = _get(url, head)
        pages, size = [], 0
        for _ in range(args.samples):
            t = time.perf_counter()
            size = len(_fetch(url, head))
            pages.append(time.perf_counter() - t)
        rows = _fetch(url, head).count(b'<tr id="agent-')
        print(f"store: {args.recorded} recorded runs + {args.running} running agents ({rows} rows)")
        print(f"orch status --json (baseline, whole process): {ms(status)}")
        print(
            f"orch web, agents page GET / ({size // 1024} KiB): first {first * 1000:.1f} ms, "
            f"then {ms(pages)} (target < 300 ms)"
        )
    finally:
        if web is not None:
            os.killpg(web.pid, signal.SIGINT)
            web.wait(10)
        subprocess.run([*ORCH, "cancel", "--all"], env=env, stdout=subprocess.DEVNULL)
        shutil.rmtree(base, ignore_errors=True)


def _timed(cmd: list[str], env: dict[str, str]) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t


def _fetch(url: str, headers: dict[str, str]) -> bytes:
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=30) as r:
        return r.read()


def _get(url: str, headers: dict[str, str]) -> float:
    t = time.perf_counter()
    _fetch(url, headers)
    return time.perf_counter() - t


if __name__ == "__main__":
    main()

"""Rejected requests in a rate-limit storm: six bare ``claude -p`` against six agents through
``orch``, for the same storm; prints both counts side by side, asserts nothing.

    python benchmarks/bench_ratelimit.py [--agents 6] [--storm 4] [--retry-after 1]

The Messages API stand-in (``orch_plugins.testing.api``) answers every request with 429 and a
``retry-after`` header for ``--storm`` seconds from the first request of each run; Claude Code's
own retries are on (``CLAUDE_CODE_MAX_RETRIES=10``, its default). Needs the real ``claude`` on
PATH. Through orch the default ``max_parallel`` (4) applies; see docs/fleet.md#rate-limits.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from orch_plugins.testing.api import MessagesStandIn
from orch_plugins.testing.pytest_plugin import make_claude_env

ORCH = [sys.executable, "-m", "orch_plugins.cli"]


def bare(claude: str, env: dict[str, str], cwd: Path, tasks: list[str]) -> bool:
    procs = [
        subprocess.Popen(
            [claude, "-p", "--output-format", "stream-json", "--verbose", task],
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for task in tasks
    ]
    return all(p.wait(timeout=600) == 0 for p in procs)


def through_orch(claude: str, env: dict[str, str], cwd: Path, tasks: list[str]) -> bool:
    env = {
        **env,
        "ORCH_STATE_DIR": str(cwd / ".orchestrate"),
        "ORCH_CLAUDE_BIN": claude,
        "ORCH_CONFIG": str(cwd / "none.toml"),
    }
    env.pop("ORCH_MAX_PARALLEL", None)
    run = lambda *a: subprocess.run(  # noqa: E731
        [*ORCH, *a], env=env, cwd=cwd, capture_output=True, text=True, timeout=600
    )
    run("parallel", *tasks, "--prefix", "storm")
    run("wait")
    runs = json.loads(run("status", "--json").stdout)
    return len(runs) == len(tasks) and all(r["status"] == "completed" for r in runs)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=6)
    parser.add_argument("--storm", type=float, default=10.0, help="seconds of 429s")
    parser.add_argument("--retry-after", type=float, default=1.0)
    args = parser.parse_args()
    claude = shutil.which("claude")
    if claude is None:
        print("claude not found on PATH", file=sys.stderr)
        return 1
    tasks = [f"storm task {i}" for i in range(args.agents)]
    results = {}
    with tempfile.TemporaryDirectory() as tmp, MessagesStandIn() as api:
        for label, how in (("bare claude -p", bare), ("through orch", through_orch)):
            work = Path(tmp, label.replace(" ", "-"))
            work.mkdir()
            env = make_claude_env(api.url, work / "home")
            env["CLAUDE_CODE_MAX_RETRIES"] = "10"
            api.reset()
            api.rate_limit(args.storm, status=429, retry_after=args.retry_after)
            start = time.monotonic()
            ok = how(os.path.abspath(claude), env, work, tasks)
            results[label] = (api.rejected, ok, time.monotonic() - start)
    print(
        f"{args.agents} agents, 429 (retry-after {args.retry_after:g} s) for {args.storm:g} s "
        "from the first request"
    )
    print(f"{'':16} {'rejected':>8}  {'all completed':>13}  {'wall':>6}")
    for label, (rejected, ok, wall) in results.items():
        print(f"{label:16} {rejected:>8}  {'yes' if ok else 'NO':>13}  {wall:>5.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The MCP ``status`` tool's round trip with 100 recorded runs, beside ``orch status --json``.

    python benchmarks/bench_mcp.py

One ``orch mcp`` server (started once, as Claude Code keeps it) is called through the MCP
Python SDK's client over stdio: the figure is the time from sending ``tools/call status`` to
having its result, what a Claude Code session waits per call. The baseline is a whole ``orch
status --json`` process (what the Bash tool runs). Also: the server's start-up until its first
answer (Claude Code pays it once per session). Prints figures, asserts nothing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import anyio
from mcp import Client, StdioServerParameters

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_core import ORCH, median_ms, seed_runs

RUNS = 100
CALLS = 30


async def mcp_figures(env: dict[str, str], cwd: str) -> tuple[float, list[float], int]:
    server = StdioServerParameters(
        command=sys.executable, args=["-m", "orch_plugins.cli", "mcp"], env=env, cwd=cwd
    )
    start = time.perf_counter()
    async with Client(server) as client:
        await client.call_tool("status", {})
        first = time.perf_counter() - start
        samples = []
        count = 0
        for _ in range(CALLS):
            t = time.perf_counter()
            result = await client.call_tool("status", {})
            samples.append(time.perf_counter() - t)
            count = len(result.structured_content["agents"])
    return first, samples, count


def main() -> None:
    base = Path(tempfile.mkdtemp(prefix="orch-bench-mcp-"))
    state = base / "state"
    env = {**os.environ, "ORCH_STATE_DIR": str(state), "ORCH_CONFIG": str(base / "none.toml")}
    seed_runs(state, RUNS)
    first, calls, count = anyio.run(mcp_figures, env, str(base))
    assert count == RUNS, count
    cli = []
    for _ in range(10):
        t = time.perf_counter()
        out = subprocess.run(
            [*ORCH, "status", "--json"], env=env, check=True, capture_output=True, text=True
        ).stdout
        cli.append(time.perf_counter() - t)
    assert len(json.loads(out)) == RUNS
    print(f"MCP status tool, {RUNS} runs, round trip:   {median_ms(calls)}")
    print(f"orch status --json, {RUNS} runs (baseline): {median_ms(cli)}")
    print(f"orch mcp start-up to its first answer:     {first * 1000:.0f} ms")
    print(f"(load average while measuring: {os.getloadavg()[0]:.1f}; median of {CALLS} calls)")


if __name__ == "__main__":
    main()

"""The health of a fleet, with the real Claude Code against the stand-in: rate limits shared by
every agent, the watchdog (``stalled``), and an agent that exits 0 without a result."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from orch_plugins.testing.api import MessagesStandIn, Reply
from tests.helpers import orch, pid_gone, status_json, wait_for

pytestmark = pytest.mark.e2e

#: The stand-in answers 429 (retry-after 1 s) for this long from its next request on.
STORM = 10.0


def test_six_agents_in_a_rate_limit_storm_cause_far_fewer_rejections_through_orch(
    real_project: Path,
    messages_api: MessagesStandIn,
    claude_env: dict[str, str],
    claude_bin: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Claude Code's own retries on (the test kit turns them off): ten, as by default.
    env = {**claude_env, "CLAUDE_CODE_MAX_RETRIES": "10"}
    monkeypatch.setenv("CLAUDE_CODE_MAX_RETRIES", "10")
    tasks = [f"storm task {i}" for i in range(6)]

    messages_api.rate_limit(STORM, status=429, retry_after=1)
    bare = [
        subprocess.Popen(
            [claude_bin, "-p", "--output-format", "stream-json", "--verbose", task],
            env=env,
            cwd=real_project,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for task in tasks
    ]
    outs = [p.communicate(timeout=180) for p in bare]
    assert [p.returncode for p in bare] == [0] * 6, [err[-300:] for _, err in outs]
    rejected_bare = messages_api.rejected

    messages_api.reset()
    messages_api.rate_limit(STORM, status=429, retry_after=1)
    orch("parallel", *tasks, "--prefix", "storm", check=True)
    orch("wait", "--timeout", "180", check=True, timeout=200)
    rejected_orch = messages_api.rejected
    runs = status_json()
    assert [r["status"] for r in runs] == ["completed"] * 6
    assert sum(r["api_retries"] for r in runs) == rejected_orch
    print(f"rejected requests: bare claude -p {rejected_bare}, through orch {rejected_orch}")
    assert rejected_orch * 2 <= rejected_bare, (rejected_orch, rejected_bare)


def _claude_pids(run: dict) -> list[int]:
    return [run["claude_pid"]] if run.get("claude_pid") else []


def test_a_stalled_stream_ends_stalled_and_a_slow_live_one_is_left_alone(
    real_project: Path, messages_api: MessagesStandIn
) -> None:
    messages_api.on("STALL", Reply.stall("thinking about it"))
    messages_api.on("SLOW", Reply.endless("still writing ", pace=0.5))
    idle = 3.0
    start = time.monotonic()
    orch("launch", "stuck", "STALL here", "--idle-timeout", str(idle), check=True)
    orch("launch", "slow", "SLOW here", "--idle-timeout", str(idle), check=True)
    orch("wait", "stuck", "--timeout", "90", timeout=120)
    stuck = status_json("stuck")[0]
    assert stuck["status"] == "stalled", stuck
    assert stuck["error"] == f"stalled: no event from claude for {idle:g} s; stopped"
    assert stuck["idle_timeout"] == idle
    # Within the idle timeout plus a grace (claude's start, kill_grace), its processes gone.
    assert time.monotonic() - start < idle + 30
    assert wait_for(lambda: all(pid_gone(p) for p in _claude_pids(stuck)), timeout=10)
    # The slow one writes a little every half second: live, whatever its idle timeout.
    time.sleep(idle + 1)
    slow = status_json("slow")[0]
    assert slow["status"] == "running", slow
    orch("cancel", "slow", check=True)
    assert status_json("slow")[0]["status"] == "cancelled"


def test_an_agent_exiting_0_without_a_result_fails(
    real_project: Path, claude_bin: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The real claude, asked for nothing but its version: exit 0, no result event.
    wrapper = tmp_path / "claude-version-only"
    wrapper.write_text(f"#!/bin/sh\nexec {claude_bin} --version\n")
    wrapper.chmod(0o755)
    monkeypatch.setenv("ORCH_CLAUDE_BIN", str(wrapper))
    orch("launch", "quiet", "say nothing", check=True)
    orch("wait", "quiet", "--timeout", "60", timeout=90)
    run = status_json("quiet")[0]
    assert run["status"] == "failed" and run["exit_code"] == 0
    assert run["error"].startswith("claude exited with code 0 without a result")
    assert os.path.exists(run["log_path"])

"""kill -9 with the real Claude Code: its real process tree (claude, the Bash tool's shell, what
that started) is what must not be orphaned, and a real answer what must not be lost."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from orch_plugins.testing.api import MessagesStandIn, Reply
from tests.faults.kit import Case, leftovers
from tests.helpers import running, wait_for

pytestmark = pytest.mark.e2e


def test_kills_with_real_claude(
    real_project: Path, messages_api: MessagesStandIn, tmp_path: Path
) -> None:
    # The supervisor is killed while claude runs a tool: claude, its shell and the tool's
    # process are all stopped by the status read that finds the run lost.
    tool = "timeout 287.61 tail -f /dev/null"  # newer Claude Code refuses a bare long sleep
    messages_api.on("MID TOOL", Reply.bash(tool), Reply.text("never", delay=60))
    # The launcher is killed once the supervisor is started, before its handle is recorded:
    # the run goes on, shown running, and completes with claude's real answer.
    messages_api.on("ORPHANED START", Reply.text("the real answer", delay=3))
    mid = Case(tmp_path / "cases", "mid-tool")
    start = Case(tmp_path / "cases", "launch-spawned")
    assert mid.orch("launch", "mid", "MID TOOL", "--role", "implementer").returncode == 0
    out = start.orch("launch", "orphan", "ORPHANED START", fault="launch-spawned")
    assert out.returncode == -9, out

    [first] = start.runs(clock="+600")  # even with the wall clock ten minutes ahead
    assert first["status"] == "running", first
    wait_for(lambda: len(running(tool)) == 1, timeout=90)
    [run] = mid.runs()
    assert run["status"] == "running" and run["claude_pid"], run
    supervisor = wait_for(lambda: [p for p, _ in leftovers(run, 0) if p != run["claude_pid"]])
    os.kill(min(supervisor), signal.SIGKILL)  # the supervisor started before claude's tree

    [run] = mid.settle()
    assert run["status"] == "lost" and "without recording a result" in run["error"], run
    assert not leftovers(run), "claude's tree outlived its lost run"
    assert not running(tool)
    [done] = start.settle(timeout=90)
    assert done["status"] == "completed", done
    assert Path(done["output_path"]).read_text().strip() == "the real answer"
    assert not leftovers(done)
    # One claude per run: the stand-in saw one conversation for each.
    sessions = {r.session_id for r in messages_api.requests if not r.is_title_request}
    assert len(sessions) == 2, sessions

"""kill -9 with the real Claude Code: its real process tree (claude, the Bash tool's shell, what
that started) is what must not be orphaned, and a real answer what must not be lost."""

from __future__ import annotations

import json
import os
import signal
import sys
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


def test_an_agents_hooks_killed_with_real_claude(
    real_project: Path, messages_api: MessagesStandIn, tmp_path: Path
) -> None:
    """The agent's own Claude Code hooks (a project install: SessionStart, UserPromptSubmit,
    Stop) are killed halfway (``hook-session``: the session claimed for the run, not yet
    recorded): the hooks fail, the agent does not; its run completes with its session."""
    root = Path(__file__).resolve().parents[2]
    shim = root / "claude" / "hooks" / "orch_hook.py"
    case = Case(tmp_path / "cases", "hooks")
    where = case.root / case.step
    (where / ".claude").mkdir(parents=True)
    events = ("SessionStart", "UserPromptSubmit", "Stop")
    command = f"{sys.executable} -I -S {shim} {{}} {root / 'src'}"
    hooks = {e: [{"hooks": [{"type": "command", "command": command.format(e)}]}] for e in events}
    (where / ".claude" / "settings.json").write_text(json.dumps({"hooks": hooks}))
    messages_api.on("HOOKED", Reply.text("answered anyway"))
    out = case.orch("launch", "hooked", "HOOKED", "--wait", fault="hook-session", timeout=120)
    assert out.returncode == 0, out.stderr
    [run] = case.runs()
    assert run["status"] == "completed" and run["session_id"], run
    assert Path(run["output_path"]).read_text().strip() == "answered anyway"
    # The hooks did run: SessionStart and UserPromptSubmit were killed before they recorded
    # the session (no source, no such last event), Stop (no fault point) recorded it.
    [session] = json.loads(case.orch("sessions", "--json").stdout)
    assert session["session_id"] == run["session_id"] and session["run_id"] == run["run_id"]
    assert session["source"] is None and session["last_event"] == "Stop", session
    assert not leftovers(run)

"""The agent life cycle with the real Claude Code CLI (pinned) and the Messages API stand-in."""

from __future__ import annotations

import itertools
import json
import os
import signal
import sqlite3
from pathlib import Path

import pytest

from orch_plugins.supervisor import descendants
from orch_plugins.testing.api import MessagesStandIn, Reply
from tests.helpers import (
    init_session,
    leaver,
    orch,
    pid_gone,
    running,
    status_json,
    wait_for,
)

pytestmark = pytest.mark.e2e

HOSTILE = 'GAMMA it\'s "q" $(touch /tmp/pwned) `id` ; | & > x\n\tünï 🚀 {task} %s\\'


def _handle(project: Path, run_id: int) -> dict:
    con = sqlite3.connect(project / ".orchestrate" / "state.db")
    try:
        row = con.execute("SELECT handle FROM runs WHERE run_id=?", (run_id,)).fetchone()
        return json.loads(row[0])
    finally:
        con.close()


def test_three_parallel_agents(real_project: Path, messages_api: MessagesStandIn) -> None:
    messages_api.on("ALPHA", Reply.text("alpha result"))
    messages_api.on("BETA", Reply.text("beta result"))
    messages_api.on("GAMMA", Reply.text("gamma result"))
    r = orch("parallel", "ALPHA task", "BETA task", HOSTILE, "--json", check=True)
    assert [x["name"] for x in json.loads(r.stdout)] == ["agent1", "agent2", "agent3"]
    orch("wait", "--timeout", "120", check=True, timeout=150)
    for name, text in (("agent1", "alpha"), ("agent2", "beta"), ("agent3", "gamma")):
        assert orch("output", name, check=True).stdout == f"{text} result\n"
    runs = status_json()
    assert all(r["status"] == "completed" and r["exit_code"] == 0 for r in runs)
    for run in runs:
        assert run["session_id"] == init_session(run)  # recorded = what Claude Code reported
        assert run["cost_usd"] > 0 and run["num_turns"] >= 1
    prompts = {req.prompt_text for req in messages_api.conversation_requests()}
    assert HOSTILE in prompts  # byte for byte, through stdin
    assert not Path("/tmp/pwned").exists()


def test_bash_tool_resume_and_fork(real_project: Path, messages_api: MessagesStandIn) -> None:
    messages_api.on("MAKE FILE", Reply.bash("echo made > made.txt"), Reply.text("file made"))
    messages_api.on("SECOND TURN", Reply.text("second answer"))
    messages_api.on("FORKED TURN", Reply.text("fork answer"))
    orch("launch", "builder", "MAKE FILE please", "--role", "implementer", check=True)
    orch("wait", "builder", check=True, timeout=120)
    assert (real_project / "made.txt").read_text() == "made\n"
    first = status_json("builder")[0]
    assert first["tool_calls"] == 1 and first["num_turns"] >= 2

    orch("resume", "builder", "SECOND TURN now", check=True)
    orch("wait", "builder", check=True, timeout=120)
    second = status_json("builder")[0]
    assert second["session_id"] == first["session_id"]
    assert orch("output", "builder", check=True).stdout == "second answer\n"
    req = next(r for r in messages_api.conversation_requests() if "SECOND TURN" in r.prompt_text)
    assert any("MAKE FILE" in t for t in req.all_user_texts)  # the model saw the earlier turn

    orch("resume", "builder", "FORKED TURN", "--fork", "--as", "branch", check=True)
    orch("wait", "branch", check=True, timeout=120)
    fork = status_json("branch")[0]
    assert fork["session_id"] and fork["session_id"] != first["session_id"]
    req = next(r for r in messages_api.conversation_requests() if "FORKED TURN" in r.prompt_text)
    assert any("SECOND TURN" in t for t in req.all_user_texts)

    orch("launch", "from", "FORKED TURN again", "--from", "builder", check=True)
    orch("wait", "from", check=True, timeout=120)
    assert status_json("from")[0]["session_id"] not in (first["session_id"], fork["session_id"])


def _claude_tree_gone(handle: dict) -> bool:
    return pid_gone(handle["pid"]) and not descendants(handle["pid"])


def test_timeout_and_cancel(real_project: Path, messages_api: MessagesStandIn) -> None:
    messages_api.on("SLOW", Reply.text("too late", delay=60))
    orch("launch", "slow", "SLOW one", "--timeout", "3", check=True)
    orch("launch", "stopme", "SLOW two", check=True)
    run = wait_for(lambda: status_json("stopme")[0]["session_id"] and status_json("stopme")[0])
    handle = _handle(real_project, run["run_id"])
    children = descendants(handle["pid"])
    assert children  # claude runs under the supervisor
    assert "stopme: cancelled" in orch("cancel", "stopme", check=True).stdout
    assert all(pid_gone(p) for p in [handle["pid"], *children])
    r = orch("wait", "slow", timeout=60)
    assert r.returncode == 1 and "slow: timed_out" in r.stdout
    slow = status_json("slow")[0]
    assert slow["error"] == "timed out after 3.0 s"
    assert wait_for(lambda: _claude_tree_gone(_handle(real_project, slow["run_id"])))


def test_retry_after_api_errors_continues_the_session(
    real_project: Path, messages_api: MessagesStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLAUDE_CODE_MAX_RETRIES", "0")
    messages_api.on("FLAKY", Reply.bash("echo step >> steps.txt"), Reply.error(529))
    messages_api.on("transient API error", Reply.text("fine now"))
    orch("launch", "flaky", "FLAKY job", "--retries", "2", "--role", "implementer", check=True)
    orch("wait", "flaky", check=True, timeout=120)
    run = status_json("flaky")[0]
    assert run["attempt"] == 2
    assert orch("output", "flaky", check=True).stdout == "fine now\n"
    assert (real_project / "steps.txt").read_text() == "step\n"  # the work is not redone
    # The retry continued the session Claude Code had recorded: same id, earlier turns sent.
    retry = next(
        r for r in messages_api.conversation_requests() if "transient API error" in r.prompt_text
    )
    assert retry.session_id == init_session(run) == run["session_id"]
    assert any("FLAKY job" in t for t in retry.all_user_texts)
    assert any(
        block.get("type") == "tool_use"
        for m in retry.messages
        if m.get("role") == "assistant" and isinstance(m.get("content"), list)
        for block in m["content"]
    )
    assert f"continuing session {run['session_id']}" in orch("logs", "flaky", check=True).stdout

    messages_api.reset()
    messages_api.on("DOWN", Reply.error(529))
    messages_api.on("transient API error", Reply.error(529))
    orch("launch", "down", "DOWN job", "--retries", "1", check=True)
    assert orch("wait", "down", timeout=120).returncode == 1
    run = status_json("down")[0]
    assert run["status"] == "failed" and run["attempt"] == 2
    assert run["error"].startswith("API error 529 after 2 attempts")


def test_killed_supervisor_is_lost(real_project: Path, messages_api: MessagesStandIn) -> None:
    command, leftover = leaver("HANG")
    messages_api.on("HANG", Reply.bash(command), Reply.text("never", delay=60))
    orch("launch", "victim", "HANG here", "--role", "implementer", check=True)
    wait_for(lambda: len(running(leftover)) == 2, timeout=90)
    run = status_json("victim")[0]
    handle = _handle(real_project, run["run_id"])
    children = descendants(handle["pid"])
    os.kill(handle["pid"], signal.SIGKILL)
    wait_for(lambda: pid_gone(handle["pid"]))
    run = status_json("victim")[0]
    assert run["status"] == "lost"
    wait_for(lambda: all(pid_gone(p) for p in children), timeout=15)  # no orphaned claude
    # What its tools left is found by the run's marker, the supervisor being gone.
    wait_for(lambda: not running(leftover), timeout=15)


def test_queue_with_max_parallel(real_project: Path, messages_api: MessagesStandIn) -> None:
    messages_api.on("QUEUED", Reply.text("queued ok", delay=0.5))
    r = orch("parallel", "QUEUED 1", "QUEUED 2", "QUEUED 3", "--max-parallel", "1", "--json")
    assert [x["status"] for x in json.loads(r.stdout)] == ["running", "queued", "queued"]
    orch("wait", check=True, timeout=180)
    runs = status_json()
    assert [x["status"] for x in runs] == ["completed"] * 3
    spans = sorted((x["started_at"], x["ended_at"]) for x in runs)
    assert all(a[1] <= b[0] for a, b in itertools.pairwise(spans))  # one at a time

"""Agents that fail at start say what Claude Code said, in print mode and interactively: the
real Claude Code against the stand-in, interactive agents on the test's private tmux server."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from orch_plugins.supervisor import TRANSCRIPT_COPY
from orch_plugins.testing.api import MessagesStandIn, Reply
from orch_plugins.testing.pytest_plugin import trust_project
from tests.helpers import orch, status_json
from tests.tmux.helpers import Tm

pytestmark = pytest.mark.e2e


def test_a_resume_whose_transcript_is_gone_says_no_conversation_found(
    real_tmux_project: Path, tmux_server: Tm, messages_api: MessagesStandIn
) -> None:
    home = Path(os.environ["HOME"])
    trust_project(home, real_tmux_project)
    messages_api.on("FIRST", Reply.text("first answer"))
    orch("launch", "pa", "FIRST task", "--backend", "subprocess", check=True)
    orch("wait", "pa", check=True, timeout=120)
    sid = status_json("pa")[0]["session_id"]
    [transcript] = (home / ".claude" / "projects").glob(f"*/{sid}.jsonl")
    transcript.unlink()  # cleaned up by the person, or the agent ran on another machine
    # ... and no copy kept with the run either (a run from before copies, or copies off).
    (Path(status_json("pa")[0]["output_path"]).parent / TRANSCRIPT_COPY).unlink()
    said = f"No conversation found with session ID: {sid}"

    orch("resume", "pa", "SECOND task", check=True)  # print mode
    assert orch("wait", "pa", timeout=120).returncode == 1
    assert status_json("pa")[0]["status"] == "failed"
    assert status_json("pa")[0]["error"] == said

    orch("launch", "ib", "THIRD task", "--from", "pa", "--interactive", check=True)
    assert orch("wait", "ib", timeout=120).returncode == 1
    run = status_json("ib")[0]
    assert run["status"] == "failed" and run["exit_code"] == 1
    assert run["error"] == (
        f"interactive claude exited with code 1 before its first turn ended: {said}"
    )
    assert said in (Path(run["output_path"]).parent / "screen.txt").read_text()
    assert not any(
        "SECOND" in r.prompt_text or "THIRD" in r.prompt_text
        for r in messages_api.conversation_requests()
    )

"""The end of a run comes from Claude Code's result event (real CLI against the stand-in).

Claude Code 2.1.197 that started a Bash tool's background task waits ~5 s after its result
before it exits. The run is recorded from the result at once, and what is left of claude is
stopped after ``result_grace`` (3 s by default)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from orch_plugins.testing.api import MessagesStandIn, Reply
from tests.helpers import orch, status_json, wait_for

pytestmark = pytest.mark.e2e

BACKGROUND = "sleep 37.25"


def _sleepers() -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        if cmdline.replace(b"\0", b" ").strip() == BACKGROUND.encode():
            found.append(int(entry))
    return found


def test_claude_lingering_after_its_result(
    real_project: Path, messages_api: MessagesStandIn
) -> None:
    background = {"command": BACKGROUND, "description": "bg", "run_in_background": True}
    messages_api.on("BACKGROUND", Reply.tool("Bash", background), Reply.text("bg started"))
    orch("launch", "bg", "BACKGROUND task", "--role", "implementer", check=True)
    orch("wait", "bg", "--timeout", "120", check=True, timeout=150)
    run = status_json("bg")[0]
    assert run["status"] == "completed" and run["error"] is None
    assert orch("output", "bg", check=True).stdout == "bg started\n"
    assert "[orch] claude still runs" in orch("logs", "bg", check=True).stdout
    # Stopped by orch after result_grace, before Claude Code's own ~5 s were up.
    assert wait_for(lambda: status_json("bg")[0]["exit_code"] is not None, timeout=20)
    assert "[orch] stopped what was left of claude 3 s after" in orch("logs", "bg").stdout
    wait_for(lambda: not _sleepers(), timeout=10)

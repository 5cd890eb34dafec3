"""An interactive agent waiting for a person (real Claude Code in tmux, against the stand-in):
its Notification hook marks the run waiting, ``orch status`` and the orchestrator's notice say
so, and the mark goes once the person lets it go on."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

from orch_plugins.testing.api import MessagesStandIn, Reply
from orch_plugins.testing.pytest_plugin import trust_project
from tests.helpers import orch, status_json, wait_for
from tests.tmux.helpers import Tm, handle


def _notice(project: Path) -> dict:
    """What the UserPromptSubmit hook adds to an orchestrator session's prompt."""
    payload = {
        "session_id": str(uuid.uuid4()),
        "hook_event_name": "UserPromptSubmit",
        "prompt": "what now?",
        "cwd": str(project),
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCH_RUN")}
    proc = subprocess.run(
        [sys.executable, "-m", "orch_plugins.claude_hooks", "UserPromptSubmit"],
        input=json.dumps(payload),
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    return json.loads(proc.stdout) if proc.stdout.strip() else {}


def test_an_interactive_agent_at_a_permission_prompt_shows_as_waiting(
    real_tmux_project: Path, tmux_server: Tm, messages_api: MessagesStandIn
) -> None:
    trust_project(Path(os.environ["HOME"]), real_tmux_project)
    settings = real_tmux_project / ".claude" / "settings.json"
    settings.parent.mkdir(exist_ok=True)
    settings.write_text(json.dumps({"permissions": {"defaultMode": "default"}}))
    messages_api.on(
        "ASKME",
        Reply.bash("mkdir made-by-agent && echo permitted-ran", "make a dir"),
        Reply.text("all done"),
    )
    orch("launch", "ia", "ASKME please", "--interactive", check=True)
    run = wait_for(lambda: status_json("ia")[0]["waiting_for"] and status_json("ia")[0], 120)
    assert run["status"] == "running" and "permission" in run["waiting_for"], run["waiting_for"]
    assert run["waiting_since"]
    line = next(x for x in orch("status", check=True).stdout.splitlines() if x.startswith("ia "))
    assert " waiting " in line and "waiting: " in line
    notice = _notice(real_tmux_project)
    context = notice["hookSpecificOutput"]["additionalContext"]
    assert "agents waiting for a person" in context and "- ia: waiting for " in context
    assert "waiting for you: ia" in notice["systemMessage"]
    # The person approves (Enter takes the first choice, "Yes"): the agent goes on.
    tmux_server("send-keys", "-t", handle(real_tmux_project, run["run_id"])["pane"], "Enter")
    wait_for(lambda: status_json("ia")[0]["waiting_for"] is None, timeout=60)
    orch("wait", "ia", "--timeout", "90", check=True, timeout=120)
    done = status_json("ia")[0]
    assert done["status"] == "completed" and done["waiting_for"] is None
    assert any("permitted-ran" in t for r in messages_api.requests for t in r.tool_results)

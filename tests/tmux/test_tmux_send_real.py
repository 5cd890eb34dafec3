"""``orch send`` to an interactive tmux agent, with the real Claude Code against the stand-in:
the text is pasted into its pane (a bracketed paste, never typed as keys) and becomes its next
user turn verbatim."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from orch_plugins.testing.api import MessagesStandIn, Reply
from orch_plugins.testing.pytest_plugin import trust_project
from tests.helpers import orch, status_json, wait_for
from tests.tmux.helpers import Tm, handle

pytestmark = pytest.mark.e2e

#: Quotes, a command substitution, tmux key names and a newline: none of it may be interpreted.
MESSAGE = 'PASTED it\'s "q" $(touch /tmp/pwned) C-c Enter Escape\nsecond line ünï'


def test_send_pastes_into_an_interactive_agents_pane(
    real_tmux_project: Path, tmux_server: Tm, messages_api: MessagesStandIn
) -> None:
    trust_project(Path(os.environ["HOME"]), real_tmux_project)
    messages_api.on("FIRST-TASK", Reply.text("first answer"))
    messages_api.on("PASTED", Reply.text("pasted answer"))
    orch("launch", "ia", "FIRST-TASK go", "--interactive", check=True)
    orch("wait", "ia", check=True, timeout=120)
    run = status_json("ia")[0]
    assert run["status"] == "completed"  # its claude stays open: it still takes messages
    assert orch("send", "ia", MESSAGE, check=True).stdout == "ia: message 1 sent\n"
    req = messages_api.wait_for(lambda r: "PASTED" in r.prompt_text, timeout=60)
    assert req.last_user_text == MESSAGE
    assert req.session_id == run["session_id"]
    wait_for(lambda: orch("output", "ia").stdout == "pasted answer\n", timeout=60)
    assert "pasted answer" in tmux_server.capture(handle(real_tmux_project, run["run_id"])["pane"])
    assert "[message from user at " in orch("logs", "ia", check=True).stdout
    assert not Path("/tmp/pwned").exists()

"""What the person at an interactive orchestrator session sees: the real Claude Code in a pane
of the test's private tmux server, with the hooks installed in the project."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from orch_plugins.store import Store
from orch_plugins.testing.api import MessagesStandIn, Reply
from orch_plugins.testing.pytest_plugin import trust_project
from tests.helpers import orch, wait_for
from tests.tmux.helpers import Tm

pytestmark = pytest.mark.e2e


def start_claude(tm: Tm, cwd: Path, claude_bin: str) -> str:
    """An interactive claude in a new session of the private server; returns its pane id."""
    passed = ("HOME", "PATH", "ORCH_STATE_DIR", "ORCH_CONFIG", "ORCH_CLAUDE_BIN")
    env = [f"{k}={v}" for k, v in os.environ.items() if k in passed or k.startswith("ANTHROPIC_")]
    env += [f"{k}={v}" for k, v in os.environ.items() if k.startswith(("CLAUDE_CODE_", "DISABLE"))]
    out = tm(
        "new-session", "-d", "-P", "-F", "#{pane_id}", "-x", "150", "-y", "50", "-c", str(cwd),
        "env", *env, claude_bin,
    )  # fmt: skip
    return out.strip()


def type_prompt(tm: Tm, pane: str, text: str) -> None:
    tm("send-keys", "-t", pane, "-l", text)
    tm("send-keys", "-t", pane, "Enter")


def test_the_person_sees_which_agents_ended(
    real_tmux_project: Path, tmux_server: Tm, messages_api: MessagesStandIn, claude_bin: str
) -> None:
    """The finished-agent notice reaches the model (additionalContext) and, as one line, the
    screen (the hook's systemMessage)."""
    monkey_home = Path(os.environ["HOME"])
    trust_project(monkey_home, real_tmux_project)
    orch("install", check=True)
    messages_api.on("AGENT-TASK", Reply.text("agent finished its work"))
    messages_api.on("NEXT-PROMPT", Reply.text("noted the agents"))

    pane = start_claude(tmux_server, real_tmux_project, claude_bin)
    store = Store(real_tmux_project / ".orchestrate")
    wait_for(lambda: store.sessions(), timeout=60)  # SessionStart recorded the orchestrator
    orch("launch", "scout", "AGENT-TASK look around", "--backend", "subprocess", check=True)
    orch("wait", "scout", check=True, timeout=120)

    type_prompt(tmux_server, pane, "NEXT-PROMPT what is new?")
    screen = wait_for(
        lambda: (s := tmux_server.capture(pane)) and "noted the agents" in s and s,
        timeout=60,
    )
    assert "orch: 1 agent ended: scout completed (orch status)" in screen, screen
    req = next(r for r in messages_api.conversation_requests() if "NEXT-PROMPT" in r.prompt_text)
    # The model's part (the agent's cost, then its result).
    assert re.search(r"- scout: completed, \$[0-9.]+ — agent finished its work", str(req.body))

"""orch's MCP tools in real Claude Code sessions against the stand-in, with the configuration
the installer writes (``.mcp.json``, the server approved, ``mcp__orch__*`` allowed).

One scenario, three claudes: an orchestrator (``claude -p`` in the project) calls ``launch``
with a hostile task and ``wait``; that agent posts to the board and launches a child through the
tools; the child posts too and is refused a grandchild (``max_depth`` 2)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from orch_plugins import install
from orch_plugins.mcp_server import TOOLS
from orch_plugins.testing.api import MessagesStandIn, Reply
from tests.helpers import orch, status_json

pytestmark = pytest.mark.e2e

ALLOW = ("--allowedTools", "mcp__orch__*")
TASK = 'LEAD-TASK it\'s "quoted" $(touch /tmp/pwned-mcp) `id`\nsecond line ünï'


def test_tools_launch_wait_tree_depth_and_board(
    real_project: Path,
    messages_api: MessagesStandIn,
    claude_bin: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    install.run(
        install.project_target(real_project),
        python=sys.executable,
        package_dir=install.package_parent(),
        echo=lambda _: None,
    )
    # Agents inherit it: their claude lists the MCP tools before its first request.
    monkeypatch.setenv("MCP_CONNECTION_NONBLOCKING", "false")
    # The person allows orch's tools for their sessions (the project settings' allow rule the
    # installer writes did not apply to claude -p runs here).
    user_settings = Path(os.environ["HOME"], ".claude", "settings.json")
    user_settings.parent.mkdir(parents=True, exist_ok=True)
    user_settings.write_text(json.dumps({"permissions": {"allow": ["mcp__orch__*"]}}))
    # 2.1.197 lists a server's tools only once it connected (the SDK's import takes seconds on
    # a loaded machine): the model waits for it, as Claude Code tells it to; 2.1.332 waits
    # itself and refuses the call harmlessly.
    ready = [Reply.tool("WaitForMcpServers", {})] * 2
    wait = {"names": ["lead"], "timeout": 240}
    messages_api.on(
        "ORCHESTRATE",
        *ready,
        Reply.tool("mcp__orch__launch", {"name": "lead", "task": TASK, "orch_tools": True}),
        Reply.tool("mcp__orch__wait", wait),
        Reply.text("orchestrated"),
    )
    messages_api.on(
        "LEAD-TASK",
        *ready,
        Reply.tool("mcp__orch__board_post", {"text": "from lead"}),
        Reply.tool(
            "mcp__orch__launch", {"name": "child", "task": "CHILD-TASK go", "orch_tools": True}
        ),
        Reply.tool("mcp__orch__wait", {"names": ["child"], "timeout": 200}),
        Reply.text("lead done"),
    )
    messages_api.on(
        "CHILD-TASK",
        *ready,
        Reply.tool("mcp__orch__board_post", {"text": "from child"}),
        Reply.tool("mcp__orch__launch", {"name": "grandchild", "task": "too deep"}),
        Reply.text("child done"),
    )
    proc = subprocess.run(
        # As orch start runs the orchestrator: orch's tools allowed.
        [claude_bin, "-p", "ORCHESTRATE the work", "--output-format", "json", *ALLOW],
        cwd=real_project,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert json.loads(proc.stdout)["result"] == "orchestrated"

    requests = messages_api.conversation_requests()
    listed = [r for r in requests if "ORCHESTRATE" in r.prompt_text][-1]
    # Offered to the model: as tools (2.1.197), or by name in the deferred-tools list that
    # ToolSearch loads from (2.1.332).
    offered = json.dumps(listed.body)
    assert all(f"mcp__orch__{fn.__name__}" in offered for fn in TOOLS)
    # The task reached the agent's claude as given.
    lead_req = next(r for r in requests if "LEAD-TASK" in r.prompt_text)
    assert lead_req.prompt_text == TASK
    assert status_json("lead")[0]["task"] == TASK
    assert not Path("/tmp/pwned-mcp").exists()
    # wait (through the tool) returned once the agent ended.
    last = next(r for r in reversed(requests) if "ORCHESTRATE" in r.prompt_text)
    waited = json.loads(last.tool_results[-1])
    assert [(r["name"], r["status"]) for r in waited["ended"]] == [("lead", "completed")]

    tree = json.loads(orch("status", "--tree", "--json", check=True).stdout)
    assert [(r["name"], r["depth"]) for r in tree] == [("lead", 1), ("child", 2)]
    assert tree[1]["parent_run"] == tree[0]["run_id"]
    assert orch("status", "grandchild").returncode == 1  # refused, nothing recorded
    child_last = next(r for r in reversed(requests) if "CHILD-TASK" in r.prompt_text)
    assert "max_depth is 2" in child_last.tool_results[-1]
    posts = json.loads(orch("board", "read", "--json", check=True).stdout)
    assert [(p["author"], p["text"]) for p in posts] == [
        ("lead", "from lead"),
        ("child", "from child"),
    ]

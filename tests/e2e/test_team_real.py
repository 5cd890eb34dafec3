"""Messages to a running print-mode agent, with the real Claude Code against the stand-in:
``orch send`` mid-turn reaches the model as the next user turn of the same session, before the
run ends; stdin then closes and the run ends as before."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from orch_plugins.testing.api import ApiRequest, MessagesStandIn, Reply, default_responder
from tests.helpers import orch, status_json, wait_for

pytestmark = pytest.mark.e2e

MESSAGE = 'FOLLOWUP it\'s "quoted" $(touch /tmp/pwned) `id`\nsecond line ünï'


def test_send_reaches_a_running_print_mode_agent(
    real_project: Path, messages_api: MessagesStandIn
) -> None:
    messages_api.on("FOLLOWUP", Reply.text("got the follow-up"))
    sent = threading.Event()  # the first turn is answered only once the message is sent

    def first_turn(request: ApiRequest) -> Reply:
        if "SLOWTASK" in request.prompt_text and not request.is_title_request:
            sent.wait(120)
            return Reply.text("first turn done")
        return default_responder(request)

    messages_api.default = first_turn
    orch("launch", "talk", "SLOWTASK: start", check=True)
    first = messages_api.wait_for(lambda r: "SLOWTASK" in r.prompt_text, timeout=60)
    assert status_json("talk")[0]["status"] == "running"
    assert orch("send", "talk", MESSAGE, check=True).stdout == "talk: message 1 sent\n"
    sent.set()
    [run] = status_json("talk")
    wait_for(lambda: status_json("talk")[0]["status"] != "running", timeout=90)
    [run] = status_json("talk")
    assert run["status"] == "completed", run["error"]
    assert orch("output", "talk", check=True).stdout == "got the follow-up\n"
    second = messages_api.wait_for(lambda r: "FOLLOWUP" in r.prompt_text, timeout=5)
    assert second.last_user_text == MESSAGE
    assert second.session_id == first.session_id == run["session_id"]
    assert "first turn done" in str(second.messages)  # the same conversation, continued
    logs = orch("logs", "talk", check=True).stdout
    assert "[message from user at " in logs and "handed to the agent" in logs
    r = orch("send", "talk", "too late")
    assert r.returncode == 1 and "has ended (completed); resume it instead" in r.stderr


def test_orch_mcp_server_starts_only_for_agents_given_orch_tools(
    real_project: Path, messages_api: MessagesStandIn
) -> None:
    """The project's ``orch`` MCP server (here a stand-in that notes which agent started it)
    is started by the agent launched with --orch-tools and not by the other one: an agent
    without orch's tools does not pay for the SDK's import."""
    import json
    import shlex

    started = real_project / "mcp-started"
    note = f"echo $ORCH_AGENT:$ORCH_TOOLS >> {shlex.quote(str(started))}; exec cat >/dev/null"
    (real_project / ".mcp.json").write_text(
        json.dumps({"mcpServers": {"orch": {"command": "sh", "args": ["-c", note]}}})
    )
    settings = real_project / ".claude" / "settings.json"
    settings.parent.mkdir(exist_ok=True)
    settings.write_text(json.dumps({"enabledMcpjsonServers": ["orch"]}))
    orch("launch", "plain", "hello there", check=True)
    orch("launch", "tooled", "hello there", "--orch-tools", check=True)
    runs = json.loads(orch("wait", "plain", "tooled", "--json", check=True).stdout)
    assert [r["status"] for r in runs] == ["completed", "completed"]
    assert started.read_text().split() == ["tooled:1"]

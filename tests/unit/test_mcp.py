"""``orch mcp`` through the MCP Python SDK's own client over stdio (the real server process),
with the fast fake claude as the agents' claude."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client, StdioServerParameters

from orch_plugins.mcp_server import TOOLS
from tests.helpers import ORCH, ROOT, status_json

HOSTILE = 'it\'s "quoted" $(touch /tmp/pwned) `id`\nsecond line ünï 🚀'


def server(project: Path) -> StdioServerParameters:
    return StdioServerParameters(
        command=sys.executable,
        args=["-m", "orch_plugins.cli", "mcp"],
        env=dict(os.environ),
        cwd=str(project),
    )


def session(project: Path, body: Any) -> Any:
    async def main() -> Any:
        async with Client(server(project)) as client:
            return await body(client)

    return anyio.run(main)


def data(result: Any) -> dict[str, Any]:
    assert not result.is_error, result.content
    return result.structured_content


def test_every_tool_is_listed_with_typed_arguments(project: Path) -> None:
    async def body(client: Client) -> Any:
        return (await client.list_tools()).tools

    tools = {t.name: t for t in session(project, body)}
    assert set(tools) == {fn.__name__ for fn in TOOLS}
    launch = tools["launch"].input_schema
    assert launch["required"] == ["name", "task"]
    assert launch["properties"]["timeout"]["anyOf"][0]["type"] == "number"
    assert tools["parallel"].input_schema["properties"]["tasks"]["type"] == "array"


def test_launch_wait_output_send_board_through_the_tools(project: Path) -> None:
    async def body(client: Client) -> dict[str, Any]:
        out: dict[str, Any] = {}
        out["launch"] = data(await client.call_tool("launch", {"name": "m1", "task": HOSTILE}))
        out["wait"] = data(await client.call_tool("wait", {"names": ["m1"], "timeout": 60}))
        out["output"] = data(await client.call_tool("output", {"name": "m1"}))
        out["status"] = data(await client.call_tool("status", {}))
        out["post"] = data(await client.call_tool("board_post", {"text": HOSTILE}))
        out["board"] = data(await client.call_tool("board_read", {"since": 0}))
        out["logs"] = data(await client.call_tool("logs", {"name": "m1", "lines": 5}))
        out["roles"] = data(await client.call_tool("roles", {}))
        out["cost"] = data(await client.call_tool("cost", {"by": "role"}))
        out["bad_by"] = await client.call_tool("cost", {"by": "colour"})
        out["send"] = await client.call_tool("send", {"name": "m1", "text": "late"})
        out["dup"] = await client.call_tool("launch", {"name": "m1", "task": " "})
        out["resource"] = await client.read_resource("orch://agents/m1/output")
        return out

    out = session(project, body)
    assert out["launch"]["name"] == "m1" and out["launch"]["task"] == HOSTILE
    assert [r["status"] for r in out["wait"]["ended"]] == ["completed"]
    assert out["wait"]["pending"] == [] and out["wait"]["timed_out"] is False
    digest = __import__("hashlib").sha256(HOSTILE.encode()).hexdigest()
    assert out["output"]["output"].startswith(f"sha256={digest}")
    assert [a["name"] for a in out["status"]["agents"]] == ["m1"]
    assert out["post"]["author"] == "user" and out["board"]["posts"][0]["text"] == HOSTILE
    assert "[done]" in out["logs"]["text"]
    assert "researcher" in {r["name"] for r in out["roles"]["roles"]}
    cli_cost = json.loads(
        subprocess.run(
            [*ORCH, "cost", "--by", "role", "--json"], capture_output=True, text=True, check=True
        ).stdout
    )
    assert out["cost"] == cli_cost and out["cost"]["by"] == "role"
    assert out["bad_by"].is_error and out["bad_by"].content[0].text.startswith("orch: error: ")
    # Errors are the CLI's one-line messages.
    assert out["send"].is_error
    assert out["send"].content[0].text == (
        "orch: error: agent 'm1' has ended (completed); resume it instead: orch resume m1 TASK"
    )
    assert out["dup"].is_error and out["dup"].content[0].text == "orch: error: the task is empty"
    assert out["resource"].contents[0].text.startswith("sha256=")
    assert status_json("m1")[0]["task"] == HOSTILE
    assert not Path("/tmp/pwned").exists()


def test_wait_times_out_and_says_who_is_pending(project: Path) -> None:
    async def body(client: Client) -> dict[str, Any]:
        await client.call_tool("launch", {"name": "slow", "task": "SLEEP=30"})
        return data(await client.call_tool("wait", {"timeout": 0.5}))

    out = session(project, body)
    assert out == {"ended": [], "pending": ["slow"], "timed_out": True}


def test_orch_mcp_without_the_sdk_says_what_to_install(project: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "block"
    blocker.mkdir()
    (blocker / "mcp.py").write_text("raise ImportError('blocked for the test')\n")
    env = {**os.environ, "PYTHONPATH": str(blocker)}
    r = subprocess.run([*ORCH, "mcp"], capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 1
    assert r.stderr == (
        "orch: error: orch mcp needs the MCP Python SDK (the orch-plugins[mcp] extra): "
        f"{sys.executable} -m pip install 'mcp>=2.3,<3'\n"
    )


def test_the_core_and_the_hooks_never_import_the_sdk() -> None:
    code = (
        "import sys, orch_plugins.core, orch_plugins.claude_hooks, orch_plugins.cli; "
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] == 'mcp')))"
    )
    r = subprocess.run(
        [sys.executable, "-c", "import json; " + code], capture_output=True, text=True
    )
    assert json.loads(r.stdout) == [], r.stderr


@pytest.fixture(autouse=True)
def _no_agent_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("ORCH_RUN_ID", "ORCH_AGENT", "CLAUDE_CODE_SESSION_ID"):
        monkeypatch.delenv(var, raising=False)


def test_the_plugin_forms_server_runs_through_its_shim(project: Path) -> None:
    """The plugin manifest's MCP server is ``sh claude/hooks/orch-mcp.sh``: it finds the
    interpreter as the hook shim does ($ORCH_PYTHON here) and serves the same tools."""
    manifest = json.loads((ROOT / ".claude-plugin" / "plugin.json").read_text())
    entry = manifest["mcpServers"]["orch"]
    assert entry["command"] == "sh"
    args = [a.replace("${CLAUDE_PLUGIN_ROOT}", str(ROOT)) for a in entry["args"]]
    params = StdioServerParameters(
        command="sh", args=args, env={**os.environ, "ORCH_PYTHON": sys.executable}, cwd=str(project)
    )

    async def main() -> Any:
        async with Client(params) as client:
            return (await client.list_tools()).tools

    assert {t.name for t in anyio.run(main)} == {fn.__name__ for fn in TOOLS}
    # No interpreter to be found: one line on stderr, exit 1 (Claude Code shows it as failed).
    r = subprocess.run(
        ["/bin/sh", args[0]],
        env={"PATH": "/nonexistent", "HOME": str(project), "ORCH_PYTHON": "/nonexistent/py"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.returncode == 1
    assert r.stderr == "orch: error: no Python for orch mcp: run install.py, or set ORCH_PYTHON\n"

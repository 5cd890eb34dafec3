"""The Claude Code face end to end: the real CLI, the real install, the Messages API stand-in.

Each test has its own project and HOME (see conftest.py); Claude Code processes run one after
the other (each costs ~1 CPU-second). The stand-in answers as the model: as the orchestrator it
issues the Bash tool calls the slash commands ask for; agents get its echo.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from orch_plugins.testing.api import ApiRequest, Reply
from orch_plugins.testing.pytest_plugin import ClaudeRun
from tests.integration.conftest import CC, ROOT

pytestmark = pytest.mark.e2e

NOTICE_HEAD = "agents ended since your previous prompt"

USER_SETTINGS = """{
    "permissions": {
        "allow": ["Bash(ls:*)"],
        "deny": ["Read(./.env)"]
    },
    "hooks": {
        "SessionStart": [{"hooks": [{
            "type": "command",
            "command": "echo \\"$CLAUDE_CODE_SESSION_ID\\" >> \\"$CLAUDE_PROJECT_DIR\\"/mine.log"
        }]}]
    },
    "includeCoAuthoredBy": false
}
"""


def agent_session_ids(run: dict[str, Any]) -> set[str]:
    """Every session id Claude Code reported in an agent's own stream-json output."""
    ids = set()
    for line in Path(run["log_path"]).read_text().splitlines():
        event = json.loads(line)
        if isinstance(event, dict) and event.get("session_id"):
            ids.add(event["session_id"])
    return ids


def hook_session_ids(cc: CC, run_id: int) -> set[str]:
    """The session ids our hooks recorded for a run."""
    store = cc.store()
    try:
        return {s["session_id"] for s in store.sessions() if s["run_id"] == run_id}
    finally:
        store.close()


def tool_results(run: ClaudeRun) -> list[str]:
    """The tool outputs in a claude run, in order."""
    out = []
    for event in run.events:
        if event.get("type") != "user":
            continue
        for block in event.get("message", {}).get("content", []):
            if isinstance(block, dict) and block.get("type") == "tool_result":
                content = block.get("content")
                if isinstance(content, list):
                    content = "\n".join(c.get("text", "") for c in content if isinstance(c, dict))
                out.append(str(content))
    return out


def expanded(cc: CC, run: ClaudeRun) -> str:
    """What a slash command expanded to: the prompt of the session's first model request.

    Claude Code aborts a command whose ``!`` line fails its permission check or exits non-zero
    (no model call, empty result): no request here means the command did not run.
    """
    assert run.result is not None and not run.result["permission_denials"], run.describe()
    reqs = [r for r in cc.api.conversation_requests() if r.session_id == run.session_id]
    assert reqs, f"the command did not expand or run:\n{run.describe()}"
    return reqs[0].prompt_text


def turn_context(cc: CC, marker: str) -> str:
    """The prompt containing ``marker`` and what Claude Code sent after it in that request.

    Claude Code passes a UserPromptSubmit hook's additionalContext as a ``system`` message right
    after the user's prompt ("UserPromptSubmit hook additional context: …"). The prompt's own
    text counts in full: 2.1.332 wraps a background task's ``<task-notification>`` turn in a
    ``<system-reminder>`` block, which ``prompt_text`` leaves out.
    """

    def turn(req: ApiRequest) -> str:
        messages = req.messages
        last_user = max(i for i, m in enumerate(messages) if m.get("role") == "user")
        texts = []
        for message in messages[last_user:]:
            content = message.get("content")
            blocks = [{"text": content}] if isinstance(content, str) else content or []
            texts += [b["text"] for b in blocks if isinstance(b, dict) and "text" in b]
        return "\n".join(texts)

    return next(t for r in cc.api.conversation_requests() if marker in (t := turn(r)))


def tree(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in path.rglob("*") if p.is_file()}


def install_py(cc: CC, *args: str) -> subprocess.CompletedProcess[str]:
    bin_dir = ["--bin-dir", str(cc.venv.parent / "bin")]
    return subprocess.run(
        [sys.executable, str(ROOT / "install.py"), "--venv", str(cc.venv), *bin_dir, *args],
        cwd=cc.project,
        env=cc.env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_install_py_merges_into_existing_settings_and_uninstalls_exactly(cc: CC) -> None:
    settings = cc.project / ".claude" / "settings.json"
    settings.parent.mkdir()
    settings.write_text(USER_SETTINGS)
    before = tree(cc.project / ".claude")

    r = install_py(cc, "--project", str(cc.project))
    assert r.returncode == 0, r.stdout + r.stderr
    data = json.loads(settings.read_text())
    original = json.loads(USER_SETTINGS)
    assert data["permissions"]["allow"] == ["Bash(ls:*)", "Bash(orch:*)", "mcp__orch__*"]
    assert data["permissions"]["deny"] == original["permissions"]["deny"]
    assert data["includeCoAuthoredBy"] is False
    assert data["hooks"]["SessionStart"][0] == original["hooks"]["SessionStart"][0]
    ours = data["hooks"]["SessionStart"][1]["hooks"][0]["command"]
    assert ours.startswith(
        f'sh "$CLAUDE_PROJECT_DIR"/.claude/hooks/orch-hook.sh SessionStart {cc.python} '
    )
    for event in ("UserPromptSubmit", "Stop", "SessionEnd"):
        assert len(data["hooks"][event]) == 1
    assert (cc.project / ".claude" / "commands" / "orchestrate" / "status.md").exists()
    backup = cc.home / ".local/share/orch-plugins/backups" / str(settings).lstrip("/")
    assert backup.read_text() == USER_SETTINGS

    # Both the user's hook and ours run in a real session.
    cc.trust()
    run = cc.claude("-p", "hello there")
    assert (cc.project / "mine.log").read_text().split() == [run.session_id]
    store = cc.store()
    session = store.session(run.session_id)
    assert session["source"] == "startup" and session["cwd"] == str(cc.project)
    assert session["ended_at"] is not None
    store.close()

    installed = tree(cc.project / ".claude")
    r = install_py(cc, "--project", str(cc.project))
    assert r.returncode == 0 and "nothing to change" in r.stdout, r.stdout + r.stderr
    assert tree(cc.project / ".claude") == installed

    r = install_py(cc, "--project", str(cc.project), "--uninstall")
    assert r.returncode == 0, r.stdout + r.stderr
    assert settings.read_text() == USER_SETTINGS
    assert tree(cc.project / ".claude") == before
    assert not (cc.project / ".orchestrate").exists()  # ours, and it held no agent runs

    settings.write_text('{"hooks": {"Stop": [}')
    snapshot = tree(cc.project)
    r = install_py(cc, "--project", str(cc.project))
    assert r.returncode != 0
    assert "settings.json is not valid JSON (line 1, column 21" in r.stderr
    assert "Nothing was changed" in r.stderr
    assert tree(cc.project) == snapshot


def test_every_slash_command_expands_and_runs(cc: CC) -> None:
    cc.orch("install")
    api = cc.api
    # Agents get the stand-in's echo: rules would also match the tasks shown by orch status.
    cc.orch("launch", "scout", "SCOUT-TASK look around")
    cc.orch("wait", "scout")

    status = cc.claude("-p", "/orchestrate:status")
    assert status.init is not None
    for name in ("status", "launch", "parallel", "resume", "output", "cancel", "roles"):
        assert f"orchestrate:{name}" in status.init["slash_commands"]
    assert "orchestrate" in status.init["slash_commands"]
    text = expanded(cc, status)
    assert re.search(r"scout\s+completed", text) and "SCOUT-TASK look around" in text

    roles = expanded(cc, cc.claude("-p", "/orchestrate:roles"))
    assert "bug-hunter" in roles and "implementer" in roles

    goal = expanded(cc, cc.claude("-p", "/orchestrate review the parser for bugs"))
    assert "You are the orchestrator for this goal:\n\nreview the parser for bugs" in goal
    assert re.search(r"scout\s+completed", goal) and "security-reviewer" in goal

    # The commands that act: the stand-in runs the command the instructions ask for, and
    # allowed-tools lets it through (the project is not trusted: no settings permissions).
    api.on(
        "Show the final result of agent `scout`", Reply.bash("orch slash output"), Reply.text("ok")
    )
    out = cc.claude("-p", "/orchestrate:output scout")
    assert tool_results(out) == ["echo: SCOUT-TASK look around"], out.describe()

    api.on("Launch one agent in the background", Reply.bash("orch slash launch"), Reply.text("ok"))
    launched = cc.claude("-p", "/orchestrate:launch probe --role researcher PROBE-TASK $(id)")
    assert tool_results(launched)[0].startswith("probe: launched"), launched.describe()

    api.on("Launch one agent per task", Reply.bash("orch slash parallel"), Reply.text("ok"))
    par = cc.claude("-p", "/orchestrate:parallel PAR-ONE | PAR-TWO")
    assert "agent1: launched" in tool_results(par)[0] and "agent2: launched" in tool_results(par)[0]

    api.on("Continue an agent's session", Reply.bash("orch slash resume"), Reply.text("ok"))
    resumed = cc.claude("-p", "/orchestrate:resume scout SCOUT-MORE please")
    assert tool_results(resumed)[0].startswith("scout: launched"), resumed.describe()

    cc.orch("wait", "probe", "agent1", "agent2", "scout")
    api.on("Stop these agents: probe", Reply.bash("orch slash cancel"), Reply.text("ok"))
    cancel = cc.claude("-p", "/orchestrate:cancel probe")
    assert re.search(r"probe\s+completed", expanded(cc, cancel))
    assert tool_results(cancel) == ["nothing to cancel"], cancel.describe()

    runs = cc.status()
    assert {n: r["status"] for n, r in runs.items()} == dict.fromkeys(
        ("scout", "probe", "agent1", "agent2"), "completed"
    )
    assert cc.orch("output", "probe").stdout == "echo: Research question: PROBE-TASK $(id)\n"
    assert cc.orch("output", "scout").stdout == "echo: SCOUT-MORE please\n"


def test_orchestrator_launches_three_agents_and_learns_of_their_results(cc: CC) -> None:
    cc.orch("install")
    # Without the project's MCP server: with it, a `claude -p` of Claude Code 2.1.197 ends
    # before its background task (the wait) does, so the -p session never gets that task's
    # turn (2.1.332 waits; docs/team.md). An interactive session does not exit after a turn.
    (cc.project / ".mcp.json").unlink()
    cc.trust()  # the orchestrator's own Bash calls rely on the installed Bash(orch:*)
    launches = [
        Reply.bash(f"orch launch t{i} - <<'ORCH_TASK'\nTASK-{i} count the files\nORCH_TASK")
        for i in (1, 2, 3)
    ]
    wait = Reply.tool(
        "Bash",
        {"command": "orch wait t1 t2 t3", "run_in_background": True, "description": "wait"},
    )
    cc.api.on("ORCH-GOAL", *launches, wait, Reply.text("waiting in the background"))
    cc.api.on("LATER-PROMPT", Reply.text("noted"))
    cc.api.on("THIRD-PROMPT", Reply.text("fine"))

    orchestrator = cc.claude("-p", "ORCH-GOAL: split the work")

    results = tool_results(orchestrator)
    assert [r.split(",")[0] for r in results[:3]] == [f"t{i}: launched" for i in (1, 2, 3)]
    assert results[3].startswith("Command running in background")
    turns = [e["result"] for e in orchestrator.events if e.get("type") == "result"]
    assert turns[0] == "waiting in the background"  # the session was free while agents ran
    runs = cc.status()
    store = cc.store()
    for name in ("t1", "t2", "t3"):
        run = runs[name]
        assert run["status"] == "completed"
        reported = agent_session_ids(run)
        assert len(reported) == 1
        assert hook_session_ids(cc, run["run_id"]) == reported == {run["session_id"]}
    session = store.session(orchestrator.session_id)
    assert session["run_id"] is None and session["source"] == "startup"
    # Claude Code 2.1.197 sometimes exits without running SessionEnd after a background task's
    # turn (seen under load, on the code before and after this change); SessionEnd itself is
    # checked in test_plugin_form_validates_and_works_through_plugin_dir (no background task).
    assert session["last_event"] in ("Stop", "SessionEnd")
    store.close()

    # The background wait's completion starts a turn; UserPromptSubmit adds the results to it.
    notice = turn_context(cc, "<task-notification>")
    assert f"orch: 3 {NOTICE_HEAD}" in notice
    for name in ("t1", "t2", "t3"):
        line = rf"- {name}: completed, \$[0-9.]+ — echo: TASK-{name[1]} count the files"
        assert re.search(rf"{line} \(output: {re.escape(runs[name]['output_path'])}\)", notice)

    # A later prompt hears of what ended since, and only of that.
    cc.orch("launch", "t4", "TASK-4 one more")
    cc.orch("wait", "t4")
    cc.claude("-p", "LATER-PROMPT what now?", "--resume", orchestrator.session_id)
    notice = turn_context(cc, "LATER-PROMPT")
    assert "orch: 1 agent ended since your previous prompt:\n- t4: completed" in notice
    assert "- t1:" not in notice
    cc.claude("-p", "THIRD-PROMPT", "--resume", orchestrator.session_id)
    assert "ended since your previous prompt" not in turn_context(cc, "THIRD-PROMPT")
    for req in cc.api.conversation_requests():
        if "TASK-" in req.prompt_text:  # the agents' own prompts carry no notice
            assert "ended since your previous prompt" not in json.dumps(req.body)


def test_resume_continues_and_from_forks_the_orchestrators_session(cc: CC) -> None:
    cc.orch("install")
    cc.api.on("SEED-CONTEXT", Reply.text("remembered"))
    cc.api.on("WORK-ONE", Reply.text("first answer"))
    cc.api.on("WORK-TWO", Reply.text("second answer"))
    cc.api.on("FORK-TASK", Reply.text("fork answer"))
    orchestrator = cc.claude("-p", "SEED-CONTEXT: the word is PELICAN")

    cc.orch("launch", "worker", "WORK-ONE")
    cc.orch("wait", "worker")
    first = cc.status()["worker"]
    cc.orch("resume", "worker", "WORK-TWO")
    cc.orch("wait", "worker")
    second = cc.status()["worker"]
    assert second["run_id"] != first["run_id"]
    assert second["session_id"] == first["session_id"]  # the same conversation, continued
    assert agent_session_ids(second) == {first["session_id"]}
    assert hook_session_ids(cc, second["run_id"]) == {first["session_id"]}
    req = next(r for r in cc.api.conversation_requests() if "WORK-TWO" in r.prompt_text)
    assert any("WORK-ONE" in t for t in req.all_user_texts)  # it saw its earlier turn
    assert cc.orch("output", "worker").stdout == "second answer\n"

    cc.orch("launch", "forked", "--from", orchestrator.session_id, "FORK-TASK go")
    cc.orch("wait", "forked")
    fork = cc.status()["forked"]
    assert fork["session_id"] not in (None, orchestrator.session_id)
    assert hook_session_ids(cc, fork["run_id"]) == agent_session_ids(fork) == {fork["session_id"]}
    req = next(r for r in cc.api.conversation_requests() if "FORK-TASK" in r.prompt_text)
    assert any("SEED-CONTEXT" in t for t in req.all_user_texts)  # the orchestrator's context

    listed = {s["session_id"]: s for s in json.loads(cc.orch("sessions", "--json").stdout)}
    assert listed[orchestrator.session_id]["agent"] is None
    assert listed[first["session_id"]]["agent"] == "worker"
    assert listed[fork["session_id"]]["agent"] == "forked"


def test_plugin_form_validates_and_works_through_plugin_dir(cc: CC) -> None:
    for path in (ROOT, ROOT / ".claude-plugin" / "plugin.json"):
        r = subprocess.run(
            [cc.claude_bin, "plugin", "validate", "--strict", str(path)],
            env=cc.env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert r.returncode == 0 and "Validation passed" in r.stdout, r.stdout + r.stderr

    cc.orch("status")  # any orch command creates the project's state directory
    env = {**cc.env, "ORCH_PYTHON": cc.python}
    plugin = ("--plugin-dir", str(ROOT))
    first = cc.claude("-p", "/orchestrate:status", *plugin, env=env)
    assert first.init is not None and "orchestrate:orchestrate" in first.init["slash_commands"]
    # The plugin ships orch's MCP server too (claude/hooks/orch-mcp.sh).
    servers = {s["name"]: s["status"] for s in first.init.get("mcp_servers", [])}
    assert any(name.endswith("orch") for name in servers), servers
    assert "the effective parallel limit):\nno agents\n" in expanded(cc, first)

    cc.api.on("PLUGIN-AGENT", Reply.text("plugin agent done"))
    cc.orch("launch", "pa", "PLUGIN-AGENT task")
    cc.orch("wait", "pa")
    cc.claude("-p", "AFTER-AGENT", "--resume", first.session_id, *plugin, env=env)
    notice = turn_context(cc, "AFTER-AGENT")
    assert f"orch: 1 agent {NOTICE_HEAD[len('agents ') :]}" in notice
    assert re.search(r"- pa: completed, \$[0-9.]+ — plugin agent done", notice), notice

    store = cc.store()
    session = store.session(first.session_id)
    assert session["source"] == "startup" and session["last_event"] == "SessionEnd"
    store.close()
    assert not (cc.project / ".orchestrate" / "hooks.log").exists()


def test_orch_start_runs_claude_as_the_orchestrator(cc: CC) -> None:
    shown = cc.orch("start", "--dry-run").stdout
    assert shown.startswith(f"{cc.claude_bin} --append-system-prompt ")
    assert f"--plugin-dir {cc.venv}/share/orch-plugins" in shown

    cc.api.on("START-PROBE", Reply.text("ready"))
    argv = ["start", "-p", "START-PROBE", "--output-format", "stream-json", "--verbose"]
    r = subprocess.run(
        [str(cc.venv / "bin" / "orch"), *argv],
        cwd=cc.project,
        env=cc.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    events = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
    init = next(e for e in events if e.get("subtype") == "init")
    result = next(e for e in events if e.get("type") == "result")
    assert result["result"] == "ready"
    assert "orchestrate:status" in init["slash_commands"]
    req = next(r for r in cc.api.conversation_requests() if "START-PROBE" in r.prompt_text)
    assert "You are the orchestrator of a team of Claude Code agents" in req.system_text
    store = cc.store()
    session = store.session(result["session_id"])  # recorded by the plugin form's hooks
    assert session is not None and session["source"] == "startup"
    store.close()


def test_session_ids_stay_with_their_runs(cc: CC) -> None:
    """A fork (``launch --from``) whose Bash tool forks the parent's session once more with its
    own ``claude -p`` (which inherits the fork's ORCH_RUN_ID: its hooks see the parent's id at
    SessionStart, Claude Code 2.1.197, then its own at the prompt), and a resume: every run
    keeps its own id, and every session's record stays with the run it belongs to."""
    cc.orch("install")
    cc.api.on("SEED-A", Reply.text("seeded"))
    cc.orch("launch", "alpha", "SEED-A remember PELICAN")
    cc.orch("wait", "alpha")
    alpha = cc.status()["alpha"]
    parent = alpha["session_id"]
    nested = (
        f"{cc.claude_bin} -p 'NESTED-TURN go' --resume {parent} --fork-session "
        "</dev/null >/dev/null 2>&1; echo nested done"
    )
    cc.api.on("FORK-B", Reply.bash(nested), Reply.text("fork done"))
    cc.api.on("NESTED-TURN", Reply.text("nested answer"))
    cc.api.on("AGAIN-A", Reply.text("again"))

    cc.orch("launch", "beta", "--from", "alpha", "--role", "implementer", "FORK-B go")
    cc.orch("wait", "beta")
    beta = cc.status()["beta"]
    assert cc.orch("output", "beta").stdout == "fork done\n"
    own = agent_session_ids(beta)
    assert own == {beta["session_id"]} and beta["session_id"] != parent
    assert hook_session_ids(cc, beta["run_id"]) == own  # not the nested fork's session
    nested_req = next(r for r in cc.api.conversation_requests() if "NESTED-TURN" in r.prompt_text)
    listed = {s["session_id"]: s for s in json.loads(cc.orch("sessions", "--json").stdout)}
    assert nested_req.session_id in listed  # its hooks ran, in beta's environment...
    assert listed[nested_req.session_id]["agent"] is None  # ...and it is nobody's run
    assert listed[parent]["agent"] == "alpha" and listed[parent]["source"] == "startup"

    cc.orch("resume", "alpha", "AGAIN-A")
    cc.orch("wait", "alpha")
    again = cc.status()["alpha"]
    assert again["run_id"] != alpha["run_id"] and again["session_id"] == parent
    assert hook_session_ids(cc, again["run_id"]) == {parent}
    assert hook_session_ids(cc, beta["run_id"]) == own
    runs = {r["run_id"]: r for r in json.loads(cc.orch("status", "--all", "--json").stdout)}
    assert runs[alpha["run_id"]]["session_id"] == parent
    assert runs[beta["run_id"]]["session_id"] == beta["session_id"]

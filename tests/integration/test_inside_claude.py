"""Inside Claude Code: slash-command arguments reach orch exactly as typed, and an orchestrator
started in a subdirectory of the project is heard (or told why not).

The real Claude Code runs the orchestrator against the stand-in, which answers with the Bash
calls the commands ask for. The agents it launches run the fast fake claude: what is under test
is what orch recorded, not what the agents do.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from orch_plugins.testing.api import Reply
from orch_plugins.testing.pytest_plugin import run_claude
from tests.helpers import FAKE_CLAUDE, git_project
from tests.integration.conftest import CC, STREAM_JSON
from tests.integration.test_claude_code import tool_results, turn_context

pytestmark = pytest.mark.e2e

#: Everything that broke the old commands: a leading "-", the old here-document delimiter on a
#: line of its own, quotes, command substitution, backticks, a backslash, a variable.
MULTILINE = (
    "-v is broken\nORCH_TASK\nrm -rf ~ $(id) `whoami` 'single' \"double\" \\ $HOME\n  indented"
)


def fake_agents(cc: CC) -> None:
    cc.env["ORCH_CLAUDE_BIN"] = str(FAKE_CLAUDE)


def tasks(cc: CC) -> dict[str, str]:
    return {name: run["task"] for name, run in cc.status().items()}


def test_slash_commands_hand_any_text_to_orch_byte_for_byte(cc: CC) -> None:
    cc.orch("install")
    fake_agents(cc)
    api = cc.api
    api.on("Launch one agent per task", Reply.bash("orch slash parallel"), Reply.text("ok"))
    api.on("Launch one agent in the background", Reply.bash("orch slash launch"), Reply.text("ok"))
    api.on("Continue an agent's session", Reply.bash("orch slash resume"), Reply.text("ok"))

    line = "-v is broken | it's \"quoted\" $(id) `uname` | ORCH_TASK <<'ORCH_TASK' a||b"
    par = cc.claude("-p", f"/orchestrate:parallel --roles researcher,,tester {line}")
    assert "agent3: launched" in tool_results(par)[0], par.describe()
    launched = cc.claude("-p", f"/orchestrate:launch probe {MULTILINE}\n")
    assert tool_results(launched)[0].startswith("probe: launched"), launched.describe()
    cc.orch("wait", "probe")
    resumed = cc.claude("-p", "/orchestrate:resume probe -- --fork stays text: $(date)")
    assert tool_results(resumed)[0].startswith("probe: launched"), resumed.describe()

    assert tasks(cc) == {
        "agent1": "-v is broken",
        "agent2": 'it\'s "quoted" $(id) `uname`',
        "agent3": "ORCH_TASK <<'ORCH_TASK' a||b",
        "probe": "--fork stays text: $(date)",
    }
    runs = cc.status()
    assert [runs[f"agent{i}"]["role"] for i in (1, 2, 3)] == ["researcher", None, "tester"]
    store = cc.store()
    every = sorted(store.runs(include_archived=True, latest_only=False), key=lambda r: r["run_id"])
    store.close()
    assert next(r["task"] for r in every if r["name"] == "probe") == MULTILINE
    prompt = Path(runs["probe"]["output_path"]).parent / "prompt.txt"
    assert prompt.read_bytes() == b"--fork stays text: $(date)"  # exactly what claude gets


def test_the_goal_command_hands_tasks_over_in_files(cc: CC) -> None:
    """/orchestrate GOAL: Claude writes each task with its Write tool (allowed by the command)
    and passes the file with --task-file; nothing of the task is in a shell command."""
    cc.orch("install")
    fake_agents(cc)
    task = cc.project / ".orch-tasks" / "split1.md"
    cc.api.on(
        "You are the orchestrator for this goal",
        Reply.tool("Write", {"file_path": str(task), "content": MULTILINE}),
        Reply.bash("orch launch split1 --role researcher --task-file .orch-tasks/split1.md"),
        Reply.text("launched"),
    )
    goal = cc.claude("-p", "/orchestrate check the parser")
    results = tool_results(goal)
    assert results[0].startswith("File created successfully"), goal.describe()
    assert results[1].startswith("split1: launched"), goal.describe()
    assert goal.result is not None and not goal.result["permission_denials"]
    run = cc.status()["split1"]
    assert run["task"] == MULTILINE and run["role"] == "researcher"
    assert not task.parent.exists()  # the hand-over file is gone once recorded


def orch_at(cc: CC, cwd: Path, *args: str, real: bool = False) -> subprocess.CompletedProcess[str]:
    """The installed orch in ``cwd``; ``real``: with the real claude (for ``orch start``)."""
    env = {**cc.env, "ORCH_CLAUDE_BIN": cc.claude_bin} if real else cc.env
    return subprocess.run(
        [str(cc.venv / "bin" / "orch"), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )


def test_an_orchestrator_in_a_subdirectory(cc: CC) -> None:
    """Claude Code (2.1.197, 2.1.332) reads .claude/settings.json only where it starts, so a
    plain claude in pkg/a runs no orch hooks: orch says so when it matters. `orch start` there
    brings them."""
    cc.orch("install")
    fake_agents(cc)
    sub = cc.project / "pkg" / "a"
    sub.mkdir(parents=True)
    cc.env["PATH"] = f"{cc.venv / 'bin'}:{cc.env['PATH']}"  # a user's PATH holds orch

    doctor = orch_at(cc, sub, "doctor", "--json")
    [hooks] = [c for c in json.loads(doctor.stdout) if c["check"] == "hooks"]
    assert hooks["level"] == "warn" and f"installed in {cc.project}" in hooks["detail"]

    cc.api.on(
        "SUB-PLAIN",
        Reply.bash("orch launch sub1 SUB-AGENT-ONE"),
        Reply.bash("orch slash launch"),
        Reply.text("done"),
    )
    allow = ["--allowedTools", "Bash(orch:*)"]  # as the person would approve it
    plain = run_claude(
        ["-p", "SUB-PLAIN go", *allow, *STREAM_JSON], env=cc.env, cwd=sub, claude=cc.claude_bin
    )
    launched, slash = tool_results(plain)
    assert "\nsub1: launched" in launched, plain.describe()
    warning = "orch: warning: this Claude Code session will not be told when agents finish: "
    assert f"{warning}Claude Code started in {sub} runs none of orch's hooks" in launched
    assert "orch start" in launched and "orch install --user" in launched
    assert "no arguments of /orchestrate:launch were saved" in slash
    store = cc.store()
    assert store.session(plain.session_id) is None  # what the warning is about
    store.close()

    cc.api.on("SUB-START", Reply.text("orchestrating"))
    cc.api.on("SUB-LATER", Reply.text("heard"))
    argv = ["start", "-p", "SUB-START hello", *STREAM_JSON]
    start = orch_at(cc, sub, *argv, real=True)
    assert start.returncode == 0, start.stderr
    events = [json.loads(x) for x in start.stdout.splitlines() if x.startswith("{")]
    sid = next(e for e in events if e.get("type") == "result")["session_id"]
    store = cc.store()
    session = store.session(sid)  # recorded in the project's store
    assert session is not None and session["cwd"] == str(sub), start.stdout[-3000:]
    store.close()
    orch_at(cc, sub, "launch", "sub2", "SUB-AGENT-TWO")
    assert orch_at(cc, sub, "wait", "sub2").returncode == 0
    later = orch_at(cc, sub, "start", "-p", "SUB-LATER", "--resume", sid, *STREAM_JSON, real=True)
    assert later.returncode == 0, later.stderr
    notice = turn_context(cc, "SUB-LATER")
    assert "orch: 1 agent ended since your previous prompt:\n- sub2: completed" in notice
    assert not (sub / ".orchestrate").exists()


def test_the_goal_command_reviews_and_merges_worktree_agents(cc: CC) -> None:
    """/orchestrate GOAL in a git project: implementers get worktrees; the orchestrator (the
    stand-in following the command's steps) waits, is told the branch, reads the diff and
    merges; all through the command's own Bash(orch:*) permission."""
    git_project(cc.project)  # (a repository already: one more commit)
    cc.orch("install")
    fake_agents(cc)  # the agents' edit: the fake claude's APPEND directive
    task = cc.project / ".orch-tasks" / "fix.md"
    cc.api.on(
        "You are the orchestrator for this goal",
        Reply.tool("Write", {"file_path": str(task), "content": "edit APPEND=f.txt:fixed"}),
        Reply.bash("orch launch fix --role implementer --task-file .orch-tasks/fix.md"),
        Reply.bash("orch wait fix"),
        Reply.bash("orch diff fix --stat"),
        Reply.bash("orch merge fix"),
        Reply.text("merged"),
    )
    goal = cc.claude("-p", "/orchestrate fix the thing")
    results = tool_results(goal)
    assert results[1].startswith("fix: launched"), goal.describe()
    assert results[2].startswith("fix: completed"), goal.describe()
    assert "f.txt | 1 +" in results[3], goal.describe()
    assert results[4].startswith("fix: merged into "), goal.describe()
    assert goal.result is not None and not goal.result["permission_denials"]
    assert (cc.project / "f.txt").read_text() == "base\nfixed\n"
    prompt = next(
        r for r in cc.api.conversation_requests() if "orchestrator for this goal" in r.prompt_text
    )
    assert "orch merge NAME" in prompt.prompt_text and "orch diff NAME" in prompt.prompt_text

"""Slash-command arguments: saved by the hook exactly as typed, read back once by `orch slash`."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from orch_plugins import claude_hooks as hooks
from orch_plugins import slash
from orch_plugins.errors import OrchError
from tests.helpers import ORCH, status_json

NASTY = "-v is broken; it's \"quoted\" $(id) `uname` \\ $HOME\nORCH_TASK\n  indented 'line'"


def fire_prompt(monkeypatch: pytest.MonkeyPatch, prompt: str, sid: str) -> str:
    """The UserPromptSubmit hook, in-process, for ``prompt``; returns what it printed."""
    data = json.dumps({"hook_event_name": "UserPromptSubmit", "session_id": sid, "prompt": prompt})
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data.encode())))
    out = io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    assert hooks.main(["UserPromptSubmit"]) == 0
    return out.getvalue()


@pytest.fixture
def session(project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    sid = str(uuid.uuid4())
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("CLAUDE_CODE_SESSION_ID", sid)
    monkeypatch.delenv("ORCH_RUN_ID", raising=False)
    return sid


def test_the_hook_saves_arguments_byte_for_byte_and_only_ours(session, monkeypatch) -> None:
    fire_prompt(monkeypatch, f"/orchestrate:launch  a1 {NASTY}\n", session)
    path = Path(hooks.slash_dir(), f"{session}.launch")
    assert path.read_text() == f" a1 {NASTY}\n"
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    for other in ("/orchestrate x", "/orchestrate:status a", "/orchestrate:launcher a b", "hi"):
        fire_prompt(monkeypatch, other, session)
    assert sorted(os.listdir(hooks.slash_dir())) == [f"{session}.launch"]
    assert slash.claim("launch", session) == f" a1 {NASTY}\n"
    with pytest.raises(slash.NotSaved, match="already used"):
        slash.claim("launch", session)  # once only: running it twice never launches twice


@pytest.mark.parametrize(
    ("text", "names", "options", "rest"),
    [
        ("a -v is broken", ["a"], {}, "-v is broken"),
        ("a --role bug-hunter   look at it  ", ["a"], {"--role": "bug-hunter"}, "look at it"),
        ("a --role=x -- --role is text", ["a"], {"--role": "x"}, "--role is text"),
        (f"a\n{NASTY}", ["a"], {}, NASTY),
        ("a", ["a"], {}, ""),
    ],
)
def test_split_args_keeps_the_task_verbatim(text, names, options, rest) -> None:
    assert slash.split_args(text, names=1, valued=("--role",)) == (names, options, rest)


def test_split_args_errors() -> None:
    with pytest.raises(OrchError, match="--role needs a value"):
        slash.split_args("a --role", names=1, valued=("--role",))
    with pytest.raises(OrchError, match="name the agent first"):
        slash.split_args("   ", names=1)


def test_parallel_tasks_split_at_lines_and_spaced_bars() -> None:
    assert slash.split_tasks("-v is broken | a||b |c\n\n  x | y  \r\nlast |") == [
        "-v is broken",
        "a||b |c",
        "x",
        "y",
        "last",
    ]
    with pytest.raises(OrchError, match="no tasks"):
        slash.split_tasks(" | \n ")


def orch_slash(command: str, sid: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "CLAUDE_CODE_SESSION_ID"}
    if sid:
        env["CLAUDE_CODE_SESSION_ID"] = sid
    return subprocess.run(
        [*ORCH, "slash", command], env=env, capture_output=True, text=True, timeout=60
    )


def test_orch_slash_launches_exactly_what_was_typed(session, monkeypatch) -> None:
    line = NASTY.replace("\n", " ")
    fire_prompt(monkeypatch, f"/orchestrate:parallel --roles researcher, -- {line} | two", session)
    r = orch_slash("parallel", session)
    assert r.returncode == 0, r.stderr
    assert "agent1: launched" in r.stdout and "agent2: launched" in r.stdout
    runs = {run["name"]: run for run in status_json()}
    assert runs["agent1"]["task"] == line and runs["agent1"]["role"] == "researcher"
    assert runs["agent2"]["task"] == "two" and runs["agent2"]["role"] is None
    assert r.stderr.startswith("orch: warning: this Claude Code session will not be told")

    fire_prompt(monkeypatch, f"/orchestrate:launch solo {NASTY}", session)
    assert orch_slash("launch", session).returncode == 0
    run = status_json("solo")[0]
    assert run["task"] == NASTY
    assert Path(run["output_path"]).parent.joinpath("prompt.txt").read_text() == NASTY
    again = orch_slash("launch", session)
    assert again.returncode == 1 and "already used" in again.stderr


def test_orch_slash_without_saved_arguments_says_why(session, project) -> None:
    r = orch_slash("launch", session)
    assert r.returncode == 1
    assert r.stderr.count("\n") == 1 and r.stderr.startswith(
        "orch: error: no arguments of /orchestrate:launch were saved for this Claude Code "
        "session: orch's hooks are not installed"
    )
    r = orch_slash("launch", None)
    assert r.returncode == 1 and "CLAUDE_CODE_SESSION_ID is not set" in r.stderr
    assert status_json() == []


def test_task_file_hand_over(project: Path) -> None:
    """What the /orchestrate command has Claude do: Write a file, pass it with --task-file."""
    handover = project / ".orch-tasks" / "t1.md"
    handover.parent.mkdir()
    handover.write_bytes(NASTY.encode())
    mine = project / "notes.md"
    mine.write_bytes(b"keep me\n")
    r = subprocess.run([*ORCH, "launch", "t1", "--task-file", str(handover)], capture_output=True)
    assert r.returncode == 0, r.stderr
    assert status_json("t1")[0]["task"] == NASTY
    assert not handover.parent.exists()  # read, recorded, deleted with its directory
    r = subprocess.run([*ORCH, "launch", "t2", "--task-file", "notes.md"], capture_output=True)
    assert r.returncode == 0 and mine.read_bytes() == b"keep me\n"  # not a hand-over file
    subprocess.run([*ORCH, "wait", "t1"], capture_output=True, timeout=60)
    r = subprocess.run(
        [*ORCH, "resume", "t1", "--task-file", "notes.md"], capture_output=True, text=True
    )
    assert r.returncode == 0, r.stderr
    assert status_json("t1")[0]["task"] == "keep me\n"
    both = subprocess.run(
        [*ORCH, "launch", "t3", "x", "--task-file", "notes.md"], capture_output=True
    )
    missing = subprocess.run([*ORCH, "launch", "t3", "--task-file", "nope.md"], capture_output=True)
    assert both.returncode == 2 and missing.returncode == 1
    assert missing.stderr.decode().startswith("orch: error: cannot read the task file nope.md")
    assert sorted(r["name"] for r in status_json()) == ["t1", "t2"]

"""Agents as a team: the board, agents that launch agents (tree, limits, cancel --tree), and
messages to a running print-mode agent, through the real ``orch`` command and the fast fake
claude (the hook's notices of them: test_hooks.py)."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from orch_plugins.store import Store
from tests.helpers import ORCH, orch, status_json, wait_for

HOSTILE = 'it\'s "quoted" $(touch /tmp/pwned) `id`\nsecond line\ttab ünï 🚀\n'


@pytest.fixture(autouse=True)
def _no_agent_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("ORCH_RUN_ID", "ORCH_AGENT", "CLAUDE_CODE_SESSION_ID", "ORCH_MAX_DEPTH"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.delenv("ORCH_MAX_AGENTS", raising=False)


def as_agent(run: dict, *args: str, input: str | None = None) -> subprocess.CompletedProcess:
    """``orch ARGS`` as the Bash tool of the agent of ``run`` runs it (its environment)."""
    env = {**os.environ, "ORCH_RUN_ID": str(run["run_id"]), "ORCH_AGENT": run["name"]}
    return subprocess.run(
        [*ORCH, *args], input=input, capture_output=True, text=True, env=env, timeout=60
    )


def test_board_posts_from_two_agents_read_back_in_order(project: Path) -> None:
    orch("launch", "a1", "SLEEP=30", check=True)
    orch("launch", "a2", "SLEEP=30", check=True)
    [a1], [a2] = status_json("a1"), status_json("a2")
    assert as_agent(a1, "board", "post", HOSTILE).returncode == 0
    assert as_agent(a2, "board", "post", "-", input="from a2").returncode == 0
    assert as_agent(a1, "board", "post", "a1 again").returncode == 0
    posts = json.loads(orch("board", "read", "--json", check=True).stdout)
    assert [(p["post_id"], p["author"], p["text"]) for p in posts] == [
        (1, "a1", HOSTILE),
        (2, "a2", "from a2"),
        (3, "a1", "a1 again"),
    ]
    assert posts[0]["run_id"] == a1["run_id"] and posts[0]["posted_at"].endswith("+00:00")
    later = json.loads(orch("board", "read", "--since", "2", "--json", check=True).stdout)
    assert [p["post_id"] for p in later] == [3]
    text = orch("board", "read", check=True).stdout
    assert "#2 a2 at " in text and "  second line\ttab" in text
    r = orch("board", "post", "  ")
    assert r.returncode == 1 and r.stderr == "orch: error: the post is empty\n"
    assert orch("board", "post", "by hand", check=True).stdout == "posted 4 as user\n"


def test_an_agent_launches_a_child_within_max_depth(project: Path) -> None:
    orch("launch", "lead", "SLEEP=30", check=True)
    [lead] = status_json("lead")
    assert lead["depth"] == 1 and lead["parent_run"] is None
    r = as_agent(lead, "launch", "child", "SLEEP=30")
    assert r.returncode == 0, r.stderr
    [child] = status_json("child")
    assert child["parent_run"] == lead["run_id"] and child["depth"] == 2
    r = as_agent(child, "launch", "grandchild", "SLEEP=30")
    assert r.returncode == 1
    assert r.stderr == (
        "orch: error: cannot launch 'grandchild': agent 'child' is at depth 2 and max_depth "
        "is 2, so it may not launch agents (config max_depth, ORCH_MAX_DEPTH)\n"
    )
    assert orch("status", "grandchild").returncode == 1  # nothing recorded
    orch("launch", "other", "SLEEP=30", check=True)
    lines = orch("status", "--tree", check=True).stdout.splitlines()
    tree = [line for line in lines if not line.startswith("total:")]  # the cost line
    names = [line.split()[0] if not line.startswith("└") else line.split()[1] for line in tree]
    assert names == ["NAME", "lead", "child", "other"]
    assert tree[2].startswith("└─ child ")
    assert [r["name"] for r in json.loads(orch("status", "--tree", "--json").stdout)] == [
        "lead",
        "child",
        "other",
    ]
    out = orch("cancel", "--tree", "lead", check=True).stdout
    assert out == "lead: cancelled\nchild: cancelled\n"
    assert status_json("other")[0]["status"] == "running"


def test_max_agents_caps_live_agents(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCH_MAX_AGENTS", "2")
    orch("launch", "m1", "SLEEP=30", check=True)
    orch("launch", "m2", "SLEEP=30", check=True)
    r = orch("launch", "m3", "SLEEP=30")
    assert r.returncode == 1 and r.stderr == (
        "orch: error: cannot launch 'm3': 2 agents are queued or running in this project and "
        "max_agents is 2 (config max_agents, ORCH_MAX_AGENTS); wait for some to end\n"
    )
    orch("cancel", "m1", check=True)
    orch("launch", "m3", "SLEEP=30", check=True)


def test_send_reaches_a_print_mode_agent_as_its_next_turn(project: Path) -> None:
    """A message sent mid-turn is answered before the run ends, as one more user turn of the
    same claude (the fake answers 'reply: TEXT'); recorded with sender and time; shown in
    orch logs. An ended agent refuses messages."""
    hold = project / "go-on"
    orch("launch", "s1", f"HOLD={hold}", check=True)
    wait_for(lambda: status_json("s1")[0]["tool_calls"] == 1)  # mid-turn, held
    r = orch("send", "s1", HOSTILE, check=True)
    assert r.stdout == "s1: message 1 sent\n"
    hold.touch()
    [run] = json.loads(orch("wait", "s1", "--json", check=True).stdout)
    assert run["status"] == "completed"
    assert Path(run["output_path"]).read_text() == f"reply: {HOSTILE}"
    logs = orch("logs", "s1", check=True).stdout
    assert "[message from user at 20" in logs
    assert "[orch] 1 message handed to the agent as its next turn" in logs
    store = Store(project / ".orchestrate")
    [msg] = store.messages(run["run_id"])
    assert (msg["sender"], msg["text"]) == ("user", HOSTILE)
    r = orch("send", "s1", "more")
    assert r.returncode == 1 and r.stderr == (
        "orch: error: agent 's1' has ended (completed); resume it instead: orch resume s1 TASK\n"
    )
    assert len(store.messages(run["run_id"])) == 1
    r = orch("send", "nosuch", "x")
    assert r.returncode == 1 and "no agent named 'nosuch'" in r.stderr


def test_an_agent_without_messages_ends_as_before(project: Path) -> None:
    """stdin closes at the first result when nothing waits: the run ends at once."""
    start = time.monotonic()
    orch("launch", "q1", "hello", check=True)
    orch("wait", "q1", check=True)
    assert time.monotonic() - start < 20
    assert orch("output", "q1", check=True).stdout.startswith("sha256=")
    inbox = Path(status_json("q1")[0]["output_path"]).parent / "inbox"
    assert (inbox / "closed").exists() and not list(inbox.glob("*.txt"))

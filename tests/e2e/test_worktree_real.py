"""Worktrees with the real Claude Code CLI (pinned) against the Messages API stand-in: the
stand-in's Bash tool calls make the edits, in each agent's own worktree. Four claude starts."""

from __future__ import annotations

from pathlib import Path

import pytest

from orch_plugins.testing.api import MessagesStandIn, Reply
from tests.helpers import git, git_project, orch, status_json

pytestmark = pytest.mark.e2e


def test_two_implementers_merge_conflict_resume_and_fork(
    real_project: Path, messages_api: MessagesStandIn
) -> None:
    repo = git_project(real_project)
    messages_api.on("EDIT ONE", Reply.bash("echo one >> f.txt"), Reply.text("one done"))
    messages_api.on("EDIT TWO", Reply.bash("echo two >> f.txt; pwd > where.txt"), Reply.text("ok"))
    messages_api.on("GO ON", Reply.bash("echo more >> f.txt"), Reply.text("continued"))
    messages_api.on("FORKED", Reply.bash("echo fork > g.txt"), Reply.text("forked"))

    # The implementer role works in a worktree by default; both edit f.txt at once.
    orch("parallel", "EDIT ONE", "EDIT TWO", "--role", "implementer", check=True)
    orch("wait", "--timeout", "150", check=True, timeout=180)
    assert (repo / "f.txt").read_text() == "base\n"  # untouched until a merge
    one, two = status_json("agent1")[0], status_json("agent2")[0]
    wt2 = Path(two["worktree"])
    assert (wt2 / "where.txt").read_text().strip() == str(wt2)  # claude's Bash ran there
    assert one["changes"]["files"] == 1 and one["changes"]["commits"] == 1
    assert git(repo, "show", "orch/agent2:f.txt") == "base\ntwo\n"  # committed at run end

    orch("merge", "agent1", check=True)
    assert (repo / "f.txt").read_text() == "base\none\n"
    r = orch("merge", "agent2")
    assert r.returncode == 1 and "f.txt" in r.stderr
    assert git(repo, "status", "--porcelain", "--untracked-files=no") == ""
    assert not (repo / ".git" / "MERGE_HEAD").exists()
    assert (repo / "f.txt").read_text() == "base\none\n"

    # A resumed agent continues in its own worktree, on its branch.
    orch("resume", "agent2", "GO ON", check=True)
    orch("wait", "agent2", check=True, timeout=150)
    again = status_json("agent2")[0]
    assert again["worktree"] == two["worktree"] and again["changes"]["commits"] == 2
    assert (wt2 / "f.txt").read_text() == "base\ntwo\nmore\n"
    req = next(r for r in messages_api.conversation_requests() if "GO ON" in r.prompt_text)
    assert any("EDIT TWO" in t for t in req.all_user_texts)

    # A fork gets a new worktree from the source's branch tip, and its context.
    orch("resume", "agent2", "FORKED", "--fork", "--as", "agent3", check=True)
    orch("wait", "agent3", check=True, timeout=150)
    fork = status_json("agent3")[0]
    assert fork["branch"] == "orch/agent3" and fork["base"] == again["changes"]["head"]
    assert (Path(fork["worktree"]) / "g.txt").read_text() == "fork\n"
    assert not (wt2 / "g.txt").exists()
    req = next(r for r in messages_api.conversation_requests() if "FORKED" in r.prompt_text)
    assert any("GO ON" in t for t in req.all_user_texts)  # the transcript came along

    # Unmerged work survives clear and an unforced discard.
    r = orch("clear", check=True)
    assert "kept agent2's worktree" in r.stdout and "kept agent3's worktree" in r.stdout
    r = orch("discard", "agent2")
    assert r.returncode == 1 and "not merged" in r.stderr
    assert wt2.is_dir() and "orch/agent2" in git(repo, "branch", "--list")

"""Worktrees with real git and the real ``orch`` command; the fast fake claude makes the edits
(``APPEND=FILE:WORD``). The same loop with the real Claude Code: tests/e2e/test_worktree_real.py."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.helpers import git, git_project, orch, status_json


@pytest.fixture
def repo(project: Path) -> Path:
    """``project`` as a git repository on ``main`` with one commit of ``f.txt``."""
    return git_project(project)


def clean(repo: Path) -> None:
    """The checkout is exactly as committed: nothing modified, no merge under way."""
    assert git(repo, "status", "--porcelain", "--untracked-files=no") == ""
    assert not (repo / ".git" / "MERGE_HEAD").exists()
    assert "<<<<<<<" not in (repo / "f.txt").read_text()


def test_merging_a_branch_with_nothing_new_says_so(repo: Path) -> None:
    """An agent that committed nothing: orch merge reports nothing to merge (git's own merge
    would say "Already up to date" and exit 0), and makes no commit; a second merge of merged
    work says the same."""
    orch("launch", "idle", "look only", "--worktree", check=True)
    orch("launch", "busy", "edit APPEND=f.txt:busy", "--worktree", check=True)
    orch("wait", check=True)
    head = git(repo, "rev-parse", "HEAD")
    r = orch("merge", "idle", check=True)
    assert r.stdout == "idle: nothing to merge: orch/idle holds no commit that main lacks\n"
    assert git(repo, "rev-parse", "HEAD") == head
    assert orch("merge", "busy", check=True).stdout.startswith("busy: merged into main (")
    again = orch("merge", "busy", check=True)
    assert again.stdout == "busy: nothing to merge: orch/busy holds no commit that main lacks\n"
    clean(repo)


def test_two_agents_same_file_merge_conflict_clear_discard(repo: Path) -> None:
    orch("launch", "one.fix", "edit APPEND=f.txt:one", "--worktree", check=True)
    orch("launch", "two", "edit APPEND=f.txt:two APPEND=sub/new.txt:x", "--worktree", check=True)
    orch("wait", check=True)
    # The main checkout is untouched until a merge.
    assert (repo / "f.txt").read_text() == "base\n"
    clean(repo)
    one, two = status_json("one.fix")[0], status_json("two")[0]
    assert one["branch"] == "orch/one.fix" and two["branch"] == "orch/two"
    assert one["base"] == git(repo, "rev-parse", "HEAD").strip()
    assert one["base_branch"] == "main"
    assert Path(one["worktree"]) == repo / ".orchestrate" / "worktrees" / "one.fix"
    assert one["cwd"] == one["worktree"]
    assert two["changes"] == {
        "files": 2,
        "insertions": 2,
        "deletions": 0,
        "commits": 1,
        "head": git(repo, "rev-parse", "orch/two").strip(),
        "dirty": False,
        "branch": "orch/two",
    }
    # Left uncommitted by the agent, committed by its supervisor, with the task's first line.
    assert git(repo, "log", "-1", "--format=%s", "orch/two") == (
        f"orch: two run {two['run_id']}: edit APPEND=f.txt:two APPEND=sub/new.txt:x\n"
    )
    assert "orch/one.fix +1 -0" in orch("status", check=True).stdout

    d = json.loads(orch("diff", "two", "--json", check=True).stdout)
    assert [p["path"] for p in d["paths"]] == ["f.txt", "sub/new.txt"]
    assert "+two" in orch("diff", "two", check=True).stdout
    assert "2 files changed" in orch("diff", "two", "--stat", check=True).stdout

    r = orch("merge", "one.fix", check=True)
    assert r.stdout.startswith("one.fix: merged into main")
    assert (repo / "f.txt").read_text() == "base\none\n"
    clean(repo)

    head = git(repo, "rev-parse", "HEAD")
    r = orch("merge", "two")
    assert r.returncode == 1
    assert "conflict" in r.stderr and "  f.txt" in r.stderr and "orch resume two" in r.stderr
    assert git(repo, "rev-parse", "HEAD") == head
    assert (repo / "f.txt").read_text() == "base\none\n"
    assert not (repo / "sub").exists()
    clean(repo)

    # clear forgets the merged agent (and its worktree and branch), keeps the unmerged one.
    r = orch("clear", check=True)
    assert "removed 1 ended run" in r.stdout
    assert "kept two's worktree and branch orch/two: orch/two holds 1 commit not merged" in r.stdout
    assert [x["name"] for x in status_json()] == ["two"]
    assert not (repo / ".orchestrate" / "worktrees" / "one.fix").exists()
    assert "orch/one.fix" not in git(repo, "branch", "--list")
    assert (repo / ".orchestrate" / "worktrees" / "two" / "sub" / "new.txt").exists()

    r = orch("discard", "two")
    assert r.returncode == 1 and "holds 1 commit not merged" in r.stderr
    assert "orch/two" in git(repo, "branch", "--list")
    orch("discard", "two", "--force", check=True)
    assert "orch/two" not in git(repo, "branch", "--list")
    assert not (repo / ".orchestrate" / "worktrees" / "two").exists()
    assert status_json("two")[0]["changes"]["discarded"] is True
    assert orch("clear", check=True).stdout == "removed 1 ended run\n"


def test_dirty_checkout_detached_head_base_with_slash_and_into(repo: Path) -> None:
    git(repo, "branch", "release/1.2")
    git(repo, "commit", "-q", "--allow-empty", "-m", "main moves on")
    orch("launch", "rel", "edit APPEND=g.txt:r", "--base", "release/1.2", check=True)
    orch("wait", "rel", check=True)
    rel = status_json("rel")[0]
    assert rel["base"] == git(repo, "rev-parse", "release/1.2").strip()
    assert rel["base_branch"] == "release/1.2" and rel["branch"] == "orch/rel"

    (repo / "f.txt").write_text("local edit\n")  # a dirty main checkout: refused, untouched
    r = orch("merge", "rel")
    assert r.returncode == 1 and "uncommitted changes (f.txt)" in r.stderr
    assert (repo / "f.txt").read_text() == "local edit\n"
    assert not (repo / "g.txt").exists()
    # --into a branch checked out nowhere: merged in a temporary worktree; this one untouched.
    orch("merge", "rel", "--into", "release/1.2", check=True)
    assert git(repo, "show", "release/1.2:g.txt") == "r\n"
    assert (repo / "f.txt").read_text() == "local edit\n"
    assert len(git(repo, "worktree", "list").splitlines()) == 2  # main + rel's own
    git(repo, "checkout", "-q", "f.txt")
    # A merged branch is discarded without --force.
    orch("discard", "rel", check=True)

    # A detached HEAD: the worktree starts from it, with no base branch.
    git(repo, "checkout", "-q", "--detach", "HEAD~1")
    orch("launch", "det", "edit APPEND=f.txt:d", "--worktree", check=True)
    orch("wait", "det", check=True)
    det = status_json("det")[0]
    assert det["base"] == git(repo, "rev-parse", "HEAD").strip() and det["base_branch"] is None
    r = orch("merge", "det")
    assert r.returncode == 1 and "detached HEAD" in r.stderr
    orch("merge", "det", "--into", "main", "--squash", "-m", "det's work", check=True)
    assert git(repo, "log", "-1", "--format=%s", "main") == "det's work\n"
    assert git(repo, "show", "main:f.txt") == "base\nd\n"
    orch("discard", "det", check=True)  # squash-merged: nothing lost


def test_name_reuse_resume_role_default_copy_and_git_rules(repo: Path, tmp_path: Path) -> None:
    (repo / ".env").write_text("SECRET=1\n")
    (tmp_path / "config.toml").write_text('[worktree]\ncopy = [".env", "nothere/*"]\n')
    # No identity and a failing pre-commit hook: orch's own commit still happens.
    git(repo, "config", "--unset", "user.name")
    git(repo, "config", "--unset", "user.email")
    hook = repo / ".git" / "hooks" / "pre-commit"
    hook.write_text("#!/bin/sh\necho hook ran > /tmp/orch-wt-hook-ran\nexit 1\n")
    hook.chmod(0o755)
    orch("launch", "impl", "edit APPEND=f.txt:i", "--role", "implementer", check=True)
    orch("wait", "impl", check=True)
    run = status_json("impl")[0]
    assert run["branch"] == "orch/impl" and run["changes"]["commits"] == 1
    assert (Path(run["worktree"]) / ".env").read_text() == "SECRET=1\n"
    assert run["changes"]["files"] == 1 and not run["changes"]["dirty"]  # .env: copied only
    assert ".env" not in git(repo, "ls-tree", "-r", "--name-only", "orch/impl")
    assert not (Path("/tmp/orch-wt-hook-ran")).exists()
    assert git(repo, "log", "-1", "--format=%an <%ae>", "orch/impl") == "orch <orch@localhost>\n"

    # A resume continues in the agent's own worktree, on its branch.
    orch("resume", "impl", "more APPEND=f.txt:again", check=True)
    orch("wait", "impl", check=True)
    again = status_json("impl")[0]
    assert again["worktree"] == run["worktree"] and again["cwd"] == run["cwd"]
    assert again["base"] == run["base"] and again["changes"]["commits"] == 2
    assert (Path(run["worktree"]) / "f.txt").read_text() == "base\ni\nagain\n"

    # --no-worktree overrides the role; a reused name with its branch still there gets -2.
    orch("launch", "plain", "edit APPEND=p.txt:x", "--role", "implementer", "--no-worktree")
    r = orch("discard", "impl")
    assert r.returncode == 1 and "holds 2 commits not merged" in r.stderr
    orch("discard", "impl", "--force", check=True)
    orch("launch", "impl", "edit APPEND=f.txt:j", "--worktree", check=True)
    orch("wait", check=True)
    assert status_json("plain")[0]["branch"] is None
    assert (repo / "p.txt").read_text() == "x\n"
    assert status_json("impl")[0]["branch"] == "orch/impl-2"


def test_not_a_repository_and_bad_base(project: Path) -> None:
    r = orch("launch", "x", "task", "--worktree")
    assert r.returncode == 1
    assert r.stderr.startswith("orch: error: --worktree needs a git repository")
    assert status_json() == []
    # A role's default in a project without git: the agent runs in place, with a warning.
    r = orch("launch", "y", "edit APPEND=f.txt:y", "--role", "implementer", check=True)
    assert "running in place, without a worktree" in r.stderr
    orch("wait", "y", check=True)
    assert (project / "f.txt").read_text() == "y\n"
    assert status_json("y")[0]["branch"] is None
    # A repository without a commit yet (just `git init`): the same, not an error.
    subprocess.run(["git", "init", "-q", str(project)], check=True)
    r = orch("launch", "z", "edit APPEND=g.txt:z", "--role", "implementer", check=True)
    assert "running in place, without a worktree" in r.stderr
    orch("wait", "z", check=True)
    assert (project / "g.txt").read_text() == "z\n" and status_json("z")[0]["branch"] is None


def test_bad_base_records_nothing(repo: Path) -> None:
    r = orch("launch", "x", "task", "--base", "no-such-branch")
    assert r.returncode == 1 and "is not a commit" in r.stderr
    assert status_json() == []
    assert "orch/x" not in git(repo, "branch", "--list")
    r = orch("launch", "x", "task", "--base", "main", "--no-worktree")
    assert r.returncode == 1 and "--base is for a worktree" in r.stderr

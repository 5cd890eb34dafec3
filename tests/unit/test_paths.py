"""One rule for the state directory: ``orch`` (the store) and the hooks always agree."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from orch_plugins import claude_hooks as hooks
from orch_plugins.store import default_state_dir, find_project_dir


@pytest.fixture
def tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A home directory holding Claude Code's own ``~/.claude``, reached through a symlink
    (as on machines whose /home links elsewhere), with projects below it."""
    real = tmp_path / "real-home"
    (real / ".claude").mkdir(parents=True)
    link = tmp_path / "home"
    link.symlink_to(real)
    monkeypatch.setenv("HOME", str(link))
    for var in ("ORCH_STATE_DIR", "CLAUDE_PROJECT_DIR"):
        monkeypatch.delenv(var, raising=False)
    return link


def agree(where: Path, monkeypatch: pytest.MonkeyPatch) -> str | None:
    """The store's state dir from ``where``, after checking the hooks find the same one (or
    none when it does not exist yet)."""
    monkeypatch.chdir(where)
    store_dir = str(default_state_dir())
    assert hooks.state_dir() == (store_dir if os.path.isdir(store_dir) else None)
    return store_dir


def test_store_and_hooks_agree_everywhere(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = tree / "repo"
    sub = repo / "pkg" / "a"
    sub.mkdir(parents=True)
    (repo / ".git").mkdir()
    real_repo = os.path.realpath(repo)
    # No state dir yet: orch would create it at the git root; the hooks find none.
    assert agree(sub, monkeypatch) == f"{real_repo}/.orchestrate"
    (repo / ".orchestrate").mkdir()
    assert agree(sub, monkeypatch) == f"{real_repo}/.orchestrate"
    # Claude Code's project dir wins over the current directory, for both.
    elsewhere = tree / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.setenv("CLAUDE_PROJECT_DIR", str(sub))
    assert agree(elsewhere, monkeypatch) == f"{real_repo}/.orchestrate"
    # ORCH_STATE_DIR wins, written with ~ as in a settings file's env.
    (tree / "state").mkdir()
    monkeypatch.setenv("ORCH_STATE_DIR", "~/state")
    assert agree(sub, monkeypatch) == os.path.realpath(tree / "state")


def test_the_home_directory_is_never_the_project(
    tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``~/.claude`` is Claude Code's own: a plain directory below home is its own project,
    also when HOME is reached through a symlink."""
    plain = tree / "notes" / "draft"
    plain.mkdir(parents=True)
    monkeypatch.chdir(plain)
    assert find_project_dir() == Path(os.path.realpath(plain))
    assert agree(plain, monkeypatch) == f"{os.path.realpath(plain)}/.orchestrate"

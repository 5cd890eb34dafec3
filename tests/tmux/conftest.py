"""tmux fixtures: every test gets its own tmux server (``-L`` socket in a private
``TMUX_TMPDIR``), killed afterwards; a missing tmux fails the test rather than skipping it."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import use_real_claude
from tests.tmux.helpers import Tm


@pytest.fixture
def tmux_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[Tm]:
    """A private tmux server for this test; the backend reaches it through ORCH_TMUX_SOCKET."""
    binary = shutil.which("tmux")
    if binary is None:
        pytest.fail("tmux not found: install tmux 3.0 or newer (apt-get install tmux)")
    # A short directory: a unix socket path must fit in ~100 bytes.
    tmpdir = tempfile.mkdtemp(prefix="orch-tmux-", dir="/tmp")
    monkeypatch.setenv("TMUX_TMPDIR", tmpdir)
    monkeypatch.setenv("ORCH_TMUX_SOCKET", "orch-test")
    monkeypatch.setenv("DISABLE_AUTOUPDATER", "1")
    monkeypatch.delenv("TMUX", raising=False)
    monkeypatch.delenv("TMUX_PANE", raising=False)
    tm = Tm(binary, "orch-test", tmpdir)
    try:
        yield tm
    finally:
        subprocess.run(tm.argv("kill-server"), capture_output=True, env=tm.env)
        shutil.rmtree(tmpdir, ignore_errors=True)


@pytest.fixture
def tmux_project(tmux_server: Tm, project: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``project`` (fake claude) whose agents default to the tmux backend.

    Set up after ``tmux_server``, so torn down first: its ``orch cancel --all`` runs while
    the server still exists."""
    monkeypatch.setenv("ORCH_DEFAULT_BACKEND", "tmux")
    return project


@pytest.fixture
def real_tmux_project(
    tmux_project: Path,
    claude_env: dict[str, str],
    claude_bin: str,
    monkeypatch: pytest.MonkeyPatch,
) -> Path:
    """``tmux_project`` with agents running the real ``claude`` against ``messages_api``."""
    use_real_claude(monkeypatch, claude_env, claude_bin)
    return tmux_project

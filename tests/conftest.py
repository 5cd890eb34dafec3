"""Shared fixtures: every test gets its own state dir, config, HOME and plugin manager."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from orch_plugins import plugins
from tests.helpers import FAKE_CLAUDE, ORCH


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A scratch project with the fake claude, its own state dir, config and HOME."""
    proj = tmp_path / "proj"
    proj.mkdir()
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.chdir(proj)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("ORCH_STATE_DIR", str(proj / ".orchestrate"))
    monkeypatch.setenv("ORCH_CONFIG", str(tmp_path / "config.toml"))
    monkeypatch.setenv("ORCH_CLAUDE_BIN", str(FAKE_CLAUDE))
    monkeypatch.setenv("ORCH_RETRY_BACKOFF", "0.05")
    monkeypatch.setenv("ORCH_KILL_GRACE", "2")
    for var in (
        "ORCH_MAX_PARALLEL",
        "ORCH_DEFAULT_ROLE",
        "ORCH_DEFAULT_BACKEND",
        "CLAUDE_PROJECT_DIR",
    ):
        monkeypatch.delenv(var, raising=False)
    plugins.set_plugins(None)
    yield proj
    plugins.set_plugins(None)
    # Never leave agents behind.
    subprocess.run([*ORCH, "cancel", "--all"], capture_output=True, timeout=60)


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A directory on the ``orch`` subprocesses' PYTHONPATH for :func:`write_dist`."""
    path = tmp_path / "site"
    path.mkdir()
    entries = [str(path), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(entries))
    return path

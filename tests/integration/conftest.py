"""Fixtures for the Claude Code integration tests: a real install, a scratch project and HOME.

The package is installed once per test session the way a user installs it: ``python3
install.py --venv DIR --package-only`` (a virtual environment, a regular non-editable
``pip install`` of this clone), so the tests also prove that the installed package finds its
slash commands and hooks. Every test then gets its own project and ``HOME``; Claude Code runs
with a ``PATH`` that has no ``orch`` on it, so the commands only work if the hooks put it there.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from orch_plugins.store import Store
from orch_plugins.testing.api import MessagesStandIn
from orch_plugins.testing.pytest_plugin import ClaudeRun, make_claude_env, run_claude, trust_project

ROOT = Path(__file__).resolve().parents[2]
STREAM_JSON = ["--output-format", "stream-json", "--verbose"]
#: No orch (and no version-manager shims) here: claude finds orch only through our hooks.
CLEAN_PATH = "/usr/local/bin:/usr/bin:/bin"


@pytest.fixture(scope="session")
def orch_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A virtual environment made by the real ``install.py`` (once per test session)."""
    base = tmp_path_factory.mktemp("install")
    venv, bin_dir = base / "venv", base / "bin"
    argv = ["--venv", str(venv), "--bin-dir", str(bin_dir), "--package-only"]
    r = subprocess.run(
        [sys.executable, str(ROOT / "install.py"), *argv],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert r.returncode == 0, f"install.py failed:\n{r.stdout}\n{r.stderr}"
    assert (bin_dir / "orch").resolve() == (venv / "bin" / "orch").resolve()
    return venv


@dataclass
class CC:
    """One test's project, HOME, environment, installed orch and stand-in."""

    project: Path
    home: Path
    env: dict[str, str]
    venv: Path
    api: MessagesStandIn
    claude_bin: str

    @property
    def python(self) -> str:
        return str(self.venv / "bin" / "python3")

    def orch(self, *args: str, check: bool = True, timeout: float = 180) -> Any:
        """The installed ``orch``, run in the project with the test environment."""
        r = subprocess.run(
            [str(self.venv / "bin" / "orch"), *args],
            cwd=self.project,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check:
            assert r.returncode == 0, f"orch {args} failed ({r.returncode}):\n{r.stdout}{r.stderr}"
        return r

    def claude(self, *args: str, env: dict[str, str] | None = None) -> ClaudeRun:
        run = run_claude(
            [*args, *STREAM_JSON],
            env=env or self.env,
            cwd=self.project,
            claude=self.claude_bin,
            timeout=180,
        )
        assert run.returncode == 0, run.describe()
        return run

    def store(self) -> Store:
        return Store(self.project / ".orchestrate", create=False)

    def trust(self) -> None:
        """Let the project's settings.json permissions apply in ``-p`` mode."""
        trust_project(self.home, self.project)

    def status(self) -> dict[str, dict[str, Any]]:
        return {r["name"]: r for r in json.loads(self.orch("status", "--json").stdout)}


@pytest.fixture
def cc(
    tmp_path: Path, orch_venv: Path, messages_api: MessagesStandIn, claude_bin: str
) -> Iterator[CC]:
    project = tmp_path / "project"
    project.mkdir()
    subprocess.run(["git", "init", "-q", str(project)], check=True)
    home = tmp_path / "home"
    base = {k: v for k, v in os.environ.items() if not k.startswith("ORCH_")}
    env = make_claude_env(messages_api.url, home, base=base)
    env.update(
        PATH=CLEAN_PATH,
        ORCH_CLAUDE_BIN=claude_bin,
        ORCH_CONFIG=str(tmp_path / "config.toml"),
        ORCH_RETRY_BACKOFF="0.2",
    )
    for key in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "XDG_DATA_HOME"):
        env.pop(key, None)
    helper = CC(project, home, env, orch_venv, messages_api, claude_bin)
    yield helper
    if (project / ".orchestrate").exists():  # never leave agents behind
        helper.orch("cancel", "--all", check=False, timeout=60)

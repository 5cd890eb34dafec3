"""An orchestrator started in a subdirectory of the project: Claude Code (2.1.197) runs a
project's hooks only when started where its .claude/settings.json is. orch finds the project
from anywhere below it, says when a session's hooks will not run, and `orch start` brings them."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from orch_plugins.cli.integration import hooks_problem
from tests.helpers import ORCH


def run(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*ORCH, *args], cwd=cwd, capture_output=True, text=True, timeout=120)


@pytest.fixture
def installed(project: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``project`` as a git checkout with orch installed into its .claude/."""
    monkeypatch.delenv("ORCH_STATE_DIR")  # found from the directory, as for a user
    monkeypatch.delenv("CLAUDE_CODE_SESSION_ID", raising=False)
    subprocess.run(["git", "init", "-q", str(project)], check=True)
    assert run(project, "install").returncode == 0
    (project / "pkg" / "a").mkdir(parents=True)
    return project


def test_hooks_run_at_the_install_not_below_it(installed: Path) -> None:
    sub = installed / "pkg" / "a"
    assert hooks_problem(installed) is None
    why = hooks_problem(sub)
    assert why is not None and f"Claude Code started in {sub} runs none of orch's hooks" in why
    assert f"installed in {installed}; start claude there" in why and "orch start" in why

    doctor = run(sub, "doctor")
    assert doctor.returncode == 0, doctor.stdout  # a warning: agents still run
    [line] = [x for x in doctor.stdout.splitlines() if "local: hooks" in x]
    assert line.startswith("warn  ") and str(installed) in line
    assert "ok    local: hooks" in run(installed, "doctor").stdout

    at_root = run(installed, "start", "--dry-run").stdout
    below = run(sub, "start", "--dry-run").stdout
    assert "--settings" not in at_root and "--plugin-dir" not in at_root
    assert "--settings" in below and "orch_plugins.claude_hooks" in below
    assert not (sub / ".orchestrate").exists()

    user = Path(os.environ["HOME"]) / ".claude"
    user.mkdir()
    (user / "settings.json").write_text(json.dumps({"enabledPlugins": {"orchestrate@x": True}}))
    assert hooks_problem(sub) is None  # the plugin, enabled for the user, runs everywhere


def test_the_store_is_found_from_below(installed: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """As the hooks find it (the nearest .orchestrate), also from Claude Code's project dir."""
    from orch_plugins.store import default_state_dir

    sub = installed / "pkg" / "a"
    monkeypatch.setenv("CLAUDE_PROJECT_DIR", str(sub))
    assert default_state_dir() == installed / ".orchestrate"
    monkeypatch.chdir(sub)
    monkeypatch.delenv("CLAUDE_PROJECT_DIR")
    assert default_state_dir() == installed / ".orchestrate"


def test_nothing_installed(project: Path) -> None:
    why = hooks_problem(project)
    assert why is not None and why.startswith("orch's hooks are not installed")

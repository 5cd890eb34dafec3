"""Installs sharing one environment: purge refuses while others use it, and once the environment
is gone anyway, every installed hook command stays quiet, in a shell and in a real session."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from orch_plugins import install
from orch_plugins.testing.pytest_plugin import ClaudeRun
from tests.integration.conftest import CC, ROOT

pytestmark = pytest.mark.e2e


def hook_commands(claude_dir: Path) -> dict[str, str]:
    """``{event: command}`` of our hooks in ``claude_dir/settings.json``."""
    data = json.loads((claude_dir / "settings.json").read_text())
    return {
        event: h["command"]
        for event, groups in data["hooks"].items()
        for g in groups
        for h in g["hooks"]
        if install.is_our_hook(h)
    }


def run_hook(cc: CC, command: str, project: Path, event: str) -> subprocess.CompletedProcess[str]:
    """One hook command exactly as Claude Code runs it: ``sh -c``, the event on stdin."""
    payload = {
        "session_id": f"s-{event}-{project.name}",
        "transcript_path": str(project / "t.jsonl"),
        "cwd": str(project),
        "hook_event_name": event,
        "source": "startup",
        "prompt": "hi",
    }
    return subprocess.run(
        ["sh", "-c", command],
        input=json.dumps(payload),
        cwd=project,
        env={**cc.env, "CLAUDE_PROJECT_DIR": str(project)},
        capture_output=True,
        text=True,
        timeout=30,
    )


def hook_trouble(run: ClaudeRun) -> list[str]:
    """Whatever a session shows of hooks going wrong: failed or talkative hook responses
    (stream-json ``hook_response``), hook-error notifications, and hook lines on stderr."""
    trouble = [
        json.dumps(e)
        for e in run.events
        if e.get("type") == "system"
        and (
            (
                e.get("subtype") == "hook_response"
                and (e.get("exit_code") != 0 or e.get("stderr") or e.get("stdout"))
            )
            or "hook" in str(e.get("key", "")) + str(e.get("text", "")).lower()
        )
    ]
    return trouble + [line for line in run.stderr.splitlines() if "hook" in line.lower()]


def test_purge_is_refused_while_in_use_and_hooks_stay_quiet_once_orch_is_gone(
    cc: CC, tmp_path: Path
) -> None:
    # A shared environment of its own (a copy of the installed one) for two projects and ~.
    venv = tmp_path / "shared-venv"
    shutil.copytree(cc.venv, venv, symlinks=True)
    python = str(venv / "bin" / "python3")
    one, two = cc.project, tmp_path / "two"
    two.mkdir()
    for where in (["--project", str(one)], ["--project", str(two)], ["--user"]):
        r = subprocess.run(
            [python, "-m", "orch_plugins.install", *where],
            env=cc.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert r.returncode == 0, r.stdout + r.stderr
    claude_dirs = [one / ".claude", two / ".claude", cc.home / ".claude"]
    before = {d: hook_commands(d) for d in claude_dirs}
    assert all(len(c) == 4 and python in c["Stop"] for c in before.values())

    purge = ["--venv", str(venv), "--bin-dir", str(tmp_path / "bin"), "--uninstall", "--purge"]
    r = subprocess.run(
        [sys.executable, str(ROOT / "install.py"), *purge, "--project", str(one)],
        env=cc.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 1, r.stdout + r.stderr
    assert f"not purging {venv}" in r.stderr
    assert str(two) in r.stderr and str(cc.home / ".claude") in r.stderr
    assert venv.is_dir() and {d: hook_commands(d) for d in claude_dirs} == before

    # With the environment there, the shim runs the hook: the session is recorded.
    r = run_hook(cc, before[claude_dirs[0]]["SessionStart"], one, "SessionStart")
    assert r.returncode == 0 and r.stderr == "", r.stderr
    store = cc.store()
    assert store.session("s-SessionStart-project") is not None
    store.close()

    shutil.rmtree(venv)  # gone anyway: an older purge, rm -rf, a Python upgrade
    for claude_dir, commands in before.items():
        project = claude_dir.parent if claude_dir != cc.home / ".claude" else one
        for event, command in commands.items():
            r = run_hook(cc, command, project, event)
            assert (r.returncode, r.stdout, r.stderr) == (0, "", ""), (command, r)

    # A real session in a project whose orch is gone shows no hook error.
    cc.trust()
    run = cc.claude("-p", "hello after the purge")
    assert run.result_text == "echo: hello after the purge"
    assert hook_trouble(run) == [], run.describe()

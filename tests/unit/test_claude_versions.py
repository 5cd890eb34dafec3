"""The test kit's ``claude_bin``: one run per listed Claude Code version, failing when one is
missing; and the versions CI installs are the ones the package names."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from orch_plugins import CLAUDE_CODE_TESTED, CLAUDE_CODE_VERSION

ROOT = Path(__file__).resolve().parents[2]


def fake_claude(path: Path, version: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!/bin/sh\necho '{version} (Claude Code)'\n")
    path.chmod(0o755)
    return path


def test_claude_bin_runs_each_listed_version_and_fails_for_a_missing_one(tmp_path: Path) -> None:
    on_path = fake_claude(tmp_path / "bin" / "claude", "2.1.197")
    cache = tmp_path / "cache"
    cached = fake_claude(cache / "orch-plugins/claude-code/2.1.332/bin/claude", "2.1.332")
    (tmp_path / "test_it.py").write_text(
        "def test_it(claude_bin):\n    print('USING', claude_bin)\n"
    )
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("ORCH_TEST_")},
        "PATH": f"{on_path.parent}{os.pathsep}/usr/bin:/bin",
        "XDG_CACHE_HOME": str(cache),
        "ORCH_TEST_CLAUDE_VERSIONS": "2.1.197, 2.1.332,9.9.9",
    }
    r = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider", "-rfs"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    out = r.stdout + r.stderr
    assert r.returncode == 1, out
    assert "2 passed, 1 error" in out and "skipped" not in out, out  # an error fails the run
    assert f"USING {on_path}" in out and f"USING {cached}" in out
    assert "test_it[claude-9.9.9]" in out
    assert "Claude Code 9.9.9 not found" in out
    assert f"npm install -g --prefix {cache}/orch-plugins/claude-code/9.9.9 " in out


def test_the_project_runs_its_real_claude_tests_against_every_tested_version() -> None:
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert 'orch_claude_versions = ["tested"]' in pyproject
    assert CLAUDE_CODE_VERSION in CLAUDE_CODE_TESTED
    ci = (ROOT / ".ci" / "run").read_text()
    assert "o.CLAUDE_CODE_VERSION" in ci and "o.CLAUDE_CODE_TESTED" in ci
    assert "2.1." not in ci  # no second copy of a version number
    readme = (ROOT / "README.md").read_text()
    assert f"npm install -g @anthropic-ai/claude-code@{CLAUDE_CODE_VERSION}" in readme
    tested = f"Tested Claude Code versions: {CLAUDE_CODE_TESTED[0]} (pinned) to "
    assert tested + f"{CLAUDE_CODE_TESTED[-1]}." in readme

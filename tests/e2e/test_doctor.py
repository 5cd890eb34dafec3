"""``orch doctor`` against the real Claude Code CLI and the Messages API stand-in: it says when
there is no config file, checks the installed claude against the tested range, and checks the
configured key with the API without spending tokens (a wrong key is reported)."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

from orch_plugins import CLAUDE_CODE_TESTED
from orch_plugins.testing.api import MessagesStandIn
from orch_plugins.testing.pytest_plugin import TEST_API_KEY
from tests.helpers import orch

pytestmark = pytest.mark.e2e


def _checks(r: object) -> dict[str, dict]:
    return {row["check"]: row for row in json.loads(r.stdout)}  # type: ignore[attr-defined]


def test_doctor_checks_config_version_and_the_key(
    real_project: Path,
    messages_api: MessagesStandIn,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    messages_api.api_keys = {TEST_API_KEY}  # the stand-in now refuses any other key, as the API
    checks = _checks(orch("doctor", "--json", check=True))
    config = tmp_path / "config.toml"
    assert not config.exists()
    assert checks["config"]["detail"] == f"no config file (defaults; looked for {config})"
    lo, hi = CLAUDE_CODE_TESTED[0], CLAUDE_CODE_TESTED[-1]
    assert checks["claude"]["level"] == "ok", checks["claude"]
    assert checks["claude"]["detail"].endswith(f"within the tested range {lo} to {hi}")
    assert checks["api"]["level"] == "ok", checks["api"]
    assert checks["api"]["detail"].startswith(f"{messages_api.url} accepts the key in ANTHROPIC_")
    assert ("GET", "/v1/models?limit=1") in messages_api.side_requests
    assert messages_api.requests == []  # no Messages call: no tokens spent

    # A wrong key: the doctor says so and fails, exactly where Claude Code itself would fail.
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-wrong-0000000000000000000000")
    monkeypatch.delenv("ANTHROPIC_AUTH_TOKEN", raising=False)
    r = orch("doctor")
    assert r.returncode == 1
    [line] = [x for x in r.stdout.splitlines() if "local: api" in x]
    assert line.startswith("FAIL") and "refuses the key in ANTHROPIC_API_KEY (HTTP 401" in line
    r = orch("launch", "keyless", "hello", "--wait")
    assert r.returncode == 1 and "keyless: failed" in r.stdout
    assert messages_api.requests == []  # refused before any answer

    # A config file that exists is named; a claude outside the tested range is a warning.
    config.write_text("max_parallel = 3\n")
    old = tmp_path / "old-claude"
    old.write_text(f"#!{sys.executable}\nprint('2.0.1 (Claude Code)')\n")
    old.chmod(0o755)
    monkeypatch.setenv("ORCH_CLAUDE_BIN", str(old))
    monkeypatch.setenv("ANTHROPIC_API_KEY", TEST_API_KEY)
    r = orch("doctor")
    assert r.returncode == 0, r.stdout  # a warning does not fail it
    lines = r.stdout.splitlines()
    assert any(re.fullmatch(rf"ok +local: config +{config} \(0 remote hosts\)", x) for x in lines)
    [line] = [x for x in lines if "local: claude" in x]
    assert line.startswith("warn") and f"outside the tested range {lo} to {hi}" in line

"""The notice hook killed halfway inside a real Claude Code session: the orchestrator's model
hears of an ended agent exactly once over two prompts, whether the hook died before printing
its notice (``hook-notice-pending``: the next prompt brings it) or after (``hook-notice-sent``:
Claude Code uses a killed hook's output and records it in the transcript, so the next prompt
does not repeat it)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from orch_plugins.testing.api import MessagesStandIn
from orch_plugins.testing.pytest_plugin import run_claude, trust_project
from tests.faults.kit import Case
from tests.helpers import FAKE_CLAUDE

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
SHIM = ROOT / "claude" / "hooks" / "orch_hook.py"
NEWS = "done1: completed"


@pytest.mark.parametrize("fault", ["hook-notice-pending", "hook-notice-sent"])
def test_a_killed_notice_hook_in_a_real_session(
    project: Path,
    claude_env: dict[str, str],
    claude_bin: str,
    messages_api: MessagesStandIn,
    tmp_path: Path,
    fault: str,
) -> None:
    case = Case(tmp_path, "orchestrator")
    where = tmp_path / "orchestrator"
    (where / ".claude").mkdir(parents=True)
    command = f"{sys.executable} -I -S {SHIM} UserPromptSubmit {ROOT / 'src'}"
    hook = {"hooks": [{"type": "command", "command": command}]}
    settings = {"hooks": {"UserPromptSubmit": [hook]}}
    (where / ".claude" / "settings.json").write_text(json.dumps(settings))
    trust_project(claude_env["HOME"], where)
    env = {**claude_env, "ORCH_STATE_DIR": str(case.state_dir)}

    def prompt(text: str, *extra: str, fault: str | None = None) -> dict:
        run = run_claude(
            ["-p", text, *extra, "--output-format", "stream-json", "--verbose"],
            env={**env, **({"ORCH_FAULT": fault} if fault else {})},
            cwd=where,
            claude=claude_bin,
            timeout=120,
        )
        assert run.returncode == 0, run.describe()
        return run.result or {}

    assert case.orch("status").returncode == 0  # the project's store (hooks never make one)
    first = prompt("first prompt")  # the session is seen: later ends are news to it
    fake = {"ORCH_CLAUDE_BIN": str(FAKE_CLAUDE)}
    out = case.orch("launch", "done1", "quick", "--wait", extra_env=fake)
    assert out.returncode == 0, out.stderr
    prompt("second prompt", "-r", first["session_id"], fault=fault)
    prompt("third prompt", "-r", first["session_id"])
    asks = [r for r in messages_api.requests if not r.is_title_request]
    told = [json.dumps(r.messages).count(NEWS) for r in asks]
    # What each request shows the model (the whole conversation so far): never told twice,
    # told by the third prompt at the latest.
    assert told[-1] == 1, told
    assert told == sorted(told) and max(told) == 1, told

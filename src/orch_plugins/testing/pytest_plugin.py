"""pytest plugin (entry point ``pytest11``) exposing the stand-in fixtures to plugin authors.

Fixtures
    ``messages_api``  a running :class:`~orch_plugins.testing.api.MessagesStandIn`.
    ``claude_env``    an environment that points a real ``claude`` at it, with a scratch HOME.
    ``claude_bin``    absolute path of the real Claude Code CLI; the test FAILS if it is missing,
                      because a skipped end-to-end suite reads as a green one.

Helpers (importable): :func:`find_claude_bin`, :func:`make_claude_env`,
:func:`write_claude_config`, :func:`trust_project`, :func:`run_claude` / :class:`ClaudeRun`.

Loaded by every pytest run in an environment where this package is installed, so it imports
nothing heavy at module level; the server module is imported when a fixture is used.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from orch_plugins.testing.api import MessagesStandIn

__all__ = [
    "CLAUDE_CODE_VERSION",
    "QUIET_ENV",
    "TEST_API_KEY",
    "ClaudeRun",
    "find_claude_bin",
    "make_claude_env",
    "run_claude",
    "trust_project",
    "write_claude_config",
]

#: The Claude Code release these helpers were checked against.
CLAUDE_CODE_VERSION = "2.1.197"

#: Looks like a real key (Claude Code checks the shape) but is only ever sent to the stand-in.
TEST_API_KEY = "sk-ant-test-0000000000000000000000"

#: Keeps Claude Code from updating itself, phoning home, or retrying scripted errors for minutes.
#: ``CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC`` also stops the session-title side request and the
#: DNS look-ups for telemetry hosts; drop it from the env to exercise title requests.
QUIET_ENV: Mapping[str, str] = {
    "DISABLE_AUTOUPDATER": "1",
    "DISABLE_TELEMETRY": "1",
    "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
    "CLAUDE_CODE_MAX_RETRIES": "0",
}

_INHERITED_PREFIXES = ("ANTHROPIC_", "CLAUDE_")
#: Set by a surrounding Claude Code session; a nested ``claude`` would think it is a sub-process.
_INHERITED_NAMES = frozenset({"CLAUDECODE"})


def pytest_configure(config: pytest.Config) -> None:
    """Register the marker so plugin authors' suites run clean under ``--strict-markers``."""
    config.addinivalue_line(
        "markers", "e2e: drives the real Claude Code CLI against the Messages API stand-in"
    )


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def find_claude_bin() -> str:
    """Absolute path of the real ``claude``: ``$ORCH_TEST_CLAUDE`` if set, else from ``PATH``.

    Fails the calling test when there is none: the end-to-end tests are the point, so their
    absence must be loud.
    """
    configured = os.environ.get("ORCH_TEST_CLAUDE")
    found = shutil.which(configured or "claude")
    if found is None:
        where = (
            f"ORCH_TEST_CLAUDE={configured!r} is not executable" if configured else "not on PATH"
        )
        pytest.fail(
            f"Claude Code CLI not found ({where}). Install it with "
            f"`npm install -g @anthropic-ai/claude-code@{CLAUDE_CODE_VERSION}` "
            "or point ORCH_TEST_CLAUDE at the binary.",
            pytrace=False,
        )
    return os.path.abspath(found)


def write_claude_config(home: Path | str, api_key: str = TEST_API_KEY) -> Path:
    """Write ``HOME/.claude.json`` so Claude Code skips onboarding and trusts the API key.

    ``-p`` runs need none of it; interactive sessions would otherwise stop at dialogs.
    """
    path = Path(home) / ".claude.json"
    config = {
        "hasCompletedOnboarding": True,
        "customApiKeyResponses": {"approved": [api_key[-20:]], "rejected": []},
        "projects": {},
    }
    path.write_text(json.dumps(config, indent=2), encoding="utf-8")
    return path


def trust_project(home: Path | str, cwd: Path | str) -> None:
    """Mark ``cwd`` trusted in ``HOME/.claude.json`` (interactive mode asks otherwise)."""
    path = Path(home) / ".claude.json"
    config: dict[str, Any] = (
        json.loads(path.read_text(encoding="utf-8")) if path.exists() else {"projects": {}}
    )
    project = config.setdefault("projects", {}).setdefault(str(Path(cwd).resolve()), {})
    project["hasTrustDialogAccepted"] = True
    path.write_text(json.dumps(config, indent=2), encoding="utf-8")


def make_claude_env(
    base_url: str,
    home: Path | str,
    *,
    api_key: str = TEST_API_KEY,
    base: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """An environment running ``claude`` against ``base_url`` with a scratch ``home``.

    Starts from ``base`` (default ``os.environ``) minus inherited ``ANTHROPIC_*``/``CLAUDE_*``
    settings, which could redirect the CLI to a real endpoint or account. Creates ``home`` and
    its ``.claude.json``.
    """
    home = Path(home)
    home.mkdir(parents=True, exist_ok=True)
    write_claude_config(home, api_key)
    env = {
        key: value
        for key, value in (os.environ if base is None else base).items()
        if not key.startswith(_INHERITED_PREFIXES) and key not in _INHERITED_NAMES
    }
    env.update(QUIET_ENV)
    env.update(HOME=str(home), ANTHROPIC_BASE_URL=base_url, ANTHROPIC_API_KEY=api_key)
    return env


@dataclass
class ClaudeRun:
    """The outcome of one ``claude -p … --output-format stream-json --verbose`` process."""

    args: list[str]
    returncode: int
    stdout: str
    stderr: str
    duration: float
    #: Every JSON line of stdout, in order.
    events: list[dict[str, Any]] = field(default_factory=list)

    @property
    def init(self) -> dict[str, Any] | None:
        """The ``{"type": "system", "subtype": "init", …}`` event."""
        return next(
            (e for e in self.events if e.get("type") == "system" and e.get("subtype") == "init"),
            None,
        )

    @property
    def result(self) -> dict[str, Any] | None:
        """The final ``{"type": "result", …}`` event."""
        return next((e for e in reversed(self.events) if e.get("type") == "result"), None)

    @property
    def session_id(self) -> str | None:
        event = self.result or self.init
        return None if event is None else event.get("session_id")

    @property
    def result_text(self) -> str | None:
        return None if self.result is None else self.result.get("result")

    def describe(self) -> str:
        """Everything useful for an assertion message when a run goes wrong."""
        return (
            f"claude exited {self.returncode} after {self.duration:.2f}s\n"
            f"args: {self.args}\nstderr: {self.stderr[-2000:]}\nstdout: {self.stdout[-4000:]}"
        )


def _json_lines(text: str) -> Iterator[dict[str, Any]]:
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict):
                yield event


def run_claude(
    args: Sequence[str],
    *,
    env: Mapping[str, str],
    cwd: Path | str,
    input: str | None = None,
    timeout: float = 60.0,
    claude: str | None = None,
) -> ClaudeRun:
    """Run ``claude *args`` to completion and parse its stream-json events.

    ``args`` should include ``-p`` and ``--output-format stream-json --verbose``. Without
    ``input`` stdin is ``/dev/null``, so Claude Code never waits on an inherited terminal.
    """
    argv = [claude or find_claude_bin(), *args]
    started = time.monotonic()
    proc = subprocess.run(
        argv,
        cwd=cwd,
        env=dict(env),
        input=input,
        stdin=subprocess.DEVNULL if input is None else None,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=timeout,
        check=False,
    )
    return ClaudeRun(
        args=argv,
        returncode=proc.returncode,
        stdout=proc.stdout,
        stderr=proc.stderr,
        duration=time.monotonic() - started,
        events=list(_json_lines(proc.stdout)),
    )


# --------------------------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------------------------


@pytest.fixture
def messages_api() -> Iterator[MessagesStandIn]:
    """A running Messages API stand-in, stopped after the test."""
    from orch_plugins.testing.api import MessagesStandIn

    with MessagesStandIn() as api:
        yield api


@pytest.fixture
def claude_env(tmp_path: Path, messages_api: MessagesStandIn) -> dict[str, str]:
    """Environment for running the real ``claude`` against ``messages_api``.

    HOME is ``tmp_path / "home"`` (already holding ``.claude.json``); see :data:`QUIET_ENV`.
    """
    return make_claude_env(messages_api.url, tmp_path / "home")


@pytest.fixture
def claude_bin() -> str:
    """Absolute path of the real Claude Code CLI (fails the test when absent)."""
    return find_claude_bin()

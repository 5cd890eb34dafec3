"""pytest plugin (entry point ``pytest11``) exposing the stand-in fixtures to plugin authors.

Fixtures
    ``messages_api``  a running :class:`~orch_plugins.testing.api.MessagesStandIn`.
    ``claude_env``    an environment that points a real ``claude`` at it, with a scratch HOME.
    ``claude_bin``    absolute path of the real Claude Code CLI; the test FAILS if it is missing,
                      because a skipped end-to-end suite reads as a green one. With versions
                      listed (ini option ``orch_claude_versions`` or ``$ORCH_TEST_CLAUDE_VERSIONS``)
                      every test using it runs once per version (``test_x[claude-2.1.197]``).

Helpers (importable): :func:`find_claude_bin`, :func:`claude_version`, :func:`claude_prefix`,
:func:`make_claude_env`,
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

# The pinned release and the tested range: one constant each, in the package root.
from orch_plugins import CLAUDE_CODE_TESTED, CLAUDE_CODE_VERSION

if TYPE_CHECKING:
    from orch_plugins.testing.api import MessagesStandIn

__all__ = [
    "CLAUDE_CODE_TESTED",
    "CLAUDE_CODE_VERSION",
    "QUIET_ENV",
    "TEST_API_KEY",
    "ClaudeRun",
    "claude_prefix",
    "claude_version",
    "claude_versions",
    "find_claude_bin",
    "make_claude_env",
    "run_claude",
    "trust_project",
    "write_claude_config",
]

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


#: Lists the Claude Code versions ``claude_bin`` runs each test against (overrides the ini).
VERSIONS_ENV = "ORCH_TEST_CLAUDE_VERSIONS"
VERSIONS_INI = "orch_claude_versions"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        VERSIONS_INI,
        "Claude Code versions to run every test using claude_bin against, e.g. "
        f"{' '.join(CLAUDE_CODE_TESTED)}; 'tested' stands for those orch-plugins is tested "
        f"against (default: just the claude on PATH); ${VERSIONS_ENV} overrides it",
        type="args",
        default=[],
    )


def pytest_configure(config: pytest.Config) -> None:
    """Register the marker so plugin authors' suites run clean under ``--strict-markers``."""
    config.addinivalue_line(
        "markers", "e2e: drives the real Claude Code CLI against the Messages API stand-in"
    )


def claude_versions(config: pytest.Config) -> list[str]:
    """The versions ``claude_bin`` is parametrized over: ``$ORCH_TEST_CLAUDE_VERSIONS``
    (comma- or space-separated) if set, else the ini option ``orch_claude_versions``; the word
    ``tested`` stands for :data:`CLAUDE_CODE_TESTED`. Empty means "the one ``claude`` found by
    :func:`find_claude_bin`", unparametrized."""
    listed = os.environ.get(VERSIONS_ENV)
    names = listed.replace(",", " ").split() if listed is not None else config.getini(VERSIONS_INI)
    versions: list[str] = []
    for name in names:
        versions += CLAUDE_CODE_TESTED if name == "tested" else [name]
    return list(dict.fromkeys(versions))


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Run each test that uses ``claude_bin`` (directly or through a fixture) once per listed
    Claude Code version."""
    if "claude_bin" not in metafunc.fixturenames:
        return
    versions = claude_versions(metafunc.config)
    if versions:
        metafunc.parametrize(
            "claude_bin", versions, indirect=True, ids=[f"claude-{v}" for v in versions]
        )


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


#: The cache directory as the test run started: fixtures give tests a scratch ``HOME``.
_CACHE_AT_START = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")


def claude_prefix(version: str) -> Path:
    """The npm prefix a Claude Code version not on ``PATH`` is looked for in (and ``.ci/run``
    installs it into): ``${XDG_CACHE_HOME:-~/.cache}/orch-plugins/claude-code/VERSION``, as
    the environment was when pytest started; the binary is ``bin/claude`` under it."""
    return Path(_CACHE_AT_START) / "orch-plugins" / "claude-code" / version


_versions: dict[tuple[str, float], str | None] = {}


def claude_version(claude: str) -> str | None:
    """``claude --version``'s version (``"2.1.197"``), None when it does not run; cached per
    binary and modification time (a start costs ~0.2 s)."""
    try:
        key = (os.path.realpath(claude), os.stat(claude).st_mtime)
    except OSError:
        return None
    if key not in _versions:
        try:
            out = subprocess.run(
                [claude, "--version"],
                capture_output=True,
                text=True,
                timeout=60,
                env={**os.environ, **QUIET_ENV},
                stdin=subprocess.DEVNULL,
            ).stdout
        except (OSError, subprocess.SubprocessError):
            out = ""
        _versions[key] = out.split()[0] if out.split() else None
    return _versions[key]


def find_claude_bin(version: str | None = None) -> str:
    """Absolute path of the real ``claude``.

    Without ``version``: ``$ORCH_TEST_CLAUDE`` if set, else ``claude`` from ``PATH``. With it:
    the first of ``$ORCH_TEST_CLAUDE``, ``claude`` on ``PATH`` and
    ``claude_prefix(version)/bin/claude`` whose ``--version`` is ``version``.

    Fails the calling test when there is none: the end-to-end tests are the point, so their
    absence must be loud.
    """
    configured = os.environ.get("ORCH_TEST_CLAUDE")
    if version is None:
        found = shutil.which(configured or "claude")
        if found is None:
            where = (
                f"ORCH_TEST_CLAUDE={configured!r} is not executable"
                if configured
                else "not on PATH"
            )
            pytest.fail(
                f"Claude Code CLI not found ({where}). Install it with "
                f"`npm install -g @anthropic-ai/claude-code@{CLAUDE_CODE_VERSION}` "
                "or point ORCH_TEST_CLAUDE at the binary.",
                pytrace=False,
            )
        return os.path.abspath(found)
    prefix = claude_prefix(version)
    seen = []
    for candidate in (configured, shutil.which("claude"), str(prefix / "bin" / "claude")):
        if candidate and shutil.which(candidate):
            found_version = claude_version(candidate)
            if found_version == version:
                return os.path.abspath(shutil.which(candidate) or candidate)
            seen.append(f"{candidate} is {found_version or 'not runnable'}")
    pytest.fail(
        f"Claude Code {version} not found ({'; '.join(seen) or 'no claude at all'}). Install "
        f"it with `npm install -g --prefix {prefix} @anthropic-ai/claude-code@{version}` "
        f"(as .ci/run does), or list the versions you have in ${VERSIONS_ENV}.",
        pytrace=False,
    )


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
def claude_bin(request: pytest.FixtureRequest) -> str:
    """Absolute path of the real Claude Code CLI (fails the test when absent); of the version
    the test is parametrized with, when versions are listed (see :func:`claude_versions`)."""
    return find_claude_bin(getattr(request, "param", None))

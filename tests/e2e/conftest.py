"""End-to-end fixtures: the real Claude Code CLI against the Messages API stand-in."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import use_real_claude


@pytest.fixture
def real_project(
    project: Path, claude_env: dict[str, str], claude_bin: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Path]:
    """``project`` with agents running the real ``claude`` against ``messages_api``."""
    use_real_claude(monkeypatch, claude_env, claude_bin)
    monkeypatch.setenv("ORCH_RETRY_BACKOFF", "0.2")
    yield project

"""End-to-end fixtures: the real Claude Code CLI against the Messages API stand-in."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture
def real_project(
    project: Path, claude_env: dict[str, str], claude_bin: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Path]:
    """``project`` with agents running the real ``claude`` against ``messages_api``."""
    for key in list(os.environ):
        if key not in claude_env and key.startswith(("ANTHROPIC_", "CLAUDE")):
            monkeypatch.delenv(key)
    for key, value in claude_env.items():
        if key.startswith(("ANTHROPIC_", "CLAUDE", "DISABLE_", "HOME")):
            monkeypatch.setenv(key, value)
    monkeypatch.setenv("ORCH_CLAUDE_BIN", claude_bin)
    monkeypatch.setenv("ORCH_RETRY_BACKOFF", "0.2")
    yield project

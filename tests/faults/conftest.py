"""Fixtures of the fault-injection suite (docs/faults.md)."""

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
    yield project

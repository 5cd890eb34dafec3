"""Type annotations cost the light modules nothing at run time.

mypy checks src/ (``.ci/run``); the supervisor (one per agent) and the Claude Code hook module
(every hook event) name their types under a local ``TYPE_CHECKING = False``, because importing
``typing`` costs milliseconds on every start.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"


@pytest.mark.parametrize("module", ["orch_plugins.supervisor", "orch_plugins.claude_hooks"])
def test_light_modules_start_without_typing(module: str) -> None:
    code = (
        f"import sys; sys.path.append({str(SRC)!r}); import {module}; "
        "print(' '.join(m for m in ('typing', 'dataclasses') if m in sys.modules))"
    )
    r = subprocess.run(
        [sys.executable, "-I", "-S", "-c", code], capture_output=True, text=True, check=True
    )
    assert r.stdout.split() == [], f"{module} imports {r.stdout.strip()} at start-up"

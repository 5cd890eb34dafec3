"""The package version lives in one place: ``orch_plugins.__version__``."""

from __future__ import annotations

import sys
from importlib.metadata import version
from pathlib import Path

import orch_plugins

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[2]


def test_the_version_is_written_once() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in project["project"] and "version" in project["project"]["dynamic"]
    attr = project["tool"]["setuptools"]["dynamic"]["version"]["attr"]
    assert attr == "orch_plugins.__version__"
    # What pip installed was built from it.
    assert version("orch-plugins") == orch_plugins.__version__

"""README.md documents every command and every flag of the ``orch`` CLI."""

from __future__ import annotations

import re

import pytest
import typer.main

from orch_plugins.cli import app
from tests.helpers import ROOT

README = (ROOT / "README.md").read_text(encoding="utf-8")
COMMAND = typer.main.get_command(app)
NAMES = sorted(COMMAND.commands)  # type: ignore[attr-defined]


@pytest.mark.parametrize("name", NAMES)
def test_every_command_has_a_readme_heading(name: str) -> None:
    assert re.search(rf"^###.*`orch {name}\b", README, re.M), f"no '### `orch {name}`' heading"


@pytest.mark.parametrize("name", NAMES)
def test_every_flag_is_in_the_readme(name: str) -> None:
    command = COMMAND.commands[name]  # type: ignore[attr-defined]
    flags = {
        opt
        for param in command.params
        for opt in (*param.opts, *getattr(param, "secondary_opts", []))
        if opt.startswith("--") and opt != "--help"
    }
    missing = sorted(f for f in flags if not re.search(rf"`[^`]*{re.escape(f)}\b", README))
    assert not missing, f"orch {name}: flags missing from README.md: {missing}"

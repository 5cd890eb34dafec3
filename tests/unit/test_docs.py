"""README.md documents every command and every flag of the ``orch`` CLI."""

from __future__ import annotations

import re

import pytest
import typer
import typer.main

from orch_plugins.cli import app
from tests.helpers import ROOT

README = (ROOT / "README.md").read_text(encoding="utf-8")
COMMAND = typer.main.get_command(app)
# Through the group, as `orch` itself finds them: commands that plugins add (orch dashboard)
# and the launch flags that backends declare (--host) are included.
CTX = typer.Context(COMMAND)
NAMES = sorted(COMMAND.list_commands(CTX))  # type: ignore[attr-defined]


@pytest.mark.parametrize("name", NAMES)
def test_every_command_has_a_readme_heading(name: str) -> None:
    assert re.search(rf"^###.*`orch {name}\b", README, re.M), f"no '### `orch {name}`' heading"


@pytest.mark.parametrize("name", NAMES)
def test_every_flag_is_in_the_readme(name: str) -> None:
    command = COMMAND.get_command(CTX, name)  # type: ignore[attr-defined]
    flags = {
        opt
        for param in command.get_params(typer.Context(command))
        for opt in (*param.opts, *getattr(param, "secondary_opts", []))
        if opt.startswith("--") and opt != "--help"
    }
    missing = sorted(f for f in flags if not re.search(rf"`[^`]*{re.escape(f)}\b", README))
    assert not missing, f"orch {name}: flags missing from README.md: {missing}"

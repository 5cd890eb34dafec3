"""The ``orch`` command: one typer app per command group, composed here.

Command bodies import what they need inside themselves, so ``orch status`` does not pay for the
plugin manager unless an agent is running.
"""

from __future__ import annotations

import logging
import sys

import typer

from orch_plugins.cli import agents, dashboard, doctor, integration, plugins
from orch_plugins.errors import OrchError

app = typer.Typer(
    name="orch",
    help="Run Claude Code sub-agents in parallel, watch them, resume them, gather their results.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    rich_markup_mode="markdown",
)
app.add_typer(agents.app)
app.add_typer(plugins.app)
app.add_typer(integration.app)
app.add_typer(doctor.app)
app.add_typer(dashboard.app)


def _version(value: bool) -> None:
    if value:
        from orch_plugins import __version__

        typer.echo(f"orch-plugins {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Run Claude Code sub-agents in parallel, watch them, resume them, gather their results."""


def main() -> None:
    """Console entry point: a user-facing error is one line on stderr and exit status 1."""
    logging.basicConfig(level=logging.WARNING, format="orch: %(message)s")
    try:
        app(prog_name="orch")
    except OrchError as exc:
        print(f"orch: error: {exc}", file=sys.stderr)
        sys.exit(getattr(exc, "exit_code", 1))
    except KeyboardInterrupt:
        sys.exit(130)

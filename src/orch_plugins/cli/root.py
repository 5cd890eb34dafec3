"""The ``orch`` typer app: one typer app per command group, composed here.

Command bodies import what they need inside themselves, so ``orch status`` does not pay for the
plugin manager unless an agent is running. (The package's ``main`` serves the hottest calls
without loading this module at all: :mod:`orch_plugins.cli.fast`.)
"""

from __future__ import annotations

import errno
import logging
import os
import sqlite3
import sys
from typing import TYPE_CHECKING

import typer
from typer.core import TyperGroup

from orch_plugins.cli import agents, costs, doctor, integration, plugins, web, worktrees
from orch_plugins.errors import OrchError

if TYPE_CHECKING:
    from typer import _click as click


class OrchGroup(TyperGroup):
    """``orch``: its own commands, then those that plugins add (``orch_register_commands``).

    Plugins are asked only for a name that is not one of orch's own, or for the whole list
    (``orch --help``), so ``orch status`` never loads them. Every plugin gets a Typer app of its
    own; a command name that is taken fails loudly, naming both owners.
    """

    _plugin_commands: dict[str, click.Command] | None = None

    def plugin_commands(self) -> dict[str, click.Command]:
        if self._plugin_commands is None:
            import typer.main

            from orch_plugins.plugins import get_plugins

            found: dict[str, click.Command] = {}
            owners: dict[str, str] = {}
            make = lambda: typer.Typer(rich_markup_mode=app.rich_markup_mode)  # noqa: E731
            for owner, sub in get_plugins().commands(make):
                if not (sub.registered_commands or sub.registered_groups):
                    continue
                for name, command in typer.main.get_group(sub).commands.items():
                    if name in self.commands or name in found:
                        first = owners.get(name, "orch itself")
                        raise OrchError(
                            f"command name {name!r} is registered twice: by {first} and by {owner}"
                        )
                    found[name], owners[name] = command, owner
            self._plugin_commands = found
        return self._plugin_commands

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        return self.commands.get(cmd_name) or self.plugin_commands().get(cmd_name)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [*self.commands, *self.plugin_commands()]


app = typer.Typer(
    cls=OrchGroup,
    name="orch",
    help="Run Claude Code sub-agents in parallel, watch them, resume them, gather their results.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    rich_markup_mode="markdown",
)
app.add_typer(agents.app)
app.add_typer(worktrees.app)
app.add_typer(costs.app)
app.add_typer(plugins.app)
app.add_typer(integration.app)
app.add_typer(doctor.app)
app.add_typer(web.app)


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


def damaged_store(exc: BaseException) -> str:
    """What to say of a state store SQLite finds damaged (``exc``, an ``sqlite3.DatabaseError``)
    after opening it: the file, that nothing was changed (the statement rolled back), and what
    to do."""
    from orch_plugins.paths import state_dir
    from orch_plugins.store import DB_NAME, damaged_message

    return damaged_message(os.path.join(state_dir(), DB_NAME), exc)


def main() -> None:
    """The whole CLI: a user-facing error is one line on stderr and exit status 1."""
    logging.basicConfig(level=logging.WARNING, format="orch: %(message)s")
    try:
        app(prog_name="orch")
    except OrchError as exc:
        print(f"orch: error: {exc}", file=sys.stderr)
        sys.exit(getattr(exc, "exit_code", 1))
    except KeyboardInterrupt:
        sys.exit(130)
    except OSError as exc:
        # A full disk (or a quota) under the state directory, wherever it is met: one line.
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        where = f" ({exc.filename})" if exc.filename else ""
        print(f"orch: error: {exc.strerror}{where}", file=sys.stderr)
        sys.exit(1)
    except sqlite3.OperationalError as exc:
        if "full" not in str(exc):
            raise
        print(f"orch: error: the state store cannot be written: {exc}", file=sys.stderr)
        sys.exit(1)
    except sqlite3.DatabaseError as exc:
        # Damage past the header shows only when a query reaches it ("database disk image is
        # malformed"): the same line as for a store that cannot be opened at all.
        print(f"orch: error: {damaged_store(exc)}", file=sys.stderr)
        sys.exit(1)

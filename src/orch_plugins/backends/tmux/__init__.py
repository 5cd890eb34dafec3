"""The tmux backend plugin: each agent in a window of a per-project tmux session, and the
``orch dashboard`` command.

This module is what orch registers (``BUILTINS``); it imports nothing heavy, so listing or
loading plugins stays cheap. The parts:

* :mod:`.client`: talking to tmux (one server, chained commands, quoting, the session name);
* :mod:`.backend`: :class:`~.backend.TmuxBackend`, agents in windows;
* :mod:`.dashboard`: the tiled view and the programs its panes run;
* :mod:`.command`: ``orch dashboard`` itself, added through ``orch_register_commands``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from orch_plugins.hookspecs import hookimpl

if TYPE_CHECKING:
    import typer

    from orch_plugins.backend import BackendRegistry


@hookimpl
def orch_register_backends(registry: BackendRegistry) -> None:
    from orch_plugins.backends.tmux.backend import TmuxBackend

    registry.add(TmuxBackend)


@hookimpl
def orch_register_commands(app: typer.Typer) -> None:
    """``orch dashboard`` (its module imports typer: the pane programs never do)."""
    from orch_plugins.backends.tmux.command import dashboard

    app.command()(dashboard)

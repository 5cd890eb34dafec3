"""``orch dashboard``, the command the tmux backend adds to ``orch`` (``orch_register_commands``):
a tiled tmux view of the orchestrator, its running agents and their status.

The view only reads (agents run in their own windows, or wherever their backend runs them), so
closing it never stops an agent. The work is done by
:class:`orch_plugins.backends.tmux.dashboard.Dashboard`.
"""

from __future__ import annotations

import os
import shlex
import sys
from typing import Any

import typer

from orch_plugins.errors import OrchError


def _tmux_config() -> dict[str, Any]:
    from orch_plugins.config import load_config

    return load_config().backends.get("tmux") or {}


def _show(argv: list[str], attach: bool) -> None:
    """Attach when we can (a terminal, not inside tmux), else say how to."""
    if attach and sys.stdin.isatty() and sys.stdout.isatty() and not os.environ.get("TMUX"):
        os.execv(argv[0], argv)
    prefix = "TMUX= " if os.environ.get("TMUX") else ""  # a nested client needs $TMUX unset
    typer.echo(f"attach with: {prefix}{shlex.join(argv)}")


def _step_in(name: str, attach: bool) -> None:
    from orch_plugins.backends.tmux.client import Tmux, tmux_handle
    from orch_plugins.store import Store

    run = Store.open().require(name)
    handle = tmux_handle(run["handle"] or {})
    if not handle.get("window"):
        raise OrchError(
            f"agent {name!r} has no tmux window (backend {run['backend']}); "
            f"follow it with: orch logs -f {name}"
        )
    tmux = Tmux(handle.get("socket"))
    window = handle["window"]
    if tmux.run(["display-message", "-p", "-t", window, "#{window_id}"], check=False).returncode:
        raise OrchError(f"agent {name!r}'s tmux window is closed (orch logs {name})")
    tmux.run(["select-window", "-t", window])
    current = os.environ.get("TMUX", "").split(",")[0]
    if current and current == handle.get("socket"):
        tmux.run(["switch-client", "-t", window])
        return
    _show([tmux.binary, *tmux.server_args, "attach-session", "-t", window], attach)


def dashboard(
    max_agents: int = typer.Option(
        6,
        "--max-agents",
        min=1,
        metavar="N",
        help="At most this many agent panes (one per running agent).",
    ),
    attach: bool = typer.Option(
        True, "--attach/--no-attach", help="Outside tmux, attach to it (else print how)."
    ),
    orchestrator: str | None = typer.Option(
        None,
        "--orchestrator",
        metavar="CMD",
        help="Outside tmux: the orchestrator pane's command (default: claude in the project).",
    ),
    agent: str | None = typer.Option(
        None,
        "--agent",
        metavar="NAME",
        help="Step into this agent's own window (to take over an interactive one).",
    ),
    close: bool = typer.Option(
        False, "--close", help="Close the dashboard's status and agent panes; agents keep running."
    ),
    tidy: bool = typer.Option(False, "--tidy", help="Close the windows of agents that ended."),
) -> None:
    """Open (or attach to) a tiled tmux view: orchestrator, one pane per running agent, status.

    Inside tmux the panes are added beside the current one; outside, a 'dashboard' window in
    the project's tmux session (with a new orchestrator pane) is created and attached.
    """
    from orch_plugins.backend import BackendContext
    from orch_plugins.backends.tmux.backend import TmuxBackend
    from orch_plugins.backends.tmux.dashboard import Dashboard
    from orch_plugins.progress import plural
    from orch_plugins.store import Store

    if agent:
        _step_in(agent, attach)
        return
    store = Store.open()
    config = _tmux_config()
    dash = Dashboard(store.state_dir, config, max_agents)
    if tidy or close:
        if tidy:
            backend = TmuxBackend(BackendContext(store.state_dir, config))
            n = backend.tidy(store.runs(latest_only=False, include_archived=True))
            typer.echo(f"closed {plural(n, 'window')} of ended agents")
        if close:
            n = dash.close()
            typer.echo(f"closed {plural(n, 'dashboard pane')}; agents keep running")
        return
    argv = shlex.split(orchestrator) if orchestrator else None
    window, inside = dash.open(argv)
    if inside:
        typer.echo(f"dashboard beside this pane (window {window}); orch dashboard --close ends it")
        return
    _show(dash.attach_argv(window), attach)

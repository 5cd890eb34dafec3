"""Every hook orch-plugins calls, and the markers plugins use.

A plugin is a module or object with functions marked ``@hookimpl``; it is registered in code
(built-ins) or through the ``orch_plugins`` entry-point group (third-party).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    import typer

    from orch_plugins.backend import BackendRegistry
    from orch_plugins.model import JSONObject
    from orch_plugins.roles import RoleRegistry

PROJECT = "orch_plugins"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def orch_register_backends(registry: BackendRegistry) -> None:
    """Register backend classes: ``registry.add(MyBackend)``.

    Called the first time a process needs a backend, and again if third-party plugins load
    later in that process (the registry is rebuilt), so do nothing here but ``registry.add``.
    Each class must subclass :class:`orch_plugins.backend.Backend` and carry a unique
    class-level ``name``; a name that is already taken raises an error naming both owners.
    """


@hookspec
def orch_register_roles(registry: RoleRegistry) -> None:
    """Register agent roles: ``registry.add(Role(name=..., system_prompt=..., ...))``.

    Called the first time a process needs a role (again if third-party plugins load later).
    Names are unique across plugins; a clash raises an error naming both owners. A user's own
    ``.claude/agents/NAME.md`` replaces a plugin's role of the same name.
    """


@hookspec
def orch_register_commands(app: typer.Typer) -> None:
    """Add ``orch`` commands: ``@app.command()`` on the ``typer.Typer`` handed in.

    Called by the ``orch`` command line only, and only when it needs commands beyond its own:
    a command name it does not know (``orch dashboard``), or the list of commands
    (``orch --help``), so ``orch status`` never pays for it. Each plugin gets an app of its
    own; its commands become top-level ``orch`` commands (an ``app.add_typer(sub, name=...)``
    a command group). Import what a command needs inside its body: registering must stay
    cheap. A name that orch or another plugin already has raises an error naming both
    owners. Return value ignored.
    """


@hookspec
def orch_agent_launched(run: JSONObject) -> None:
    """An agent's run was handed to its backend.

    Called in the process that started it (``orch launch``, or whichever process took the run
    off the queue), after the backend returned. ``run`` is the public status object
    (see ``orch status --json``). Return value ignored; exceptions are logged, not raised.
    """


@hookspec
def orch_agent_ended(run: JSONObject) -> None:
    """A run reached a final status: ``completed``, ``failed``, ``cancelled``, ``timed_out`` or
    ``lost``.

    Called exactly once per such run that started while a plugin implementing this hook was
    installed (the others cost nothing at their end), whoever noticed the end, by the process
    that claimed the event in the store (see :mod:`orch_plugins.events`): for an agent that
    ends by itself, a detached ``python -m orch_plugins.events`` (or
    ``orch_plugins.admission``, when agents are queued) that its supervisor starts (the
    supervisor itself loads no plugins); for a lost agent, a cancel, a remote agent's end or a
    launch its backend refused, the ``orch`` command that recorded it; an end whose process
    died before claiming it is announced by the next status read 30 s later. So it may fire a
    moment after ``orch wait`` returned; never print to stdout. A process killed between the
    claim and the call loses that one event. ``run`` is the public status object (see ``orch
    status --json``) with the final status, ``ended_at``, ``error``, ``cost_usd``, ``usage``
    and ``output_path``. Return value ignored; exceptions are logged, not raised.
    """

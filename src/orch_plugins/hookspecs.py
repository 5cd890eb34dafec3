"""Every hook orch-plugins calls, and the markers plugins use.

A plugin is a module or object with functions marked ``@hookimpl``; it is registered in code
(built-ins) or through the ``orch_plugins`` entry-point group (third-party).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from orch_plugins.backend import BackendRegistry
    from orch_plugins.roles import RoleRegistry

PROJECT = "orch_plugins"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def orch_register_backends(registry: BackendRegistry) -> None:
    """Register backend classes: ``registry.add(MyBackend)``.

    Called once per process, the first time a backend is needed. Each class must subclass
    :class:`orch_plugins.backend.Backend` and carry a unique class-level ``name``; a name that is
    already taken raises an error naming both owners.
    """


@hookspec
def orch_register_roles(registry: RoleRegistry) -> None:
    """Register agent roles: ``registry.add(Role(name=..., system_prompt=..., ...))``.

    Called once per process, the first time a role is needed. Names are unique across all
    plugins; a clash raises an error naming both owners.
    """


@hookspec
def orch_agent_launched(run: dict[str, Any]) -> None:
    """An agent's run was handed to its backend.

    Called in the process that started it (``orch launch``, or whichever process took the run
    off the queue), after the backend returned. ``run`` is the public status object
    (see ``orch status --json``). Return value ignored; exceptions are logged, not raised.
    """

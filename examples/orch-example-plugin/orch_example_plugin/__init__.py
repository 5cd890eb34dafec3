"""An example orch plugin: one backend, one role, one event hook.

orch loads this module through the ``orch_plugins`` entry point in pyproject.toml and registers
the module itself as the plugin, so the ``@hookimpl`` functions below are all there is to it.
"""

from __future__ import annotations

import os

from orch_plugins import hookimpl
from orch_plugins.backend import Backend, BackendRegistry, Handle, LaunchSpec
from orch_plugins.backends.subprocess import SubprocessBackend, spawn_supervisor
from orch_plugins.model import JSONObject
from orch_plugins.procs import pid_alive
from orch_plugins.roles import Role, RoleRegistry


class ExampleInlineBackend(Backend):
    """Runs the standard supervisor as a detached local process.

    The supervisor does the real work (runs claude, records progress and the result), so a
    backend only starts it, says whether it still lives, and stops it. orch hands it a context
    (``self.context``: its ``[backends.example-inline]`` table, the state directory, the
    ``[hosts.*]`` tables); the inherited ``poll`` asks :meth:`is_alive` for each running agent.
    """

    name = "example-inline"
    description = "example plugin: detached local supervisor, handle tagged via=example"

    def launch(self, spec: LaunchSpec) -> Handle:
        # Detached, so it outlives `orch launch`. The handle is stored as JSON; any later
        # process finds the agent again from it (the start time keeps a reused PID out).
        return {**spawn_supervisor(spec), "via": "example"}

    def is_alive(self, handle: Handle) -> bool:
        return pid_alive(handle.get("pid"), handle.get("start_time"))

    def cancel(self, handle: Handle, grace: float) -> None:
        # Same process model as the built-in backend, so the same stop: SIGTERM the supervisor
        # (it stops claude and records "cancelled"), escalate if stuck, clean up orphans.
        SubprocessBackend(self.context).cancel(handle, grace)


@hookimpl
def orch_register_backends(registry: BackendRegistry) -> None:
    registry.add(ExampleInlineBackend)


@hookimpl
def orch_register_roles(registry: RoleRegistry) -> None:
    registry.add(
        Role(
            name="example-reviewer",
            description="Example plugin role: reviews the given code, read-only",
            system_prompt="You are a careful reviewer. Read, do not edit. End with a short list "
            "of findings, each with file, line and a suggested fix.",
            allowed_tools=("Read", "Grep", "Glob"),
            task_template="Review (example plugin): {task}",
        )
    )


@hookimpl
def orch_agent_launched(run: JSONObject) -> None:
    log = os.environ.get("ORCH_EXAMPLE_LOG")
    if log:
        with open(log, "a", encoding="utf-8") as fh:
            fh.write(f"launched {run['name']} run={run['run_id']} backend={run['backend']}\n")

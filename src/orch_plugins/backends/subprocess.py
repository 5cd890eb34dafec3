"""The default backend: each agent's supervisor is a detached local process.

The supervisor is started in a new session (``start_new_session``) with stdin from /dev/null and
no inherited descriptors, so it survives the launching command, its terminal and the orchestrator
session ending. Its PID and start time form the handle: a reused PID is never taken for it.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import TypedDict, cast

from orch_plugins import procs, supervisor
from orch_plugins.backend import Backend, BackendRegistry, Handle, LaunchSpec
from orch_plugins.hookspecs import hookimpl
from orch_plugins.procs import pid_alive, proc_start_time


class LocalHandle(TypedDict, total=False):
    """What the subprocess backend (and the tmux backend, which extends it) keeps in a handle:
    the supervisor's PID and start time (clock ticks since boot, ``/proc/PID/stat`` field 22)
    and the run's mark (:func:`run_mark`)."""

    pid: int
    start_time: int | None
    run_id: int
    token: str
    keep_children: bool


def local_handle(handle: Handle) -> LocalHandle:
    """This backend's view of a handle it wrote (a handle is read only by its own backend)."""
    return cast(LocalHandle, handle)


def supervisor_argv(spec: LaunchSpec) -> list[str]:
    """The command that runs a spec's supervisor locally: interpreter by absolute path, ``-S``
    because the supervisor needs no site-packages (``site`` and its .pth files can cost more
    than the supervisor's own start-up), and the module by file path."""
    return [sys.executable, "-S", supervisor.__file__, str(spec.spec_path)]


def spawn_supervisor(spec: LaunchSpec) -> Handle:
    """Start a spec's supervisor detached (new session, no inherited stdin or descriptors, out
    of the marker and cgroup of an agent that ran ``orch``: :func:`orch_plugins.procs.detached`),
    so it outlives ``orch launch``; the handle's start time keeps a reused PID from passing
    for it."""
    with open(Path(spec.run_dir) / "supervisor.log", "ab") as errlog, procs.detached() as kw:
        proc = subprocess.Popen(
            supervisor_argv(spec),
            stdin=subprocess.DEVNULL,
            stdout=errlog,
            stderr=errlog,
            cwd=spec.cwd,
            start_new_session=True,
            close_fds=True,
            **kw,
        )
    return {"pid": proc.pid, "start_time": proc_start_time(proc.pid), **run_mark(spec)}


def run_mark(spec: LaunchSpec) -> Handle:
    """What a handle keeps to find a run's processes after its supervisor is gone."""
    token = spec.env.get(procs.RUN_TOKEN_VAR)
    mark: Handle = {"run_id": spec.run_id, "token": token} if token else {}
    if spec.keep_children:
        mark["keep_children"] = True
    return mark


class SubprocessBackend(Backend):
    name = "subprocess"
    description = "detached local process per agent (default; needs only claude)"

    def launch(self, spec: LaunchSpec) -> Handle:
        return spawn_supervisor(spec)

    def is_alive(self, handle: Handle) -> bool:
        own = local_handle(handle)
        return pid_alive(own.get("pid"), own.get("start_time"))

    def cancel(self, handle: Handle, grace: float) -> None:
        own = local_handle(handle)
        if own.get("pid"):
            procs.stop_supervisor(
                own["pid"],
                own.get("start_time"),
                grace,
                run_id=own.get("run_id", ""),
                token=own.get("token"),
                keep_children=bool(own.get("keep_children")),
            )


@hookimpl
def orch_register_backends(registry: BackendRegistry) -> None:
    registry.add(SubprocessBackend)

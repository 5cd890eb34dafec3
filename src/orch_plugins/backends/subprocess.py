"""The default backend: the agents of one launch are supervised by one detached local process.

The supervisor is started in a new session (``start_new_session``) with stdin from /dev/null and
no inherited descriptors, so it survives the launching command, its terminal and the orchestrator
session ending. Its PID and start time form the handle: a reused PID is never taken for it.

One process per launch batch (``orch parallel`` of 50 agents: one process, a thread per agent;
``orch launch``: a batch of one), see :class:`orch_plugins.supervisor.Batch` for what its runs
share. A run's handle names the batch's process (``batch: true``) and the run's directory: the
run is alive while that process runs and the run's thread has not ended
(:data:`~orch_plugins.supervisor.SUPERVISION_ENDED`); a cancel asks the batch to stop that run
alone (:func:`orch_plugins.supervisor.cancel_batch_run`), never signals the process with SIGTERM.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence
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
    #: The process supervises a batch of runs (``supervisor --batch``); ``run_dir``: this one's.
    batch: bool
    run_dir: str


def local_handle(handle: Handle) -> LocalHandle:
    """This backend's view of a handle it wrote (a handle is read only by its own backend)."""
    return cast(LocalHandle, handle)


def supervisor_argv(spec: LaunchSpec) -> list[str]:
    """The command that runs a spec's supervisor locally: interpreter by absolute path, ``-S``
    because the supervisor needs no site-packages (``site`` and its .pth files can cost more
    than the supervisor's own start-up), and the module by file path."""
    return [sys.executable, "-S", supervisor.__file__, str(spec.spec_path)]


def spawn_batch(specs: Sequence[LaunchSpec]) -> list[Handle]:
    """Start one supervisor for all ``specs`` (``supervisor --batch``), detached (new session,
    no inherited stdin or descriptors, out of the marker and cgroup of an agent that ran
    ``orch``: :func:`orch_plugins.procs.detached`), so it outlives ``orch launch``; one handle
    per spec, in order, whose start time keeps a reused PID from passing for the process. Its
    stdout and stderr go to the first run's ``supervisor.log``."""
    first = specs[0]
    argv = [sys.executable, "-S", supervisor.__file__, "--batch"]
    argv += [str(s.spec_path) for s in specs]
    with open(Path(first.run_dir) / "supervisor.log", "ab") as errlog, procs.detached() as kw:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=errlog,
            stderr=errlog,
            cwd=first.cwd,
            start_new_session=True,
            close_fds=True,
            **kw,
        )
    start = proc_start_time(proc.pid)
    return [
        {"pid": proc.pid, "start_time": start, "batch": True, "run_dir": s.run_dir, **run_mark(s)}
        for s in specs
    ]


def spawn_supervisor(spec: LaunchSpec) -> Handle:
    """Start a spec's supervisor detached: a batch of one (:func:`spawn_batch`)."""
    return spawn_batch([spec])[0]


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

    def launch_many(self, specs: list[LaunchSpec]) -> list[Handle]:
        """All of them under one supervisor process (see the module docstring)."""
        return spawn_batch(specs) if specs else []

    def is_alive(self, handle: Handle) -> bool:
        own = local_handle(handle)
        if own.get("batch"):
            return supervisor.batch_run_alive(own.get("pid"), own.get("start_time"), own["run_dir"])
        return pid_alive(own.get("pid"), own.get("start_time"))

    def cancel(self, handle: Handle, grace: float) -> None:
        own = local_handle(handle)
        if own.get("batch"):
            supervisor.cancel_batch_run(
                own.get("pid"),
                own.get("start_time"),
                own["run_dir"],
                grace,
                run_id=own.get("run_id", ""),
                token=own.get("token"),
                keep_children=bool(own.get("keep_children")),
            )
        elif own.get("pid"):
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

"""The default backend: each agent's supervisor is a detached local process.

The supervisor is started in a new session (``start_new_session``) with stdin from /dev/null and
no inherited descriptors, so it survives the launching command, its terminal and the orchestrator
session ending. Its PID and start time form the handle: a reused PID is never taken for it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from orch_plugins import supervisor
from orch_plugins.backend import Backend, BackendRegistry, Handle, LaunchSpec
from orch_plugins.hookspecs import hookimpl
from orch_plugins.supervisor import pid_alive, proc_start_time, terminate_tree


def supervisor_argv(spec: LaunchSpec) -> list[str]:
    """The command that runs a spec's supervisor locally: interpreter by absolute path, ``-S``
    because the supervisor needs no site-packages (``site`` and its .pth files can cost more
    than the supervisor's own start-up), and the module by file path."""
    return [sys.executable, "-S", supervisor.__file__, str(spec.spec_path)]


def spawn_supervisor(spec: LaunchSpec) -> Handle:
    """Start a spec's supervisor detached (new session, no inherited stdin or descriptors), so
    it outlives ``orch launch``; the handle's start time keeps a reused PID from passing for it.
    """
    with open(Path(spec.run_dir) / "supervisor.log", "ab") as errlog:
        proc = subprocess.Popen(
            supervisor_argv(spec),
            stdin=subprocess.DEVNULL,
            stdout=errlog,
            stderr=errlog,
            cwd=spec.cwd,
            start_new_session=True,
            close_fds=True,
        )
    return {"pid": proc.pid, "start_time": proc_start_time(proc.pid)}


class SubprocessBackend(Backend):
    name = "subprocess"
    description = "detached local process per agent (default; needs only claude)"

    def launch(self, spec: LaunchSpec) -> Handle:
        return spawn_supervisor(spec)

    def is_alive(self, handle: Handle) -> bool:
        return pid_alive(handle.get("pid"), handle.get("start_time"))

    def cancel(self, handle: Handle, grace: float) -> None:
        pid = handle.get("pid")
        if not pid:
            return
        if not self.is_alive(handle):
            # A supervisor killed with -9 leaves claude orphaned in its process group (whose id
            # is the supervisor's PID: the kernel does not hand out a PID that is still in use
            # as a group id, so this cannot hit a stranger).
            with contextlib.suppress(OSError):
                os.killpg(pid, signal.SIGTERM)
            return
        # The supervisor stops its claude tree and records "cancelled" itself.
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace + 2.0
        while time.monotonic() < deadline:
            if not self.is_alive(handle):
                return
            time.sleep(0.05)
        terminate_tree(pid, 0.5)  # a stuck supervisor: take the whole tree down


@hookimpl
def orch_register_backends(registry: BackendRegistry) -> None:
    registry.add(SubprocessBackend)

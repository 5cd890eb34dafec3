"""Talking to tmux: one server (``tmux -L``/``-S``), commands chained into one client call, the
quoting tmux's command and format parsers need, the per-project session name, and the private
file that carries the launcher's environment into a window."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, cast

from orch_plugins import procs
from orch_plugins.backend import Handle, project_name
from orch_plugins.backends.subprocess import LocalHandle
from orch_plugins.claude import clean_env
from orch_plugins.errors import OrchError

#: Overrides ``[backends.tmux] socket``: a name (``tmux -L``) or a path (``tmux -S``).
SOCKET_ENV = "ORCH_TMUX_SOCKET"


class TmuxHandle(LocalHandle, total=False):
    """What the tmux backend keeps in a handle: the subprocess backend's (the supervisor runs in
    the window) plus the window and pane ids, the server's socket path, the session name and
    whether the agent is interactive."""

    window: str
    pane: str
    socket: str
    session: str
    interactive: bool


def tmux_handle(handle: Handle) -> TmuxHandle:
    """The tmux backend's view of a handle it wrote."""
    return cast(TmuxHandle, handle)


#: Size of a session the backend creates (a client that attaches resizes it).
SESSION_SIZE = ("200", "50")


#: Launcher variables that describe its own terminal or tmux client, not the agent's.
TERMINAL_ENV = ("TMUX", "TMUX_PANE", "TERM", "COLORTERM", "COLUMNS", "LINES")


#: Window user options that mark an agent window as a project's own (see the module docstring).
PROJECT_OPTION, RUN_OPTION = "@orch_project", "@orch_run"


def tmux_arg(arg: str) -> str:
    """Protect one argument from tmux's command parser: an argument ending in ``;`` would end
    the command (tmux turns a trailing ``\\;`` back into ``;``)."""
    return arg[:-1] + "\\;" if arg.endswith(";") else arg


def format_literal(text: str) -> str:
    """Protect text that tmux expands as a format (``-c`` start directories): ``#`` -> ``##``,
    or a directory named ``#(cmd)`` would run ``cmd``."""
    return text.replace("#", "##")


class Tmux:
    """One tmux server, reached with ``-L NAME``, ``-S PATH`` or tmux's own default."""

    def __init__(self, socket: str | None = None, binary: str | None = None) -> None:
        found = shutil.which(binary or "tmux")
        if not found:
            raise OrchError(
                f"tmux not found ({binary or 'tmux'!r}): install tmux 3.0 or newer, or set "
                "[backends.tmux] tmux = '/path/to/tmux'"
            )
        self.binary = found
        self.socket = socket
        self.server_args: list[str] = []
        if socket:
            self.server_args = ["-S", socket] if "/" in socket else ["-L", socket]
        # A server started by this call inherits this environment: keep out the variables that
        # would make every later pane look like it runs inside a Claude Code session or agent
        # (and the server part of the agent whose tool ran orch: see procs.detached_env).
        self.env = clean_env(procs.detached_env())

    def run(self, *commands: Sequence[str], check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run ``commands`` in ONE tmux client call, chained with ``;`` (a client start costs
        about as much as the commands themselves). tmux stops at the first failing command."""
        argv = [self.binary, *self.server_args]
        for i, command in enumerate(commands):
            if i:
                argv.append(";")
            argv.append(command[0])
            argv.extend(tmux_arg(str(a)) for a in command[1:])
        with procs.detached() as detached:  # a server it starts leaves an agent's cgroup
            proc = subprocess.run(
                argv,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                env=self.env,
                preexec_fn=detached["preexec_fn"],
                check=False,
            )
        if check and proc.returncode != 0:
            raise OrchError(f"tmux {commands[0][0]} failed: {proc.stderr.strip() or proc.stdout}")
        return proc

    def has_session(self, session: str) -> bool:
        return self.run(["has-session", "-t", f"={session}"], check=False).returncode == 0


def server_for(config: Mapping[str, Any]) -> Tmux:
    """``ORCH_TMUX_SOCKET``, else ``[backends.tmux] socket``, else tmux's default (the server of
    ``$TMUX`` inside tmux, the user's default server outside)."""
    return Tmux(os.environ.get(SOCKET_ENV) or config.get("socket"), config.get("tmux"))


def session_name(state_dir: str | Path, config: Mapping[str, Any]) -> str:
    """``[backends.tmux] session``, else ``orch-<project directory name>-<6 hex digits>``, the
    digits from the SHA-1 of the resolved state directory: one session per project, even for
    two checkouts called ``repo`` or ``demo.example.io`` beside ``demo-example-io`` (the name
    keeps ``[A-Za-z0-9_-]``; tmux itself refuses ``.`` and ``:``)."""
    name = config.get("session")
    if not name:
        path = Path(state_dir).resolve()
        digest = hashlib.sha1(str(path).encode()).hexdigest()[:6]
        name = f"orch-{project_name(path)[:40]}-{digest}"
    return re.sub(r"[^A-Za-z0-9_-]", "-", str(name))


def launcher_env() -> dict[str, str]:
    """What a window must get explicitly: this process's environment, minus its terminal and
    the marker of an agent whose tool ran orch (see :func:`orch_plugins.procs.detached_env`)."""
    return {k: v for k, v in procs.detached_env().items() if k not in TERMINAL_ENV}


def write_private(path: Path, data: dict[str, Any]) -> None:
    """Write JSON readable by this user only (it may hold API keys)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(data, fh)

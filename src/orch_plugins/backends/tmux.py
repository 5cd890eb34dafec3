"""The tmux backend: each agent runs in its own window of a per-project tmux session.

The window runs the same supervisor as the subprocess backend, with ``--display`` so it also
prints human-readable progress, and the store gets the same records. What tmux changes:

* The command goes to tmux as an argv vector (tmux executes it directly, no shell; task text
  is never in it: the supervisor reads the prompt from its file). Arguments ending in ``;``
  are escaped for tmux's command parser, ``#`` in the start directory for its format parser.
* A window starts with the tmux *server's* environment, so the launcher's environment goes to
  the supervisor in a private file (mode 0600, deleted once read), not as ``-e VAR=value``
  arguments that any local user could read in ``ps``.
* The supervisor is the pane's process: its PID and start time are the handle, so liveness is
  read from /proc (no tmux call at all) and the exit status is the supervisor's record, never
  tmux's ``pane_dead_status`` (tmux 3.3a sometimes loses it).
* One session per project: ``orch-<project directory name>-<digest of the state directory>``,
  so two checkouts both called ``repo`` never share one. Each agent window is marked with the
  user options ``@orch_project`` (the resolved state directory) and ``@orch_run`` (the run id),
  and orch only ever closes windows marked as its own project's (or, from before the marks,
  whose window and process match a handle in its store): a session shared with other projects
  or with the person's own windows is safe.
* Windows stay open after the agent ends (``remain-on-exit``) to show the result; ``orch
  dashboard --tidy`` closes them. The window index is the run id when it is free.
* Losing the pane (window killed, tmux server stopped) only loses the view: the supervisor
  ignores that SIGHUP and the agent finishes and records normally. An interactive agent needs
  its terminal: it is stopped and recorded ``lost``.

``python -m orch_plugins.backends.tmux view|status|exec`` are the programs the dashboard runs
in its panes (see :class:`Dashboard`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orch_plugins import procs
from orch_plugins.backend import (
    BackendRegistry,
    Handle,
    LaunchOption,
    LaunchSpec,
    project_name,
)
from orch_plugins.backends.subprocess import SubprocessBackend, run_mark, supervisor_argv
from orch_plugins.claude import clean_env
from orch_plugins.errors import OrchError
from orch_plugins.hookspecs import hookimpl
from orch_plugins.model import Run
from orch_plugins.procs import pid_alive, proc_start_time

if TYPE_CHECKING:
    import typer

#: Overrides ``[backends.tmux] socket``: a name (``tmux -L``) or a path (``tmux -S``).
SOCKET_ENV = "ORCH_TMUX_SOCKET"
#: Size of a session the backend creates (a client that attaches resizes it).
SESSION_SIZE = ("200", "50")
#: Launcher variables that describe its own terminal or tmux client, not the agent's.
TERMINAL_ENV = ("TMUX", "TMUX_PANE", "TERM", "COLORTERM", "COLUMNS", "LINES")
#: What ``new-window -P`` prints for each agent window; the run id is literal.
_WINDOW_FMT = "#{window_id}\t#{pane_id}\t#{pane_pid}\t#{socket_path}"
#: tmux refuses a command line over 16 KiB ("command too long"): the commands of one call stay
#: below this (the tmux binary and socket arguments come on top).
BATCH_BYTES = 15_000
DASHBOARD_NAME = "dashboard"
#: Window user options that mark an agent window as a project's own (see the module docstring).
PROJECT_OPTION, RUN_OPTION = "@orch_project", "@orch_run"
REFRESH = 2.0


# -- talking to tmux ------------------------------------------------------------------------


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


def window_marks(target: str, spec: LaunchSpec) -> list[list[str]]:
    """The tmux commands that set up an agent's window: keep it after the agent ends, and mark
    it as this project's run (``@orch_project``, ``@orch_run``)."""
    state_dir = str(Path(spec.state_dir).resolve())
    return [
        ["set-option", "-w", "-t", target, "remain-on-exit", "on"],
        ["set-option", "-w", "-t", target, PROJECT_OPTION, state_dir],
        ["set-option", "-w", "-t", target, RUN_OPTION, str(spec.run_id)],
    ]


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


def _env_file(spec: LaunchSpec) -> Path:
    return Path(spec.run_dir) / ".launcher-env.json"


def _missing_session(stderr: str) -> bool:
    return any(
        s in stderr
        for s in ("can't find session", "no server running", "error connecting", "no sessions")
    )


# -- the backend ----------------------------------------------------------------------------


class TmuxBackend(SubprocessBackend):
    """Agents in windows of ``orch-<project>`` on a tmux server; see the module docstring.

    Liveness and cancel are the subprocess backend's: the handle holds the supervisor's PID and
    start time (the pane's process), and cancel signals it, not tmux.
    """

    name = "tmux"
    description = "a tmux window per agent, live progress; --interactive to take over (tmux)"
    options = (
        LaunchOption(
            "interactive",
            "tmux backend: an interactive session you can attach to.",
            type=bool,
            flag="--interactive",
            selects_backend=True,
        ),
    )

    def server(self) -> Tmux:
        return server_for(self.config)

    def launch(self, spec: LaunchSpec) -> Handle:
        return self.launch_many([spec])[0]

    def launch_many(self, specs: Sequence[LaunchSpec]) -> list[Handle]:
        """Create the windows of many agents in as few tmux calls as tmux accepts (a call
        holds at most 16 KiB of commands: 50 agents take two or three). With no session yet,
        the first agent's window creates it; a window whose batch stopped short (an index
        taken by a window that is not ours) is retried on its own."""
        if not specs:
            return []
        tmux = self.server()
        session = session_name(specs[0].state_dir, self.config)
        handles: dict[int, Handle] = {}
        try:
            handles, errors = self._batches(tmux, session, specs)
            missing = [s for s in specs if s.run_id not in handles]
            if missing and _missing_session(errors):
                first = missing.pop(0)
                handles[first.run_id] = self._launch_slow(tmux, session, first, errors)
                more, errors = self._batches(tmux, session, missing)
                handles.update(more)
            for spec in specs:
                if spec.run_id not in handles:
                    handles[spec.run_id] = self._launch_slow(tmux, session, spec, errors)
                    errors = ""
        except BaseException:
            for spec in specs:  # no supervisor will read (and delete) these
                if spec.run_id not in handles:
                    with contextlib.suppress(OSError):
                        os.unlink(_env_file(spec))
            raise
        return [handles[s.run_id] for s in specs]

    def _batches(
        self, tmux: Tmux, session: str, specs: Sequence[LaunchSpec]
    ) -> tuple[dict[int, Handle], str]:
        """One window per spec at index run id, in calls below :data:`BATCH_BYTES`; stops
        when the session is missing. Returns the handles made and tmux's complaints."""
        handles: dict[int, Handle] = {}
        errors: list[str] = []
        batch: list[list[str]] = []
        size = 0

        def send() -> bool:
            """Run the batch; False when the session is missing (nothing more can work)."""
            proc = tmux.run(*batch, check=False)
            handles.update(self._parse(proc.stdout, specs))
            errors.append(proc.stderr)
            batch.clear()
            return proc.returncode == 0 or not _missing_session(proc.stderr)

        for spec in specs:
            target = f"={session}:{spec.run_id}"
            cmds = [self._new_window(spec, target), *window_marks(target, spec)]
            cost = sum(len(tmux_arg(a).encode()) + 1 for cmd in cmds for a in cmd) + 2 * len(cmds)
            if batch and size + cost > BATCH_BYTES:
                if not send():
                    return handles, "".join(errors)
                size = 0
            batch += cmds
            size += cost
        if batch:
            send()
        return handles, "".join(errors)

    def _command(self, spec: LaunchSpec) -> list[str]:
        env_file = _env_file(spec)
        write_private(env_file, launcher_env())
        argv = supervisor_argv(spec)
        return [*argv[:-1], "--display", "--env", str(env_file), argv[-1]]

    def _new_window(self, spec: LaunchSpec, target: str, verb: str = "new-window") -> list[str]:
        fmt = f"{spec.run_id}\t{_WINDOW_FMT}"
        where = ["-t", target] if verb == "new-window" else ["-s", target, *self._size()]
        return [
            verb,
            "-d",
            "-P",
            "-F",
            fmt,
            *where,
            "-n",
            spec.name,
            "-c",
            format_literal(spec.cwd),
            *self._command(spec),
        ]

    def _size(self) -> list[str]:
        return ["-x", SESSION_SIZE[0], "-y", SESSION_SIZE[1]]

    def _launch_slow(self, tmux: Tmux, session: str, spec: LaunchSpec, why: str) -> Handle:
        """One agent whose batched window was not created: make the session, or take any
        free index when the run id's index is taken (a session shared with other windows)."""
        if _missing_session(why) or not tmux.has_session(session):
            proc = tmux.run(
                self._new_window(spec, session, verb="new-session"),
                *window_marks(f"={session}:", spec),
                check=False,
            )
            handle = self._parse(proc.stdout, [spec]).get(spec.run_id)
            if handle:
                return handle
            if "duplicate session" not in proc.stderr:
                raise OrchError(f"tmux could not create session {session!r}: {proc.stderr}")
        proc = tmux.run(self._new_window(spec, f"={session}:"), check=False)
        handle = self._parse(proc.stdout, [spec]).get(spec.run_id)
        if not handle:
            raise OrchError(f"tmux could not create a window for {spec.name!r}: {proc.stderr}")
        tmux.run(*window_marks(handle["window"], spec), check=False)
        return handle

    def _parse(self, out: str, specs: Sequence[LaunchSpec]) -> dict[int, Handle]:
        by_id = {s.run_id: s for s in specs}
        handles: dict[int, Handle] = {}
        for line in out.splitlines():
            parts = line.split("\t")
            if len(parts) != 5 or not parts[0].isdigit() or int(parts[0]) not in by_id:
                continue
            run_id, window, pane, pid, socket = int(parts[0]), *parts[1:]
            handles[run_id] = {
                "pid": int(pid),
                "start_time": proc_start_time(int(pid)),
                "window": window,
                "pane": pane,
                "socket": socket,
                "session": session_name(by_id[run_id].state_dir, self.config),
                "interactive": bool(by_id[run_id].options.get("interactive")),
                **run_mark(by_id[run_id]),
            }
        return handles

    def statuses(self, handles: list[Handle]) -> list[bool]:
        """All at once and without tmux: the supervisor is the pane's process, so /proc knows
        (and an agent whose pane is gone but which still runs is alive, as it should be)."""
        return [pid_alive(h.get("pid"), h.get("start_time")) for h in handles]

    # -- windows, for the dashboard and tidying ----------------------------------------------

    def windows(
        self, state_dir: str | Path, handles: Sequence[Handle] = ()
    ) -> list[dict[str, str]]:
        """This project's agent windows on the server, in one tmux call, wherever they are (a
        window moved to another session is still the project's): those marked with its state
        directory, and those from before the marks whose window id and pane process are those
        of one of ``handles`` (the project's own records). Keys: window, name, pane, pid,
        dead ("1" once the agent ended), run, session."""
        keys = ("window", "name", "pane", "pid", "dead", "project", "run", "session")
        fmt = "\t".join(
            "#{" + k + "}"
            for k in (
                "window_id",
                "window_name",
                "pane_id",
                "pane_pid",
                "pane_dead",
                PROJECT_OPTION,
                RUN_OPTION,
                "session_name",
            )
        )
        proc = self.server().run(["list-panes", "-a", "-F", fmt], check=False)
        mine = str(Path(state_dir).resolve())
        legacy = {(str(h.get("window")), str(h.get("pid"))) for h in handles}
        rows = [dict(zip(keys, line.split("\t"))) for line in proc.stdout.splitlines() if line]
        return [
            row
            for row in rows
            if row.get("project") == mine
            or (not row.get("project") and (row.get("window"), row.get("pid")) in legacy)
        ]

    def tidy(self, runs: Iterable[Run]) -> int:
        """Close this project's agent windows whose agent has ended (their pane is dead),
        never another project's or anyone else's; returns how many. ``runs``: the project's
        records (all of them, archived too), for windows from before the marks."""
        handles = [run["handle"] for run in runs if run["backend"] == self.name and run["handle"]]
        windows = self.windows(self.context.state_dir, handles)
        dead = sorted({w["window"] for w in windows if w["dead"] == "1"})
        if dead:
            self.server().run(*(["kill-window", "-t", w] for w in dead), check=False)
        return len(dead)


# -- the dashboard --------------------------------------------------------------------------


def _self_argv(*args: str) -> list[str]:
    """Run a pane program of this module (site-packages needed: it reads the store and may
    start queued agents through plugins)."""
    return [sys.executable, "-m", "orch_plugins.backends.tmux", *args]


class Dashboard:
    """A tiled view: the orchestrator pane, a status pane (refreshed every 2 s) and one viewer
    pane per running agent.

    Viewer panes only read: a non-interactive agent's pane follows its event log, an
    interactive one's mirrors its window. Closing any of them, or the whole dashboard, never
    touches an agent. Inside tmux (on the backend's server) the orchestrator pane is the
    caller's own pane, and the dashboard panes are split off beside it in its window; outside,
    a ``dashboard`` window in the project session gets a new orchestrator pane (``claude`` by
    default). The status pane's loop also adds viewers for agents started later.
    """

    def __init__(self, state_dir: str | Path, config: Mapping[str, Any], max_agents: int = 6):
        self.state_dir = str(Path(state_dir).resolve())
        self.config = config
        self.max_agents = max_agents
        self.tmux = server_for(config)
        self.session = session_name(self.state_dir, config)

    # Where am I?
    def caller_pane(self) -> str | None:
        """The caller's pane when it runs inside tmux on this same server, else None."""
        pane, tmux_var = os.environ.get("TMUX_PANE"), os.environ.get("TMUX")
        if not pane or not tmux_var:
            return None
        proc = self.tmux.run(["display-message", "-p", "-t", pane, "#{socket_path}"], check=False)
        if proc.returncode != 0:
            return None
        return pane if proc.stdout.strip() == tmux_var.split(",")[0] else None

    def find_windows(self) -> list[str]:
        """Dashboard windows: those marked ``@orch_dashboard`` with this state dir."""
        proc = self.tmux.run(
            ["list-windows", "-a", "-F", "#{window_id}\t#{@orch_dashboard}"], check=False
        )
        pairs = (line.partition("\t") for line in proc.stdout.splitlines())
        return [window for window, _, mark in pairs if mark == self.state_dir]

    def find_window(self) -> str | None:
        windows = self.find_windows()
        return windows[0] if windows else None

    def panes(self, window: str) -> list[dict[str, str]]:
        fmt = "#{pane_id}\t#{@orch_role}\t#{@orch_run}\t#{pane_dead}"
        proc = self.tmux.run(["list-panes", "-t", window, "-F", fmt], check=False)
        keys = ("pane", "role", "run", "dead")
        return [dict(zip(keys, line.split("\t"))) for line in proc.stdout.splitlines() if line]

    def _env_file(self, label: str) -> str:
        path = Path(self.state_dir) / "tmux" / f"{label}-{os.getpid()}-{time.time_ns()}.json"
        write_private(path, launcher_env())
        return str(path)

    def open(self, orchestrator: list[str] | None = None) -> tuple[str, bool]:
        """Create the dashboard (or refresh it when it exists); returns ``(window, inside)``."""
        pane = self.caller_pane()
        if pane is not None:  # the caller's own window becomes the dashboard
            proc = self.tmux.run(["display-message", "-p", "-t", pane, "#{window_id}"])
            window = proc.stdout.strip()
            self.tmux.run(["set-option", "-w", "-t", window, "@orch_dashboard", self.state_dir])
        else:
            window = self.find_window() or self._new_window(orchestrator)
        panes = self.panes(window)
        if not any(p["role"] == "status" for p in panes):
            self._add_status(window, pane or panes[0]["pane"])
        self.reconcile(window, self._runs())
        if pane is not None:
            self.tmux.run(["select-pane", "-t", pane], check=False)
        return window, pane is not None

    def _new_window(self, orchestrator: list[str] | None) -> str:
        project = str(Path(self.state_dir).parent)
        argv = orchestrator or [self._claude()]
        env_file = self._env_file("orchestrator")
        cmd = _self_argv("exec", env_file, project, "--", *argv)
        fmt = "#{window_id}\t#{pane_id}"
        head = ["-d", "-P", "-F", fmt]
        tail = ["-n", DASHBOARD_NAME, "-c", format_literal(project), *cmd]
        proc = self.tmux.run(["new-window", *head, "-t", f"={self.session}:", *tail], check=False)
        if proc.returncode != 0:
            size = ["-x", SESSION_SIZE[0], "-y", SESSION_SIZE[1]]
            proc = self.tmux.run(["new-session", *head, "-s", self.session, *size, *tail])
        window, pane = proc.stdout.strip().split("\t")
        self.tmux.run(
            ["set-option", "-w", "-t", window, "@orch_dashboard", self.state_dir],
            ["set-option", "-p", "-t", pane, "@orch_role", "orchestrator"],
            ["set-option", "-w", "-t", window, "pane-border-status", "top"],
            ["set-option", "-w", "-t", window, "pane-border-format", " #{pane_title} "],
            ["select-pane", "-t", pane, "-T", "orchestrator"],
        )
        return window

    def _claude(self) -> str:
        from orch_plugins.config import load_config

        return load_config().resolve_claude()

    def _add_status(self, window: str, after: str) -> None:
        cmd = _self_argv("status", self._env_file("status"), self.state_dir, str(self.max_agents))
        pane = self._split(window, after, cmd)
        self.tmux.run(
            ["set-option", "-p", "-t", pane, "@orch_role", "status"],
            ["select-pane", "-t", pane, "-T", "orch status"],
            ["select-layout", "-t", window, "tiled"],
        )

    def _split(self, window: str, after: str, cmd: list[str]) -> str:
        """A new pane right after pane ``after`` (tiled first, so there is room to split)."""
        proc = self.tmux.run(
            ["select-layout", "-t", window, "tiled"],
            ["split-window", "-d", "-t", after, "-P", "-F", "#{pane_id}", *cmd],
        )
        return proc.stdout.strip().splitlines()[-1]

    def _runs(self) -> list[Run]:
        from orch_plugins.store import Store

        store = Store(Path(self.state_dir), create=False)
        try:
            return store.runs()
        finally:
            store.close()

    def reconcile(self, window: str, runs: list[Run]) -> bool:
        """Give each running agent (up to ``max_agents``) a viewer pane in ``window`` (or the
        window of a pane ``%N``); a viewer of an ended agent is reused before a new pane is
        split off. Returns whether anything changed."""
        panes = self.panes(window)
        if not panes:
            return False
        viewers = [p for p in panes if p["role"] == "agent"]
        shown = {p["run"] for p in viewers}
        running = [r for r in runs if r["status"] == "running"]
        running_ids = {str(r["run_id"]) for r in running}
        free = [p for p in viewers if p["run"] not in running_ids]
        room = self.max_agents - (len(viewers) - len(free))
        changed = False
        for run in running:
            if str(run["run_id"]) in shown:
                continue
            if room <= 0:
                break
            room -= 1
            cmd = _self_argv("view", self.state_dir, str(run["run_id"]))
            if free:
                pane = free.pop(0)["pane"]
                self.tmux.run(["respawn-pane", "-k", "-t", pane, *cmd], check=False)
            else:
                pane = self._split(window, panes[-1]["pane"], cmd)
                panes.append({"pane": pane, "role": "agent", "run": "", "dead": "0"})
            self.tmux.run(
                ["set-option", "-p", "-t", pane, "@orch_role", "agent"],
                ["set-option", "-p", "-t", pane, "@orch_run", str(run["run_id"])],
                ["select-pane", "-t", pane, "-T", run["name"]],
                check=False,
            )
            changed = True
        if changed:
            self.tmux.run(["select-layout", "-t", window, "tiled"], check=False)
        return changed

    def close(self) -> int:
        """Kill the status and viewer panes (agents are untouched); an orchestrator pane that
        the dashboard started is left for the person (and is reused by the next ``open``).
        Returns how many panes were closed."""
        closed = 0
        for window in self.find_windows():
            ours = [p["pane"] for p in self.panes(window) if p["role"] in ("status", "agent")]
            if ours:
                self.tmux.run(*(["kill-pane", "-t", p] for p in ours), check=False)
            closed += len(ours)
        return closed

    def attach_argv(self, window: str) -> list[str]:
        """The command that shows ``window`` from a terminal outside tmux."""
        self.tmux.run(["select-window", "-t", window], check=False)
        return [self.tmux.binary, *self.tmux.server_args, "attach-session", "-t", window]


# -- pane programs ----------------------------------------------------------------------------


def _clear() -> str:
    return "\033[H\033[2J\033[3J"


def _age(run: Run) -> str:
    start = run.get("started_at") or run.get("created_at") or time.time()
    secs = max(0.0, (run.get("ended_at") or time.time()) - start)
    return f"{secs:.0f}s" if secs < 120 else f"{secs / 60:.0f}m"


def status_lines(runs: list[Run], width: int) -> list[str]:
    """The status pane's table: one line per agent, newest last."""
    from orch_plugins.progress import money

    rows = [("NAME", "STATUS", "TIME", "TURNS", "TOOLS", "COST", "TASK / RESULT")]
    for r in runs:
        cost = money(r.get("cost_usd"))
        if r["status"] == "completed":
            detail = "→ " + _head(r["output_path"])
        elif r["status"] in ("running", "queued"):
            detail = r["task"]
        else:
            detail = r.get("error") or r["task"]
        detail = " ".join(str(detail).split())
        turns = r.get("num_turns")
        rows.append(
            (
                r["name"],
                r["status"],
                _age(r),
                "-" if turns is None else str(turns),
                str(r.get("tool_calls") or 0),
                cost,
                detail,
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(row[:-1], widths)) + "  " + row[-1]
        for row in rows
    ]
    return [line[:width] for line in lines]


def _head(path: str) -> str:
    """The first non-empty line of an output file (the status pane's result column)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return next((line for line in fh.read(2048).splitlines() if line.strip()), "")
    except OSError:
        return ""


def status_loop(state_dir: str, max_agents: int) -> None:
    """The status pane: ``orch status`` every two seconds, and new agents get viewer panes."""
    from orch_plugins.config import load_config
    from orch_plugins.core import Orchestrator
    from orch_plugins.store import Store

    config = load_config()
    orch = Orchestrator(Store(Path(state_dir), create=False), config)
    dash = Dashboard(state_dir, config.backends.get("tmux") or {}, max_agents)
    own_pane = os.environ.get("TMUX_PANE")
    while True:
        runs = orch.status()
        size = shutil.get_terminal_size((100, 20))
        counts = {s: sum(r["status"] == s for r in runs) for s in ("running", "queued")}
        head = (
            f"orch status  {time.strftime('%H:%M:%S')}  {counts['running']} running, "
            f"{counts['queued']} queued, {len(runs) - sum(counts.values())} ended"
        )
        body = status_lines(runs, size.columns)
        keep = max(1, size.lines - 3)  # the header, the column names, the newest agents
        shown = [body[0], *body[1:][-keep:]]
        sys.stdout.write(_clear() + "\n".join([head[: size.columns], *shown]))
        sys.stdout.flush()
        if own_pane:  # this pane's window is the dashboard: give new agents a viewer
            with contextlib.suppress(OrchError):
                dash.reconcile(own_pane, runs)
        time.sleep(REFRESH)


def view_loop(state_dir: str, run_id: int) -> None:
    """A viewer pane: the agent's progress lines from its event log (the same lines its own
    window shows), or, for an interactive agent, a copy of its pane refreshed every second."""
    from orch_plugins.store import FINAL, Store

    store = Store(Path(state_dir), create=False)
    run = store.get_run(run_id)
    handle = run["handle"] or {}
    head = f"== {run['name']} (run {run_id}, {run['backend']}) =="
    if handle.get("interactive"):
        _mirror(store, run_id, handle, head)
        return
    from orch_plugins.progress import describe_line

    screen = _Screen()
    screen.add(head, f"task: {' '.join(run['task'].split())[:200]}", "")
    log_path, pos, buf = Path(run["log_path"]), 0, b""
    while True:
        # Read the status first: once it is final, everything it wrote is in the log.
        ended = store.get_run(run_id)["status"] in FINAL
        with contextlib.suppress(FileNotFoundError), open(log_path, "rb") as fh:
            fh.seek(pos)
            chunk = fh.read()
            pos += len(chunk)
            *lines, buf = (buf + chunk).split(b"\n")
            for line in lines:
                screen.add(*describe_line(line))
        if ended:
            break
        screen.wait(0.3)
    run = store.get_run(run_id)
    tail = f": {run['error']}" if run["error"] and run["status"] != "completed" else ""
    screen.add("", f"== {run['status']}{tail} ==")
    while True:  # keep showing the result until the dashboard reuses or closes the pane
        signal.pause()
        screen.wait(0)


class _Screen:
    """A viewer pane's text, redrawn whole when the pane changes size: tmux re-wraps on a
    resize (the dashboard re-tiles, a smaller client attaches) and pushes the top lines out of
    sight."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.resized = False
        signal.signal(signal.SIGWINCH, self._on_resize)

    def _on_resize(self, _sig: int, _frame: Any) -> None:
        self.resized = True

    def add(self, *lines: str) -> None:
        self.lines = (self.lines + list(lines))[-2000:]
        sys.stdout.write("".join(line + "\n" for line in lines))
        sys.stdout.flush()

    def wait(self, seconds: float) -> None:
        time.sleep(seconds)
        if self.resized:
            self.resized = False
            self.redraw()

    def redraw(self) -> None:
        cols, rows = shutil.get_terminal_size((80, 24))
        shown: list[str] = []
        used = 0
        for line in reversed(self.lines):
            used += max(1, -(-len(line) // max(cols, 1)))
            if used > rows - 1:
                break
            shown.append(line)
        sys.stdout.write(_clear() + "".join(line + "\n" for line in reversed(shown)))
        sys.stdout.flush()


def _mirror(store: Any, run_id: int, handle: Handle, head: str) -> None:
    tmux = Tmux(handle.get("socket"))
    while True:
        size = shutil.get_terminal_size((80, 24))
        proc = tmux.run(["capture-pane", "-p", "-e", "-t", handle["pane"]], check=False)
        run = store.get_run(run_id)
        lines = proc.stdout.rstrip("\n").splitlines() if proc.returncode == 0 else []
        title = f"{head} {run['status']} · step in: orch dashboard --agent {run['name']}"
        body = lines[-(size.lines - 1) :] if lines else ["(its window is closed)"]
        sys.stdout.write(_clear() + title[: size.columns] + "\n" + "\n".join(body))
        sys.stdout.flush()
        time.sleep(1.0)


def exec_with_env(env_file: str, cwd: str, argv: list[str]) -> None:
    """The dashboard's orchestrator pane: the caller's environment, then ``exec`` the command."""
    from orch_plugins.supervisor import load_env_file

    load_env_file(env_file)
    os.chdir(cwd)
    os.execvp(argv[0], argv)


def main(argv: list[str] | None = None) -> int:
    """``python -m orch_plugins.backends.tmux status ENV STATE_DIR MAX | view STATE_DIR RUN_ID |
    exec ENV CWD -- CMD...``: the programs of the dashboard's panes."""
    args = sys.argv[1:] if argv is None else argv
    signal.signal(signal.SIGINT, lambda *_: sys.exit(0))
    try:
        if args[:1] == ["status"] and len(args) == 4:
            from orch_plugins.supervisor import load_env_file

            load_env_file(args[1])
            status_loop(args[2], int(args[3]))
        elif args[:1] == ["view"] and len(args) == 3:
            view_loop(args[1], int(args[2]))
        elif args[:1] == ["exec"] and len(args) > 4 and args[3] == "--":
            exec_with_env(args[1], args[2], args[4:])
        else:
            print(main.__doc__, file=sys.stderr)
            return 2
    except OrchError as exc:
        print(f"orch: {exc}", file=sys.stderr)
        time.sleep(30)  # leave the message readable before the pane closes
        return 1
    return 0


@hookimpl
def orch_register_backends(registry: BackendRegistry) -> None:
    registry.add(TmuxBackend)


@hookimpl
def orch_register_commands(app: typer.Typer) -> None:
    """``orch dashboard`` (its module imports typer: pane programs here never do)."""
    from orch_plugins.backends.tmux_commands import dashboard

    app.command()(dashboard)


if __name__ == "__main__":
    sys.exit(main())

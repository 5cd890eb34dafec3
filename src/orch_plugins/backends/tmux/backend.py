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
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from orch_plugins.backend import Handle, LaunchOption, LaunchSpec, log_event
from orch_plugins.backends.subprocess import SubprocessBackend, run_mark, supervisor_argv
from orch_plugins.backends.tmux.client import (
    PROJECT_OPTION,
    RUN_OPTION,
    SESSION_SIZE,
    Tmux,
    format_literal,
    launcher_env,
    server_for,
    session_name,
    tmux_arg,
    tmux_handle,
    write_private,
)
from orch_plugins.errors import OrchError
from orch_plugins.model import Run
from orch_plugins.supervisor import proc_start_time

#: What ``new-window -P`` prints for each agent window; the run id is literal.
_WINDOW_FMT = "#{window_id}\t#{pane_id}\t#{pane_pid}\t#{socket_path}"


#: tmux refuses a command line over 16 KiB ("command too long"): the commands of one call stay
#: below this (the tmux binary and socket arguments come on top).
BATCH_BYTES = 15_000


def window_marks(target: str, spec: LaunchSpec) -> list[list[str]]:
    """The tmux commands that set up an agent's window: keep it after the agent ends, and mark
    it as this project's run (``@orch_project``, ``@orch_run``)."""
    state_dir = str(Path(spec.state_dir).resolve())
    return [
        ["set-option", "-w", "-t", target, "remain-on-exit", "on"],
        ["set-option", "-w", "-t", target, PROJECT_OPTION, state_dir],
        ["set-option", "-w", "-t", target, RUN_OPTION, str(spec.run_id)],
    ]


def _env_file(spec: LaunchSpec) -> Path:
    return Path(spec.run_dir) / ".launcher-env.json"


def _missing_session(stderr: str) -> bool:
    return any(
        s in stderr
        for s in ("can't find session", "no server running", "error connecting", "no sessions")
    )


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
        tmux.run(*window_marks(tmux_handle(handle)["window"], spec), check=False)
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

    def send(self, run: Run, text: str, event: Mapping[str, object]) -> None:
        """An interactive agent: ``text`` pasted into its pane as a bracketed paste (tmux
        ``load-buffer`` from a private file, ``paste-buffer -p -r``: claude sees pasted text,
        never keys, and newlines stay newlines), then Enter. A print-mode agent: its inbox
        (:meth:`Backend.send`)."""
        handle = tmux_handle(run["handle"] or {})
        if not handle.get("interactive"):
            super().send(run, text, event)
            return
        if not handle.get("pane"):
            raise OrchError(f"agent {run['name']!r} has no tmux pane recorded")
        socket = handle.get("socket")
        tmux = Tmux(socket, self.config.get("tmux")) if socket else self.server()
        path = Path(run["run_dir"], f".send-{os.getpid()}.txt")
        buffer = f"orch-send-{run['run_id']}-{os.getpid()}"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(text.encode("utf-8"))
        try:
            tmux.run(
                ["load-buffer", "-b", buffer, str(path)],
                ["paste-buffer", "-p", "-r", "-d", "-b", buffer, "-t", handle["pane"]],
            )
            # Claude Code takes a paste as typed text; Enter, a key of its own, submits it.
            time.sleep(0.3)
            tmux.run(["send-keys", "-t", handle["pane"], "Enter"])
        finally:
            with contextlib.suppress(OSError):
                path.unlink()
        log_event(run["log_path"], event)

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

"""``orch dashboard``'s view: a tiled tmux window with the orchestrator pane, a status pane and
one viewer pane per running agent, and the programs those panes run
(``python -m orch_plugins.backends.tmux.dashboard view|status|exec``; the package's own
``python -m orch_plugins.backends.tmux`` runs the same, for panes a dashboard opened before).
The view only reads the store: closing any of it never touches an agent.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from orch_plugins.backend import Handle
from orch_plugins.backends.tmux.client import (
    SESSION_SIZE,
    Tmux,
    format_literal,
    launcher_env,
    server_for,
    session_name,
    tmux_handle,
    write_private,
)
from orch_plugins.errors import OrchError
from orch_plugins.model import Run

DASHBOARD_NAME = "dashboard"


REFRESH = 2.0


def _self_argv(*args: str) -> list[str]:
    """Run a pane program of this module (site-packages needed: it reads the store and may
    start queued agents through plugins)."""
    return [sys.executable, "-m", "orch_plugins.backends.tmux.dashboard", *args]


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


def _mirror(store: Any, run_id: int, run_handle: Handle, head: str) -> None:
    handle = tmux_handle(run_handle)
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
    """``python -m orch_plugins.backends.tmux.dashboard status ENV STATE_DIR MAX |
    view STATE_DIR RUN_ID | exec ENV CWD -- CMD...``: the programs of the dashboard's panes."""
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


if __name__ == "__main__":
    sys.exit(main())

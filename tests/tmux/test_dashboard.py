"""``orch dashboard`` against a real (private) tmux server, with the fast fake claude."""

from __future__ import annotations

import contextlib
import os
import pty
import re
import sys
import threading
from pathlib import Path

import pytest

from orch_plugins.backends.tmux.client import session_name
from tests.helpers import FAKE_CLAUDE, ORCH, orch, status_json, wait_for
from tests.tmux.helpers import Tm, handle, wrapper

ORCHESTRATOR = ["--orchestrator", "sleep 600"]  # stands in for claude in the orchestrator pane


@pytest.fixture(autouse=True)
def fast_claude(tmux_project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCH_CLAUDE_BIN", str(wrapper(tmp_path / "claude", FAKE_CLAUDE)))


def _roles(tm: Tm, window: str) -> list[tuple[str, str]]:
    return [(p["role"], p["run"]) for p in tm.panes(window)]


def _pane(tm: Tm, window: str, role: str, run: str = "") -> str:
    return next(p["pane"] for p in tm.panes(window) if p["role"] == role and p["run"] == run)


def test_dashboard_outside_tmux(tmux_project: Path, tmux_server: Tm) -> None:
    orch("parallel", "SLEEP=30 one", "SLEEP=30 two", check=True)
    r = orch("dashboard", "--no-attach", *ORCHESTRATOR, check=True)
    window = re.search(r"attach-session -t (@\d+)", r.stdout)[1]  # type: ignore[index]
    assert r.stdout.startswith("attach with: ")
    assert _roles(tmux_server, window) == [
        ("orchestrator", ""),
        ("status", ""),
        ("agent", "1"),
        ("agent", "2"),
    ]
    status = _pane(tmux_server, window, "status")
    wait_for(lambda: "2 running" in tmux_server.capture(status), timeout=10)
    assert re.search(r"agent1\s+running", tmux_server.capture(status))
    viewer = _pane(tmux_server, window, "agent", "1")
    wait_for(lambda: "[start] session" in tmux_server.capture(viewer), timeout=10)
    assert "== agent1 (run 1, tmux) ==" in tmux_server.capture(viewer)

    # An agent started later gets its pane from the status pane's loop.
    orch("launch", "late", "SLEEP=30 three", check=True)
    wait_for(lambda: ("agent", "3") in _roles(tmux_server, window), timeout=10)
    # Opening again reuses the window.
    r = orch("dashboard", "--no-attach", *ORCHESTRATOR, check=True)
    assert f"-t {window}" in r.stdout
    assert [role for role, _ in _roles(tmux_server, window)].count("status") == 1

    # Closing the dashboard, or killing its window, never stops an agent.
    assert "closed 4 dashboard panes" in orch("dashboard", "--close", check=True).stdout
    assert _roles(tmux_server, window) == [("orchestrator", "")]
    r = orch("dashboard", "--no-attach", *ORCHESTRATOR, check=True)
    assert f"-t {window}" in r.stdout  # the orchestrator pane left behind is reused
    wait_for(lambda: len(_roles(tmux_server, window)) == 5)
    tmux_server("kill-window", "-t", window)
    assert [r["status"] for r in status_json()] == ["running"] * 3

    orch("cancel", "--all", check=True)
    wait_for(lambda: sum(p["dead"] == "1" for p in tmux_server.panes()) == 3)
    assert "closed 3 windows" in orch("dashboard", "--tidy", check=True).stdout
    assert not tmux_server.running()  # the last window went: so did the session and server


def test_dashboard_inside_tmux(
    tmux_project: Path, tmux_server: Tm, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The orchestrator's own pane, in the person's own session.
    pane = tmux_server(
        "new-session", "-d", "-s", "user", "-x", "200", "-y", "50", "-P", "-F", "#{pane_id}",
        "sleep 600",
    ).strip()  # fmt: skip
    socket, pid = tmux_server("display-message", "-p", "#{socket_path} #{pid}").split()
    orch("launch", "worker", "SLEEP=30 work", check=True)
    monkeypatch.setenv("TMUX", f"{socket},{pid},0")
    monkeypatch.setenv("TMUX_PANE", pane)
    r = orch("dashboard", check=True)
    assert "dashboard beside this pane" in r.stdout
    window = tmux_server("display-message", "-p", "-t", pane, "#{window_id}").strip()
    assert _roles(tmux_server, window) == [("", ""), ("status", ""), ("agent", "1")]
    assert tmux_server("display-message", "-p", "-t", "=user:", "#{pane_id}").strip() == pane
    assert "closed 2 dashboard panes" in orch("dashboard", "--close", check=True).stdout
    assert _roles(tmux_server, window) == [("", "")]
    assert status_json("worker")[0]["status"] == "running"


def test_attach_from_a_terminal_and_step_into_an_agent(
    tmux_project: Path, tmux_server: Tm, monkeypatch: pytest.MonkeyPatch
) -> None:
    orch("launch", "worker", "SLEEP=30 work", check=True)
    session = session_name(tmux_project / ".orchestrate", {})
    pid, fd = pty.fork()
    if pid == 0:  # the child: a person typing 'orch dashboard' in a terminal outside tmux
        os.execv(sys.executable, [*ORCH, "dashboard", *ORCHESTRATOR])
    drain = threading.Thread(target=_drain, args=(fd,), daemon=True)
    drain.start()
    try:
        clients = wait_for(lambda: tmux_server("list-clients", "-F", "#{window_name}"), timeout=15)
        assert clients.split() == ["dashboard"]
        # From the orchestrator pane (inside tmux), step into the agent's window.
        orchestrator = _pane(tmux_server, f"={session}:dashboard", "orchestrator")
        socket, server = tmux_server("display-message", "-p", "#{socket_path} #{pid}").split()
        monkeypatch.setenv("TMUX", f"{socket},{server},0")
        monkeypatch.setenv("TMUX_PANE", orchestrator)
        orch("dashboard", "--agent", "worker", check=True)
        assert tmux_server("list-clients", "-F", "#{window_name}").split() == ["worker"]
        monkeypatch.delenv("TMUX")
        monkeypatch.delenv("TMUX_PANE")
    finally:
        tmux_server("detach-client", "-s", session, check=False)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)
    window = handle(tmux_project, 1)["window"]
    r = orch("dashboard", "--agent", "worker", "--no-attach", check=True)
    assert r.stdout.strip().endswith(f"attach-session -t {window}")
    orch("launch", "plain", "hi", "--backend", "subprocess", check=True)
    r = orch("dashboard", "--agent", "plain")
    assert r.returncode == 1 and "has no tmux window" in r.stderr


def _drain(fd: int) -> None:
    with contextlib.suppress(OSError):
        while os.read(fd, 65536):
            pass


def test_tidy_closes_only_this_projects_windows(
    tmux_project: Path, tmux_server: Tm, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two checkouts both called ``proj`` on one tmux server, a window of the person's own in
    the first one's session and a window from before the marks: ``--tidy`` in one project
    closes that project's ended agents' windows and nothing else."""
    other = tmp_path / "elsewhere" / "proj"
    other.mkdir(parents=True)
    first = {"ORCH_STATE_DIR": str(tmux_project / ".orchestrate")}
    second = {"ORCH_STATE_DIR": str(other / ".orchestrate")}

    def project(env: dict[str, str], cwd: Path) -> None:
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        monkeypatch.chdir(cwd)

    orch("parallel", "quick one", "quick two", check=True)
    orch("wait", check=True)
    project(second, other)
    orch("launch", "theirs", "quick three", check=True)
    orch("wait", check=True)
    sessions = {p["name"]: p["session"] for p in tmux_server.panes()}
    assert sessions["agent1"] == sessions["agent2"] != sessions["theirs"]
    assert sessions["agent1"].startswith("orch-proj-")
    # The person's own window, ended, in the first project's session; and agent2's window as
    # an older orch left it (no marks): its window id and process are in the store's handle.
    mine = sessions["agent1"]
    tmux_server(
        "new-window", "-d", "-n", "mine", "-t", f"={mine}:", "true", ";",
        "set-option", "-w", "-t", f"={mine}:mine", "remain-on-exit", "on",
    )  # fmt: skip
    old = handle(tmux_project, 2)["window"]
    tmux_server("set-option", "-w", "-u", "-t", old, "@orch_project")
    tmux_server("set-option", "-w", "-u", "-t", old, "@orch_run")
    wait_for(lambda: all(p["dead"] == "1" for p in tmux_server.panes()), timeout=10)

    project(first, tmux_project)
    assert "closed 2 windows" in orch("dashboard", "--tidy", check=True).stdout
    assert sorted(p["name"] for p in tmux_server.panes()) == ["mine", "theirs"]
    project(second, other)
    assert "closed 1 window of" in orch("dashboard", "--tidy", check=True).stdout
    assert [p["name"] for p in tmux_server.panes()] == ["mine"]

"""One supervisor process per launch batch (fake claude): the runs of one ``orch parallel`` share
a process, and nothing else a user could notice. The real-CLI case is in
tests/e2e/test_batch_real.py."""

from __future__ import annotations

import os
import signal
import sqlite3
from pathlib import Path

import pytest

from orch_plugins import procs
from tests.helpers import handle, orch, status_json, wait_for


def claude_of(project: Path, name: str) -> tuple[int, int]:
    """The recorded (pid, start time) of an agent's claude, once it runs."""

    def read() -> tuple[int, int] | None:
        con = sqlite3.connect(project / ".orchestrate" / "state.db")
        try:
            row = con.execute(
                "SELECT claude_pid, claude_start FROM runs WHERE name=? ORDER BY run_id DESC",
                (name,),
            ).fetchone()
        finally:
            con.close()
        return (row[0], row[1]) if row and row[0] else None

    return wait_for(read, timeout=30)


def marked(project: Path, name: str) -> dict[int, int]:
    """Processes still carrying the agent's run marker."""
    spec = handle(project, name)
    return procs.agent_processes(marker=procs.run_marker(spec["run_id"], spec["token"]))


def launch_held(project: Path, *names: str) -> dict[str, Path]:
    """``orch parallel`` of agents that each wait for their gate file; returns the gates."""
    gates = {name: project / f"gate-{name}" for name in names}
    tasks = [f"GATE={gates[n]} task of {n}" for n in names]
    orch("parallel", *tasks, "--prefix", "b", "--max-parallel", "10", check=True)
    return {f"b{i + 1}": gates[n] for i, n in enumerate(names)}


def test_the_agents_of_one_launch_share_one_supervisor_and_a_killed_claude_ends_only_its_run(
    project: Path,
) -> None:
    gates = launch_held(project, "one", "two")
    first, second = handle(project, "b1"), handle(project, "b2")
    assert first["pid"] == second["pid"]  # one process supervises the batch
    pid, _ = claude_of(project, "b1")
    claude_of(project, "b2")
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: status_json("b1")[0]["status"] == "failed", timeout=30)
    assert status_json("b2")[0]["status"] == "running"
    assert procs.pid_alive(first["pid"], first["start_time"])
    gates["b2"].touch()
    assert orch("wait", "b2", "--timeout", "30", timeout=40).returncode == 0
    b1, b2 = status_json("b1", "b2")
    assert b1["status"] == "failed" and "-9" in (b1["error"] or "")
    assert b2["status"] == "completed"
    # The batch's process leaves once its last run has ended.
    wait_for(lambda: not procs.pid_alive(first["pid"], first["start_time"]), timeout=15)


def test_cancelling_one_agent_of_a_batch_leaves_the_others_running(project: Path) -> None:
    gates = launch_held(project, "one", "two")
    assert handle(project, "b1")["pid"] == handle(project, "b2")["pid"]  # one batch
    claude_of(project, "b1")
    pid2, start2 = claude_of(project, "b2")
    r = orch("cancel", "b1", check=True, timeout=60)
    assert "b1: cancelled" in r.stdout
    assert not marked(project, "b1")
    assert status_json("b2")[0]["status"] == "running"
    assert procs.pid_alive(pid2, start2)
    gates["b2"].touch()
    assert orch("wait", "b2", "--timeout", "30", timeout=40).returncode == 0
    assert status_json("b2")[0]["status"] == "completed"


def test_a_killed_batch_supervisor_shows_every_run_lost_and_leaves_no_claude(
    project: Path,
) -> None:
    launch_held(project, "one", "two", "three")
    claudes = [claude_of(project, n) for n in ("b1", "b2", "b3")]
    batch = handle(project, "b2")
    os.kill(batch["pid"], signal.SIGKILL)
    wait_for(lambda: not procs.pid_alive(batch["pid"], batch["start_time"]), timeout=10)
    runs = status_json("b1", "b2", "b3")
    assert [r["status"] for r in runs] == ["lost"] * 3
    for pid, start in claudes:
        wait_for(lambda p=pid, s=start: not procs.pid_alive(p, s), timeout=15)
    for name in ("b1", "b2", "b3"):
        assert not marked(project, name)


def test_a_run_whose_supervision_ended_unrecorded_is_lost_while_its_batch_lives(
    project: Path,
) -> None:
    """A batch thread that ended without recording its run (the file its thread leaves says
    so) makes that run ``lost``, never ``running``, though the process still supervises
    others."""
    gates = launch_held(project, "one", "two")
    claude_of(project, "b1")
    claude_of(project, "b2")
    run = status_json("b1")[0]
    # What a thread that died leaves behind: its end mark, the run still "running".
    Path(run["output_path"]).with_name("supervisor.end").touch()
    assert status_json("b1")[0]["status"] == "lost"
    assert status_json("b2")[0]["status"] == "running"
    gates["b2"].touch()
    assert orch("wait", "b2", "--timeout", "30", timeout=40).returncode == 0
    assert status_json("b2")[0]["status"] == "completed"


def test_cancelling_one_run_of_a_batch_whose_launcher_died_leaves_the_others_running(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The launcher killed after starting the batch, before recording any handle: each run
    holds a placeholder the batch checked in on. A cancel of one goes to that run alone."""
    gates = {n: project / f"gate-{n}" for n in ("one", "two")}
    tasks = [f"GATE={gates[n]} task of {n}" for n in ("one", "two")]
    monkeypatch.setenv("ORCH_FAULT", "launch-spawned")
    orch("parallel", *tasks, "--prefix", "b", "--max-parallel", "10")
    monkeypatch.delenv("ORCH_FAULT")
    first, second = wait_for(
        lambda: (
            all("supervisor" in handle(project, n) for n in ("b1", "b2"))
            and (handle(project, "b1"), handle(project, "b2"))
        ),
        timeout=30,
    )
    assert first["supervisor"] == second["supervisor"]  # one batch checked in on both
    claude_of(project, "b1")
    pid2, start2 = claude_of(project, "b2")
    assert "b1: cancelled" in orch("cancel", "b1", check=True, timeout=60).stdout
    assert status_json("b2")[0]["status"] == "running"
    assert procs.pid_alive(pid2, start2)
    gates["two"].touch()
    assert orch("wait", "b2", "--timeout", "30", timeout=40).returncode == 0
    assert status_json("b2")[0]["status"] == "completed"


def test_a_large_batch_raises_its_open_files_limit(project: Path, tmp_path: Path) -> None:
    """45 agents at once in one process hold ~300 descriptors: a soft limit of 128 (the
    launcher's) is raised up to the hard one, and every run completes."""
    import resource
    import subprocess

    from tests.helpers import ORCH

    gate = tmp_path / "gate"
    stub = tmp_path / "claude-stub"
    sid = "00000000-0000-0000-0000-000000000001"
    stub.write_text(
        "#!/bin/sh\nread -r _line\n"
        f"""echo '{{"type":"system","subtype":"init","session_id":"{sid}"}}'\n"""
        f"while [ ! -e {gate} ]; do sleep 0.1; done\n"
        f"""echo '{{"type":"result","subtype":"success","is_error":false,"result":"ok",\
"session_id":"{sid}"}}'\n"""
    )
    stub.chmod(0o755)
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    env = {**os.environ, "ORCH_CLAUDE_BIN": str(stub)}
    subprocess.run(
        [*ORCH, "parallel", "--max-parallel", "45", *[f"task {i}" for i in range(45)]],
        env=env,
        check=True,
        capture_output=True,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (128, hard)),
        timeout=60,
    )
    batch = handle(project, "agent1")
    assert all(handle(project, f"agent{i}")["pid"] == batch["pid"] for i in range(2, 46))
    for i in range(1, 46):
        claude_of(project, f"agent{i}")
    gate.touch()
    assert orch("wait", "--timeout", "60", timeout=90).returncode == 0
    assert {r["status"] for r in status_json()} == {"completed"}

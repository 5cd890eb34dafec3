"""Session ids and claude processes stay with their runs: the supervisor's side."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import uuid
from pathlib import Path

import pytest

from orch_plugins.store import COMPLETED, RUNNING, Store
from orch_plugins.supervisor import DbReporter, InteractiveSupervisor, proc_start_time
from tests.helpers import orch, pid_gone, status_json, wait_for


@pytest.fixture
def interactive(tmp_path: Path) -> InteractiveSupervisor:
    """An interactive run's supervisor (its claude not started) reading ``stop.json``."""
    state = tmp_path / "state"
    store = Store(state)
    with store.transaction():
        run = store.insert_run(name="ia", task="t", backend="tmux", cwd=str(tmp_path))
    store.update(run["run_id"], status=RUNNING)
    Path(run["run_dir"]).mkdir(parents=True)
    spec = {
        "run_id": run["run_id"],
        "name": "ia",
        "state_dir": str(state),
        "run_dir": run["run_dir"],
        "output_path": run["output_path"],
        "log_path": run["log_path"],
        "prompt_path": str(Path(run["run_dir"]) / "prompt.txt"),
        "env": {"ORCH_FORK_OF": ""},
    }
    return InteractiveSupervisor(spec, DbReporter(spec))


def stop(sup: InteractiveSupervisor, n: int, **payload: object) -> None:
    """The Stop hook's handover, then the supervisor's poll (distinct mtimes, like turns)."""
    sup.stop_file.write_text(json.dumps({"hook_event_name": "Stop", **payload}))
    os.utime(sup.stop_file, ns=(n * 10**9, n * 10**9))
    sup.check_turn()


def test_a_subagents_stop_does_not_complete_an_interactive_run(interactive) -> None:
    sid = str(uuid.uuid4())
    stop(interactive, 1, session_id=sid, agent_id="a3f9", last_assistant_message="sub done")
    run = interactive.store.get_run(interactive.run_id)
    assert run["status"] == RUNNING and not Path(run["output_path"]).exists()
    stop(interactive, 2, session_id=sid, last_assistant_message="task done")
    run = interactive.store.get_run(interactive.run_id)
    assert run["status"] == COMPLETED and run["session_id"] == sid
    assert Path(run["output_path"]).read_text() == "task done"


def test_a_stop_while_a_subagent_still_works_does_not_complete_the_run(interactive) -> None:
    """Claude Code 2.1.332 runs a Task sub-agent in the background: the turn stops while it
    works (listed in ``background_tasks``), and its result comes back as another turn. A
    background shell command (a dev server) does not hold the run back."""
    sid = str(uuid.uuid4())
    sub = {"id": "a1", "type": "subagent", "status": "running", "description": "sub"}
    shell = {"id": "b1", "type": "local_bash", "status": "running", "description": "server"}
    stop(interactive, 1, session_id=sid, last_assistant_message="waiting", background_tasks=[sub])
    assert interactive.store.get_run(interactive.run_id)["status"] == RUNNING
    stop(
        interactive, 2, session_id=sid, last_assistant_message="all done", background_tasks=[shell]
    )
    run = interactive.store.get_run(interactive.run_id)
    assert run["status"] == COMPLETED and Path(run["output_path"]).read_text() == "all done"


def test_an_interactive_run_keeps_its_first_session(interactive) -> None:
    """A /clear or /resume typed in the pane: later Stops come from another session."""
    first, other = str(uuid.uuid4()), str(uuid.uuid4())
    stop(interactive, 1, session_id=first, last_assistant_message="task done")
    stop(interactive, 2, session_id=other, last_assistant_message="after /clear")
    run = interactive.store.get_run(interactive.run_id)
    assert run["status"] == COMPLETED and run["session_id"] == first
    assert Path(run["output_path"]).read_text() == "after /clear"  # later turns still show


def test_a_fork_never_takes_its_parents_id_from_a_stop(interactive) -> None:
    parent, fork = str(uuid.uuid4()), str(uuid.uuid4())
    interactive.fork_of = parent
    stop(interactive, 1, session_id=parent, last_assistant_message="x")
    assert interactive.store.get_run(interactive.run_id)["session_id"] is None
    stop(interactive, 2, session_id=fork, last_assistant_message="y")
    assert interactive.store.get_run(interactive.run_id)["session_id"] == fork


def test_a_previous_claude_is_stopped_only_if_it_is_provably_that_process(interactive) -> None:
    """Pid and start time must both match; a process that ignores SIGTERM gets SIGKILL."""
    leftover = subprocess.Popen(["sh", "-c", "trap '' TERM; sleep 60 & wait"])
    stranger = subprocess.Popen(["sleep", "60"])
    try:
        wait_for(lambda: proc_start_time(leftover.pid))
        interactive.spec["kill_grace"] = 0.3
        interactive.spec["previous_claudes"] = [
            {"pid": leftover.pid, "start_time": proc_start_time(leftover.pid), "run_id": 7},
            {"pid": stranger.pid, "start_time": proc_start_time(stranger.pid) - 1, "run_id": 6},
        ]
        interactive.stop_previous_claudes()
        wait_for(lambda: leftover.poll() is not None, timeout=5)
        assert stranger.poll() is None  # same pid, other start time: someone else now
        events = [
            json.loads(x) for x in Path(interactive.spec["log_path"]).read_text().split("\n") if x
        ]
        assert events == [
            {
                "type": "orch",
                "subtype": "stopped_previous_claude",
                "pid": leftover.pid,
                "run_id": 7,
                "message": f"stopped claude (pid {leftover.pid}) left running by run 7 of this "
                "session",
            }
        ]
    finally:
        for proc in (leftover, stranger):
            proc.kill()
            proc.wait()
    assert pid_gone(leftover.pid)


def test_resume_stops_the_claude_a_lost_run_left_running(project: Path) -> None:
    """The supervisor is killed with -9 and its claude ignores SIGTERM: the resume notices the
    loss and stops what the lost run left (found by the run's marker; SIGKILL after 0.5 s)
    before the resumed run's claude starts. (When that cleanup cannot reach it, the resumed
    supervisor stops it itself: see the test of stop_previous_claudes above.)
    """
    orch("launch", "keep", "NOTERM SLEEP=60 first", check=True)
    run = wait_for(lambda: status_json("keep")[0]["claude_pid"] and status_json("keep")[0])
    leftover, start = run["claude_pid"], proc_start_time(run["claude_pid"])
    supervisor = Store(project / ".orchestrate").get_run(run["run_id"])["handle"] or {}
    os.kill(supervisor["pid"], signal.SIGKILL)
    wait_for(lambda: pid_gone(supervisor["pid"]))

    orch("resume", "keep", "second", check=True)  # notices the loss itself
    assert pid_gone(leftover) or proc_start_time(leftover) != start
    orch("wait", "keep", check=True, timeout=60)
    assert status_json("keep", all_=True)[0]["status"] == "lost"
    second = status_json("keep")[0]
    assert second["session_id"] == run["session_id"]

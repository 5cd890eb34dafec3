"""The end of a run comes from Claude Code's result event, not from its process (fake claude).
The real-CLI case is in tests/e2e/test_run_end_real.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orch_plugins.supervisor import descendants
from tests.helpers import orch, pid_gone, status_json, wait_for


def _handle(name: str) -> dict:
    return json.loads(_run(name)["handle"])


def _run(name: str) -> dict:
    import sqlite3

    con = sqlite3.connect(Path(".orchestrate") / "state.db")
    con.row_factory = sqlite3.Row
    try:
        row = con.execute(
            "SELECT * FROM runs WHERE name=? ORDER BY run_id DESC LIMIT 1", (name,)
        ).fetchone()
        return dict(row)
    finally:
        con.close()


def test_lingering_claude_is_recorded_from_its_result_and_stopped(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ORCH_RESULT_GRACE", "1.5")
    r = orch(
        "parallel",
        "LINGER=60 then",
        "after it",
        "--prefix",
        "linger",
        "--timeout",
        "4",
        "--max-parallel",
        "1",
        "--json",
        check=True,
    )
    assert [x["status"] for x in json.loads(r.stdout)] == ["running", "queued"]
    sup = _handle("linger1")["pid"]
    claude = wait_for(lambda: descendants(sup))
    w = orch("wait", "linger1", "linger2", "--timeout", "20", timeout=30)
    assert w.returncode == 0, w.stdout + w.stderr
    run, _ = status_json("linger1", "linger2")
    assert run["status"] == "completed" and run["error"] is None
    first, second = _run("linger1"), _run("linger2")
    assert first["ended_at"] - first["started_at"] < 4  # recorded from the result, in time
    assert second["started_at"] - first["ended_at"] < 2  # its slot was freed at once
    assert Path(run["output_path"]).read_text().startswith("sha256=")
    # What was left of claude is stopped after result_grace, and then its exit code recorded.
    wait_for(lambda: all(pid_gone(p) for p in [sup, *claude]), timeout=10)
    assert status_json("linger1")[0]["exit_code"] == -15
    assert status_json("linger1")[0]["status"] == "completed"  # the timeout did not touch it
    assert "still runs" in orch("logs", "linger1", check=True).stdout
    assert not (Path(run["log_path"]).parent / "stdout.jsonl").exists()


def test_a_child_holding_stdout_open_does_not_hold_the_run(project: Path) -> None:
    orch("launch", "holder", "HOLDOUT=30 please", check=True)
    orch("wait", "holder", "--timeout", "10", check=True, timeout=20)
    run = status_json("holder")[0]
    assert run["status"] == "completed" and run["exit_code"] == 0
    assert wait_for(lambda: pid_gone(_handle("holder")["pid"]), timeout=5)

"""kill -9 of the launcher and of a supervisor at each step of a run (fault points,
``ORCH_FAULT``: docs/faults.md), with the fake claude; every case has its own store and all
cases of a test run at once.

Afterwards every run shows its true status in ``orch status --json`` (``lost`` with a reason,
never ``running``, for a dead one; ``completed`` where claude's result came in), nothing is
doubled (one record per launch, one claude start at most), and nothing of the run still runs.
"""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from tests.faults.kit import Case, claude_starts, leftovers

#: Launcher steps: (fault point, status the run ends with, claude starts). "gone": no record.
LAUNCHER_STEPS = {
    # Inside the transaction that records the run: rolled back, nothing recorded or started.
    "launch-record": ("gone", 0),
    # Recorded, queued; the next status read starts it.
    "launch-queued": ("completed", 1),
    # Claimed (running, a placeholder handle), nothing started: lost at the next status read.
    "launch-claimed": ("lost", 0),
    # Its supervisor started, its handle not recorded: the supervisor checked in, it completes.
    "launch-spawned": ("completed", 1),
}
#: Supervisor steps, and what the task holds claude at (so a live claude can be orphaned).
SUPERVISOR_STEPS = {
    "supervisor-start": ("lost", 0, ""),
    # claude started, its task not yet handed over (stdin): it never got the task.
    "supervisor-spawned": ("lost", 0, "GATE={gate}"),
    "supervisor-streaming": ("lost", 1, "HOLD={gate}"),
    "supervisor-result": ("completed", 1, ""),
    "supervisor-recorded": ("completed", 1, ""),
}


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def one_run(case: Case, runs: list[dict[str, Any]]) -> dict[str, Any]:
    mine = [r for r in runs if r["name"] == case.name]
    assert len(mine) == 1, f"{case.step}: {len(mine)} records for one launch: {mine}"
    return mine[0]


def check_end(case: Case, run: dict[str, Any], status: str) -> None:
    assert run["status"] == status, f"{case.step}: {run['status']} ({run['error']})"
    if status == "lost":
        assert run["error"], f"{case.step}: lost without a reason"
    if status == "completed":
        assert Path(run["output_path"]).read_text().startswith("sha256="), case.step
    left = leftovers(run)
    assert not left, f"{case.step}: processes left behind: {left}"


def launcher_case(case: Case, home: Path) -> None:
    status, starts = LAUNCHER_STEPS[case.step]
    gate = case.root / f"{case.step}.gate"
    task = f"task {case.token} GATE={gate}"  # held until the first status read is checked
    out = case.orch("launch", case.name, task, fault=case.step)
    assert out.returncode == -9, f"{case.step}: the launcher was not killed: {out}"
    # The first status read tells the truth at once, even with the wall clock minutes ahead:
    # a run nothing is starting any more is not "running", one whose supervisor runs is not
    # "lost" (the queued one is started by this read).
    first = case.runs(clock="+600")
    if status == "lost":
        assert [r["status"] for r in first] == ["lost"], f"{case.step}: {first}"
    elif status == "completed":
        assert [r["status"] for r in first] == ["running"], f"{case.step}: {first}"
    gate.touch()
    runs = case.settle()
    if status == "gone":
        assert first == runs == [], f"{case.step}: a run half-recorded: {runs}"
        # The name is free, and a new launch runs its own prompt (no stale file of the
        # rolled-back one).
        again = f"again {case.token}"
        assert case.orch("launch", case.name, again).returncode == 0
        run = one_run(case, case.settle())
        check_end(case, run, "completed")
        assert sha(again) in Path(run["output_path"]).read_text()
    else:
        run = one_run(case, runs)
        check_end(case, run, status)
        if status == "completed":
            assert sha(task) in Path(run["output_path"]).read_text()
    assert claude_starts(home, task) == starts, f"{case.step}: claude starts"


def supervisor_case(case: Case, home: Path) -> None:
    status, starts, hold = SUPERVISOR_STEPS[case.step]
    gate = case.root / f"{case.step}.gate"  # never made: claude waits until it is stopped
    task = f"task {case.token} {hold.format(gate=gate)}"
    out = case.orch("launch", case.name, task, fault=case.step)
    assert out.returncode == 0, f"{case.step}: {out.stderr}"
    run = one_run(case, case.settle())
    check_end(case, run, status)
    if status == "completed":
        assert sha(task) in Path(run["output_path"]).read_text()
        assert run["cost_usd"] == 0.0012, f"{case.step}: {run}"
    assert claude_starts(home, case.token) == starts, f"{case.step}: claude starts"


def batch_case(case: Case, home: Path) -> None:
    """One supervisor process for a launch batch (``orch parallel``): killed at the first
    event of one of its runs, it takes every run of the batch down, and each shows so."""
    gate = case.root / f"{case.step}.gate"  # never made
    tasks = [f"task {case.token} HOLD={gate}" for _ in range(3)]
    out = case.orch("parallel", *tasks, "--prefix", "b", fault="supervisor-streaming")
    assert out.returncode == 0, f"{case.step}: {out.stderr}"
    runs = case.settle()
    assert sorted(r["name"] for r in runs) == ["b1", "b2", "b3"], runs
    for run in runs:
        check_end(case, run, "lost")
    assert claude_starts(home, case.token) <= 3


def run_all(cases: list[Case], check: Any, home: Path) -> None:
    with ThreadPoolExecutor(len(cases)) as pool:
        failures = []
        for case, future in [(c, pool.submit(check, c, home)) for c in cases]:
            try:
                future.result()
            except AssertionError as exc:
                failures.append(f"{case.step}: {exc}")
    assert not failures, "\n".join(failures)


def test_launcher_killed_at_each_step(project: Path, tmp_path: Path) -> None:
    cases = [Case(tmp_path / "cases", step) for step in LAUNCHER_STEPS]
    run_all(cases, launcher_case, tmp_path / "home")


def test_supervisor_killed_at_each_step(project: Path, tmp_path: Path) -> None:
    cases = [Case(tmp_path / "cases", step) for step in SUPERVISOR_STEPS]
    run_all(cases, supervisor_case, tmp_path / "home")
    run_all([Case(tmp_path / "cases", "batch")], batch_case, tmp_path / "home")

"""The wall clock jumps back and forth while agents run (``jumpclock.c``, LD_PRELOADed into
the launcher and so into the supervisor and claude; monotonic time stays true, as in a real
jump): timeouts, idle timeouts, durations and progress still hold."""

from __future__ import annotations

import re
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from orch_plugins.store import Store
from tests.faults.kit import Case
from tests.faults.test_hooks import fire


def jump(case: Case, *offsets: str, every: float = 0.7) -> None:
    """Move the case's wall clock through ``offsets`` (seconds from true time)."""
    for offset in offsets:
        time.sleep(every)
        (case.root / f"{case.step}.clock").write_text(offset)


def until(case: Case, check: Any, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        run = case.runs()[-1]
        if check(run) or time.monotonic() > deadline:
            return run
        time.sleep(0.1)


def timeout_case(case: Case) -> None:
    gate = case.root / "never"
    started = time.monotonic()
    launch = case.orch("launch", "a", f"HOLD={gate}", "--timeout", "4", clock="0")
    assert launch.returncode == 0, launch.stderr
    jump(case, "-3600", "3600", "-86400", "0")
    run = until(case, lambda r: r["status"] != "running", timeout=60)
    took = time.monotonic() - started
    assert run["status"] == "timed_out", run
    assert 3.5 < took < 60, took  # not an hour, nor a day
    assert 3000 <= run["duration_ms"] <= 60000, run["duration_ms"]


def idle_case(case: Case) -> None:
    gate = case.root / "never"
    started = time.monotonic()
    launch = case.orch("launch", "a", f"HOLD={gate}", "--idle-timeout", "3", clock="0")
    assert launch.returncode == 0, launch.stderr
    jump(case, "3600", "-3600", "7200")
    run = until(case, lambda r: r["status"] != "running", timeout=60)
    took = time.monotonic() - started
    assert run["status"] == "stalled", run
    assert 2.5 < took < 60, took


def progress_case(case: Case) -> None:
    gate, hold = case.root / f"{case.step}.gate", case.root / "never"
    launch = case.orch("launch", "a", f"GATE={gate} HOLD={hold}", clock="0")
    assert launch.returncode == 0, launch.stderr
    until(case, lambda r: r["session_id"])
    jump(case, "-3600", every=0.6)  # the clock goes back an hour, then claude works
    gate.touch()
    run = until(case, lambda r: r["tool_calls"] == 1, timeout=30)
    assert run["status"] == "running" and run["tool_calls"] == 1, run  # not an hour later
    assert case.orch("cancel", "a").returncode == 0


def pause_case(case: Case) -> None:
    assert case.orch("status").returncode == 0  # the store
    store = Store(case.state_dir)
    store.rate_limited(999, 12.0, 429)  # an agent met a 429: new starts wait 12 s
    store.close()
    started = time.monotonic()
    # Launched once the clock went back an hour: the agent waits out the pause, not an hour.
    launch = case.orch("launch", "a", "after the pause", clock="-3600")
    assert launch.returncode == 0, launch.stderr
    assert case.runs()[0]["status"] == "queued"
    run = until(case, lambda r: r["status"] == "completed", timeout=40)
    assert run["status"] == "completed", run
    assert 8.0 < time.monotonic() - started < 40


def notice_case(case: Case) -> None:
    """An agent that ended after the clock went back an hour is still news for the session
    that launched it (notices follow the order in which ends were recorded, not their times)."""
    assert case.orch("status").returncode == 0
    sid, transcript = str(uuid.uuid4()), case.root / f"{case.step}.jsonl"
    transcript.touch()
    before = case.orch("launch", "before", "ends first", "--wait")
    assert before.returncode == 0
    assert fire(case, sid, transcript, None) == ("", 0)  # the session's first prompt
    gate = case.root / f"{case.step}.gate"
    env = {"CLAUDE_CODE_SESSION_ID": sid}
    for name in ("early", "late"):
        launch = case.orch("launch", name, f"GATE={gate}", clock="0", extra_env=env)
        assert launch.returncode == 0, launch.stderr
    text, _ = fire(case, sid, transcript, None)
    assert text == ""
    (case.root / f"{case.step}.clock").write_text("-3600")  # the agents end an hour "earlier"
    gate.touch()
    until(case, lambda r: r["status"] == "completed", timeout=20)
    while {r["status"] for r in case.runs()} != {"completed"}:
        time.sleep(0.1)
    text, _ = fire(case, sid, transcript, None)
    assert sorted(re.findall(r"^- (\w+): completed", text, re.M)) == ["early", "late"], text


def test_the_wall_clock_jumps(project: Path, tmp_path: Path) -> None:
    checks = {
        "timeout": timeout_case,
        "idle": idle_case,
        "progress": progress_case,
        "pause": pause_case,
        "notice": notice_case,
    }
    with ThreadPoolExecutor(len(checks)) as pool:
        futures = {n: pool.submit(f, Case(tmp_path / "cases", n)) for n, f in checks.items()}
        failures = []
        for name, future in futures.items():
            try:
                future.result()
            except AssertionError as exc:
                failures.append(f"{name}: {exc}")
    assert not failures, "\n".join(failures)

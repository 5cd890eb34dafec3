"""The agent life cycle through the real ``orch`` command, with a fast fake ``claude``."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sqlite3
from pathlib import Path

import pytest

from orch_plugins import CLAUDE_CODE_VERSION, procs
from orch_plugins.store import STATUS_FIELDS
from tests.helpers import orch, orch_at_once, pid_gone, status_json, wait_for

HOSTILE = (
    'it\'s "quoted" $(rm -rf /) `id` $HOME; echo pwned | cat && exit 1\n'
    "\tline2 ünïcødé 🚀 \\ %s {task}\r\n\x1b[31m  "
)


def done(name: str) -> dict:
    return wait_for(
        lambda: next(
            (r for r in status_json(name) if r["status"] not in ("queued", "running")), None
        )
    )


def test_launch_wait_output_and_status_fields(project: Path) -> None:
    r = orch("launch", "a1", "say hi", check=True)
    assert r.stdout.startswith("a1: launched")
    w = orch("wait", "a1", check=True)
    assert "a1: completed" in w.stdout
    [run] = status_json("a1")
    assert list(run)[: len(STATUS_FIELDS)] == list(STATUS_FIELDS)
    assert run["status"] == "completed"
    assert run["session_id"]
    assert run["exit_code"] == 0
    assert run["cost_usd"] == pytest.approx(0.0012)
    assert run["num_turns"] == 2
    assert run["tool_calls"] == 1
    assert run["started_at"] and run["ended_at"]
    assert Path(run["output_path"]).read_text().startswith("sha256=")
    out = orch("output", "a1", check=True).stdout
    assert out == Path(run["output_path"]).read_text() + "\n"
    assert orch("output", "a1", "--path", check=True).stdout.strip() == run["output_path"]
    logs = orch("logs", "a1", check=True).stdout
    assert "[tool] Bash: true" in logs and "[done]" in logs


def test_hostile_task_text_arrives_byte_for_byte(project: Path) -> None:
    orch("launch", "h1", HOSTILE, check=True)
    big = ("x" * 1023 + "\n") * 1024  # 1 MiB, via stdin
    orch("launch", "h2", "-", input=big, check=True)
    orch("wait", "h1", "h2", check=True)
    for name, text in (("h1", HOSTILE), ("h2", big)):
        out = orch("output", name, check=True).stdout
        assert f"sha256={hashlib.sha256(text.encode()).hexdigest()}" in out
    assert status_json("h1")[0]["task"] == HOSTILE


def test_odd_names_and_bad_input_give_one_line_errors(project: Path) -> None:
    for bad in ("", "--", "a b", "a/b", "x" * 65, "名前", "a;rm", ".hidden"):
        r = orch("launch", "--", bad, "task")
        assert r.returncode == 1, bad
        assert r.stderr.count("\n") == 1 and "invalid agent name" in r.stderr, r.stderr
    assert orch("launch", "ok", "   ").returncode == 1
    r = orch("status", "nosuch")
    assert r.returncode == 1 and "no agent named 'nosuch'" in r.stderr
    assert orch("output", "nosuch").returncode == 1
    r = orch("launch", "x1", "t", "--role", "nope")
    assert r.returncode == 1 and "unknown role" in r.stderr
    r = orch("launch", "x1", "t", "--backend", "nope")
    assert r.returncode == 1 and "unknown backend" in r.stderr
    r = orch("resume", "nosuch", "more")
    assert r.returncode == 1 and "no agent named" in r.stderr
    r = orch("launch", "x1", "t", "--from", "00000000-0000-0000-0000-000000000000")
    assert r.returncode == 1 and "unknown agent or session" in r.stderr
    assert status_json() == []  # nothing was recorded by the refused calls


def test_missing_claude_is_a_clear_error(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCH_CLAUDE_BIN", "/nonexistent/claude")
    r = orch("launch", "a", "t")
    assert r.returncode == 1 and "claude binary '/nonexistent/claude' not found" in r.stderr
    assert f"install Claude Code {CLAUDE_CODE_VERSION} " in r.stderr
    assert f"npm install -g @anthropic-ai/claude-code@{CLAUDE_CODE_VERSION}" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_corrupt_store_is_reported_and_left_untouched(project: Path) -> None:
    orch("launch", "a", "t", check=True)
    orch("wait", "a", check=True)
    db = project / ".orchestrate" / "state.db"
    for suffix in ("-wal", "-shm"):
        Path(str(db) + suffix).unlink(missing_ok=True)
    db.write_bytes(b"this is not a database" * 100)
    before = db.read_bytes()
    for args in (("status",), ("launch", "b", "t"), ("wait",)):
        r = orch(*args)
        assert r.returncode == 1 and "corrupt or unreadable" in r.stderr, r.stderr
    assert db.read_bytes() == before


def test_a_store_damaged_past_its_header_is_one_line_and_a_doctor_failure(project: Path) -> None:
    """Damage SQLite meets only when a query reaches it ("database disk image is malformed")
    gets the same line as a store that cannot be opened, never a traceback; orch doctor
    checks the pages too; the file is left as it was."""
    orch("launch", "a", "t", check=True)
    orch("wait", "a", check=True)
    db = project / ".orchestrate" / "state.db"
    for suffix in ("-wal", "-shm"):
        Path(str(db) + suffix).unlink(missing_ok=True)
    data = bytearray(db.read_bytes())
    page = int.from_bytes(data[16:18], "big") or 65536
    assert len(data) >= 3 * page
    data[page:] = b"\xa5" * (len(data) - page)  # all but page 1 (the header, the schema)
    db.write_bytes(bytes(data))
    for args in (
        ("status",),
        ("status", "--json"),
        ("launch", "b", "t"),
        ("output", "a"),
        ("logs", "a"),
        ("cancel", "--all"),
    ):
        r = orch(*args)
        assert r.returncode == 1, (args, r.stderr)
        assert r.stderr.startswith(f"orch: error: state store {db} is corrupt or unreadable (")
        assert len(r.stderr.splitlines()) == 1, r.stderr
    doctor = orch("doctor")
    assert doctor.returncode == 1 and "is corrupt or unreadable" in doctor.stdout + doctor.stderr
    assert db.read_bytes() == bytes(data)


def test_name_reuse_and_history(project: Path) -> None:
    orch("launch", "r", "SLEEP=5", check=True)
    again = orch("launch", "r", "other")
    assert again.returncode == 1 and "already running" in again.stderr
    orch("cancel", "r", check=True)
    orch("launch", "r", "second", check=True)
    orch("wait", "r", check=True)
    assert [x["status"] for x in status_json("r")] == ["completed"]
    history = status_json(all_=True)
    assert [(x["name"], x["status"]) for x in history] == [("r", "cancelled"), ("r", "completed")]


def test_timeout_kills_the_tree(project: Path) -> None:
    orch("launch", "slow", "SLEEP=60", "--timeout", "1", check=True)
    run = done("slow")
    assert run["status"] == "timed_out"
    assert "timed out after 1.0 s" in run["error"]
    assert orch("wait", "slow").returncode == 1


def test_cancel_stops_the_agent(project: Path) -> None:
    orch("launch", "c", "SLEEP=60", check=True)
    run = wait_for(lambda: status_json("c")[0]["session_id"] and status_json("c")[0])
    handle = _handle(project, run["run_id"])
    r = orch("cancel", "c", check=True)
    assert "c: cancelled" in r.stdout
    assert status_json("c")[0]["status"] == "cancelled"
    wait_for(lambda: pid_gone(handle["pid"]), timeout=10)
    assert "nothing to cancel" in orch("cancel", "c", check=True).stdout
    assert orch("cancel").returncode == 1


def test_retry_after_transient_api_errors(project: Path, tmp_path: Path) -> None:
    env_file = tmp_path / "fails"
    os.environ["FAKE_API_FAIL_FILE"] = str(env_file)
    try:
        orch("launch", "ok", "API=529 API_FAILS=2", "--retries", "3", check=True)
        run = done("ok")
        assert run["status"] == "completed" and run["attempt"] == 3
        logs = orch("logs", "ok", check=True).stdout
        assert logs.count("[orch retry]") == 2
        # Each retry continued the session, waiting a jittered delay of at least the backoff.
        events = [json.loads(x) for x in Path(run["log_path"]).read_text().splitlines()]
        inits = [e for e in events if e.get("subtype") == "init"]
        retries = [e for e in events if e.get("subtype") == "retry"]
        assert [e["resume_session"] for e in retries] == [inits[0]["session_id"]] * 2
        assert all(e["argv"][-2:] == ["--resume", inits[0]["session_id"]] for e in inits[1:])
        assert all(e["delay_s"] >= 0.05 for e in retries)
        assert run["session_id"] == inits[0]["session_id"]
        env_file.unlink()
        orch("launch", "no", "API=529 API_FAILS=5", "--retries", "1", check=True)
        run = done("no")
        assert run["status"] == "failed" and run["attempt"] == 2
        assert run["error"].startswith("API error 529 after 2 attempts")
        orch("launch", "task", "TASKFAIL", "--retries", "3", check=True)
        run = done("task")
        assert run["status"] == "failed" and run["attempt"] == 1  # never retried
        assert run["error"] == "task failed"
    finally:
        del os.environ["FAKE_API_FAIL_FILE"]


def _handle(project: Path, run_id: int) -> dict:
    con = sqlite3.connect(project / ".orchestrate" / "state.db")
    try:
        return json.loads(
            con.execute("SELECT handle FROM runs WHERE run_id=?", (run_id,)).fetchone()[0]
        )
    finally:
        con.close()


def test_killed_supervisor_shows_lost(project: Path) -> None:
    orch("launch", "k", "SLEEP=60", check=True)
    run = wait_for(lambda: status_json("k")[0]["session_id"] and status_json("k")[0])
    handle = _handle(project, run["run_id"])
    os.kill(handle["pid"], signal.SIGKILL)
    wait_for(lambda: pid_gone(handle["pid"]))
    [run] = status_json("k")
    assert run["status"] == "lost"
    assert "without recording a result" in run["error"]


def test_reused_pid_is_not_the_agent(project: Path) -> None:
    orch("launch", "p", "SLEEP=60", check=True)
    run = wait_for(lambda: status_json("p")[0]["session_id"] and status_json("p")[0])
    handle = _handle(project, run["run_id"])
    # Pretend the recorded process is another one that happens to have this PID.
    con = sqlite3.connect(project / ".orchestrate" / "state.db")
    with con:
        con.execute(
            "UPDATE runs SET handle=? WHERE run_id=?",
            (
                json.dumps({"pid": handle["pid"], "start_time": handle["start_time"] - 1}),
                run["run_id"],
            ),
        )
    con.close()
    assert status_json("p")[0]["status"] == "lost"
    os.kill(handle["pid"], signal.SIGKILL)
    # The handle no longer names the run's marker: stop what it left (claude, its cgroup).
    spec = json.loads(Path(run["output_path"]).with_name("spec.json").read_text())
    procs.stop_run(run["run_id"], spec["env"]["ORCH_RUN_TOKEN"], 0.5)


def test_queue_respects_max_parallel(project: Path) -> None:
    r = orch("parallel", *["SLEEP=0.5"] * 5, "--max-parallel", "2", "--json", check=True)
    launched = json.loads(r.stdout)
    assert [x["name"] for x in launched] == [f"agent{i}" for i in range(1, 6)]
    assert [x["status"] for x in launched].count("running") == 2
    orch("wait", check=True, timeout=60)
    runs = status_json()
    assert {x["status"] for x in runs} == {"completed"}
    assert _max_overlap(project) <= 2


def _max_overlap(project: Path) -> int:
    con = sqlite3.connect(project / ".orchestrate" / "state.db")
    rows = con.execute("SELECT started_at, ended_at FROM runs").fetchall()
    con.close()
    points = sorted(
        [(s, 1) for s, _ in rows] + [(e, -1) for _, e in rows], key=lambda p: (p[0], p[1])
    )
    best = cur = 0
    for _, delta in points:
        cur += delta
        best = max(best, cur)
    return best


def test_fifty_concurrent_launches(project: Path) -> None:
    orch_at_once(
        *(["launch", f"c{i}", f"SLEEP=0.2 task {i}", "--max-parallel", "4"] for i in range(50))
    )
    orch("wait", check=True, timeout=180)
    runs = status_json()
    assert sorted(r["name"] for r in runs) == sorted(f"c{i}" for i in range(50))
    assert all(r["status"] == "completed" and r["attempt"] == 1 for r in runs)
    assert len(status_json(all_=True)) == 50  # nothing started twice
    assert _max_overlap(project) <= 4


def test_parallel_names_roles_and_prefix(project: Path) -> None:
    orch("parallel", "a", "b", check=True)
    r = orch("parallel", "c", "d", "--roles", "bug-hunter,researcher", "--json", check=True)
    runs = json.loads(r.stdout)
    assert [(x["name"], x["role"]) for x in runs] == [
        ("agent3", "bug-hunter"),
        ("agent4", "researcher"),
    ]
    r = orch("parallel", "e", "--prefix", "rev", "--json", check=True)
    assert json.loads(r.stdout)[0]["name"] == "rev1"
    r = orch("parallel", "x", "y", "--roles", "bug-hunter")
    assert r.returncode == 1 and "2 tasks" in r.stderr
    orch("wait", check=True)
    both = orch("output", "agent1", "agent2", check=True).stdout.splitlines()
    assert both[0] == "== agent1 (completed) ==" and both[3] == "== agent2 (completed) =="
    out = orch("output", "agent3", check=True).stdout
    argv = json.loads(out.split("argv=", 1)[1])
    assert argv[argv.index("--allowedTools") + 1].startswith("Read,")
    assert "--append-system-prompt" in argv


def test_resume_and_fork(project: Path) -> None:
    orch("launch", "s", "first", check=True)
    orch("wait", "s", check=True)
    sid = status_json("s")[0]["session_id"]
    orch("resume", "s", "second", check=True)
    orch("wait", "s", check=True)
    runs = status_json(all_=True)
    assert [r["name"] for r in runs] == ["s", "s"]
    assert runs[1]["session_id"] == sid and runs[1]["parent"] == f"s#{runs[0]['run_id']}"
    orch("resume", "s", "third", "--fork", check=True)
    orch("wait", "s-fork", check=True)
    fork = status_json("s-fork")[0]
    assert fork["session_id"] != sid
    argv = json.loads(orch("output", "s-fork", check=True).stdout.split("argv=", 1)[1])
    assert argv[-3:] == ["--resume", sid, "--fork-session"]
    orch("launch", "f2", "from agent", "--from", "s", check=True)
    orch("wait", "f2", check=True)
    assert status_json("f2")[0]["parent"] == "s"


def test_clear_and_archive(project: Path) -> None:
    orch("parallel", "a", "b", check=True)
    orch("wait", check=True)
    orch("launch", "live", "SLEEP=30", check=True)
    assert "archived 2 ended runs" in orch("clear", "--archive", check=True).stdout
    assert [r["name"] for r in status_json()] == ["live"]
    assert {r["name"] for r in status_json(all_=True)} == {"agent1", "agent2", "live"}
    assert "removed 2 ended runs" in orch("clear", check=True).stdout
    assert [r["name"] for r in status_json(all_=True)] == ["live"]


def test_bad_config_is_a_clear_error(project: Path, tmp_path: Path) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text("max_parallel = [oops\n")
    r = orch("launch", "a", "t")
    assert r.returncode == 1 and r.stderr.startswith(f"orch: error: cannot read config {cfg}")
    cfg.write_text("max_parallel = 0\n")
    r = orch("launch", "a", "t")
    assert r.returncode == 1 and "max_parallel must be at least 1" in r.stderr
    cfg.write_text('max_parallel = 2\ndefault_role = "researcher"\n')
    os.environ["ORCH_MAX_PARALLEL"] = "x"
    try:
        r = orch("launch", "a", "t")
        assert r.returncode == 1 and "$ORCH_MAX_PARALLEL: expected int, got 'x'" in r.stderr
    finally:
        del os.environ["ORCH_MAX_PARALLEL"]
    run = json.loads(orch("launch", "a", "t", "--json", check=True).stdout)
    assert run["role"] == "researcher"  # the config's default role
    orch("wait", "a", check=True)


def test_launch_wait_prints_output_and_logs_follow(project: Path) -> None:
    r = orch("launch", "w", "SLEEP=0.5 hi", "--wait", check=True)
    assert r.stdout.startswith("sha256=")
    assert r.stdout == orch("output", "w", check=True).stdout
    orch("launch", "f", "SLEEP=1 follow me", check=True)
    r = orch("logs", "f", "-f", check=True)
    assert r.stdout.splitlines()[-1] == "[completed]"
    assert "[result] sha256=" in r.stdout
    raw = orch("logs", "f", "--raw", check=True).stdout.splitlines()
    assert json.loads(raw[0])["type"] == "system"


def test_a_backend_that_cannot_start_the_agent_fails_the_launch(project: Path) -> None:
    from typer.testing import CliRunner

    from orch_plugins import hookimpl, plugins
    from orch_plugins.backend import Backend
    from orch_plugins.cli import app

    class Broken(Backend):
        name = "broken"

        def launch(self, spec):  # type: ignore[no-untyped-def]
            raise RuntimeError("host says no")

        def is_alive(self, handle):  # type: ignore[no-untyped-def]
            return False

        def cancel(self, handle, grace):  # type: ignore[no-untyped-def]
            pass

    class Plugin:
        @hookimpl
        def orch_register_backends(self, registry):  # type: ignore[no-untyped-def]
            registry.add(Broken)

    p = plugins.Plugins(entry_points=lambda: [])
    p.register(Plugin(), "broken", "test")
    plugins.set_plugins(p)
    r = CliRunner().invoke(app, ["launch", "b", "task", "--backend", "broken"])
    assert r.exit_code == 1
    assert "orch: error: b: launch failed: host says no" in r.output
    assert status_json("b")[0]["status"] == "failed"
    r = CliRunner().invoke(app, ["parallel", "x", "y", "--backend", "broken", "--json"])
    assert r.exit_code == 1 and r.output.count("launch failed: host says no") == 4  # JSON + error


def test_progress_is_recorded_during_a_long_tool_call(project: Path) -> None:
    # The init event and the tool call arrive within the throttle interval; the counts must
    # still reach the store while the agent sits in its tool call.
    orch("launch", "busy", "PAUSE=60", check=True)  # cancelled below: never ends by itself
    run = wait_for(lambda: (r := status_json("busy")[0])["tool_calls"] == 1 and r, timeout=30)
    assert run["status"] == "running" and run["num_turns"] == 1
    orch("cancel", "busy", check=True)


def test_wait_any_timeout_and_cancel_all(project: Path) -> None:
    orch("launch", "quick", "SLEEP=0.3", check=True)
    orch("launch", "long1", "SLEEP=60", check=True)
    orch("launch", "long2", "SLEEP=60", check=True)
    r = orch("wait", "quick", "long1", "--any", check=True)
    assert "quick: completed" in r.stdout and "long1: running" in r.stdout
    r = orch("wait", "long1", "--timeout", "0.5")
    assert r.returncode == 124 and "timed out waiting for: long1" in r.stderr
    r = orch("cancel", "--all", check=True)
    assert sorted(r.stdout.splitlines()) == ["long1: cancelled", "long2: cancelled"]
    assert {x["name"]: x["status"] for x in status_json()} == {
        "quick": "completed",
        "long1": "cancelled",
        "long2": "cancelled",
    }
    assert orch("wait", check=True).stdout == "nothing to wait for\n"


def test_the_launching_claude_code_session_is_recorded(project: Path) -> None:
    os.environ["CLAUDE_CODE_SESSION_ID"] = "11111111-2222-3333-4444-555555555555"
    try:
        run = json.loads(orch("launch", "by", "t", "--json", check=True).stdout)
    finally:
        del os.environ["CLAUDE_CODE_SESSION_ID"]
    assert run["launched_by"] == "11111111-2222-3333-4444-555555555555"
    assert (
        json.loads(orch("launch", "free", "t", "--json", check=True).stdout)["launched_by"] is None
    )
    orch("wait", check=True)


def test_a_task_over_the_limit_is_refused_and_nothing_recorded(project: Path) -> None:
    from orch_plugins.core import MAX_TASK_BYTES

    r = orch("launch", "huge", "-", input=b"x" * (MAX_TASK_BYTES + 1))
    assert r.returncode == 1
    assert (
        r.stderr
        == f"orch: error: the task is {MAX_TASK_BYTES + 1} bytes; the limit is {MAX_TASK_BYTES}\n"
    )
    r = orch("launch", "bad", "-", input=b"\xff\xfe not utf-8")
    assert r.returncode == 1 and "not valid UTF-8" in r.stderr
    assert status_json() == []

"""``orch_agent_ended``: exactly once per run that reaches a final status, whoever notices it.

A test plugin, installed through the entry-point group on the ``orch`` processes' PYTHONPATH
(every process that may fire the event loads it), appends one line per call to a file.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from orch_plugins.store import COMPLETED, FAILED, Store
from tests.helpers import ORCH, handle, orch, pid_gone, status_json, wait_for, write_dist

COUNTER = """
import json, os
from orch_plugins import Backend, hookimpl


class Broken(Backend):
    name = "broken"

    def launch(self, spec):
        raise RuntimeError("host says no")

    def is_alive(self, handle):
        return False

    def cancel(self, handle, grace):
        pass


@hookimpl
def orch_register_backends(registry):
    registry.add(Broken)


@hookimpl
def orch_agent_ended(run):
    line = json.dumps({"run_id": run["run_id"], "name": run["name"], "status": run["status"],
                       "pid": os.getpid()})
    fd = os.open(os.environ["ENDED_LOG"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    os.write(fd, (line + "\\n").encode())
    os.close(fd)
"""


@pytest.fixture
def ended(project: Path, site: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The file the counting plugin appends a line to per ``orch_agent_ended`` call."""
    write_dist(
        site, "ended-counter", {"ended_counter": "ended_counter"}, {"ended_counter": COUNTER}
    )
    log = tmp_path / "ended.jsonl"
    monkeypatch.setenv("ENDED_LOG", str(log))
    return log


def calls(log: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def called(log: Path, name: str) -> dict[str, Any]:
    """The one call for agent ``name`` (waits for it)."""
    return wait_for(lambda: next((c for c in calls(log) if c["name"] == name), None))


def test_every_final_status_fires_once(project: Path, ended: Path) -> None:
    # completed, failed, timed_out: recorded by the supervisor, announced by the process it
    # starts when it ends.
    orch("launch", "ok", "say hi", check=True)
    orch("launch", "bad", "EXIT=3", check=True)
    orch("launch", "slow", "SLEEP=60", "--timeout", "1", check=True)
    orch("launch", "stop", "SLEEP=60", check=True)
    orch("launch", "gone", "SLEEP=60", check=True)
    # failed at launch: the backend refused it (orch launch records and announces it).
    assert orch("launch", "refused", "task", "--backend", "broken").returncode == 1
    wait_for(lambda: all(r["session_id"] for r in status_json("stop", "gone")))
    # cancelled while queued (orch cancel records it) and while running (the supervisor does).
    orch("launch", "q1", "SLEEP=60", "--max-parallel", "1", check=True)
    assert status_json("q1")[0]["status"] == "queued"
    orch("cancel", "stop", "q1", check=True)
    # lost: its supervisor was killed, so a status read records the end and announces it.
    pid = handle(project, "gone")["pid"]
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: pid_gone(pid))
    assert status_json("gone")[0]["status"] == "lost"
    orch("wait", "ok", "bad", "slow", timeout=120)

    expected = {
        "ok": "completed",
        "bad": "failed",
        "slow": "timed_out",
        "stop": "cancelled",
        "q1": "cancelled",
        "refused": "failed",
        "gone": "lost",
    }
    for name, status in expected.items():
        assert called(ended, name)["status"] == status, name
    # More reads, waits and pumps find nothing more to announce.
    orch("status", check=True)
    orch("wait", check=True)
    subprocess.run([*ORCH[:1], "-m", "orch_plugins.admission", str(project / ".orchestrate")])
    time.sleep(1)
    names = Counter(c["name"] for c in calls(ended))
    assert names == Counter(list(expected)), names
    runs = {r["name"]: r for r in status_json()}
    assert sorted(c["run_id"] for c in calls(ended)) == sorted(r["run_id"] for r in runs.values())
    # The status objects the supervisors handed over are gone once announced.
    assert list((project / ".orchestrate" / "events").glob("*")) == []


def test_concurrent_status_reads_announce_each_end_once(project: Path, ended: Path) -> None:
    orch("parallel", *["SLEEP=60"] * 6, "--max-parallel", "6", check=True)
    names = [f"agent{i}" for i in range(1, 7)]
    wait_for(lambda: all(r["session_id"] for r in status_json(*names)))
    pids = [handle(project, n)["pid"] for n in names]
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    for pid in pids:
        wait_for(lambda p=pid: pid_gone(p))
    # Six processes at once, each of which may find the agents lost and claim their ends.
    readers = [
        subprocess.Popen([*ORCH, *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        for args in [["status"]] * 4 + [["wait"]] * 2
    ]
    # wait: 1 when the agents it waited for did not complete, 0 when they had already ended.
    for proc, codes in zip(readers, [(0,)] * 4 + [(0, 1)] * 2):
        assert proc.wait(timeout=120) in codes
        assert proc.stderr is not None and proc.stderr.read() == b""
    assert all(r["status"] == "lost" for r in status_json(*names))
    wait_for(lambda: len(calls(ended)) >= 6)
    time.sleep(0.5)
    assert sorted(c["name"] for c in calls(ended)) == names
    assert len({c["pid"] for c in calls(ended)}) >= 1


def test_an_end_left_unannounced_is_announced_by_a_later_read(project: Path, ended: Path) -> None:
    """An end whose announcing process never ran: a plain status read announces it once it
    has waited SETTLE seconds, and not before (a plain read does not load the plugins)."""
    from orch_plugins.events import SETTLE

    store = Store(project / ".orchestrate")
    with store.transaction():
        old = store.insert_run(name="old", task="t", backend="subprocess", cwd="/")
        new = store.insert_run(name="new", task="t", backend="subprocess", cwd="/")
    store.finish(old["run_id"], COMPLETED, ended_at=time.time() - SETTLE - 1)
    store.finish(new["run_id"], FAILED)
    orch("status", check=True)
    assert [c["name"] for c in calls(ended)] == ["old"]
    # The pump process an ending supervisor starts announces every pending end.
    subprocess.run([*ORCH[:1], "-m", "orch_plugins.admission", str(store.state_dir)], check=True)
    assert [c["name"] for c in calls(ended)] == ["old", "new"]


@pytest.mark.parametrize("version", [1, 2])
def test_an_older_store_is_migrated_without_announcing_history(
    tmp_path: Path, version: int
) -> None:
    from orch_plugins import store as store_module

    state = tmp_path / "state"
    state.mkdir()
    con = sqlite3.connect(state / "state.db")
    # The runs table as that schema had it: without the columns added after it.
    added = store_module._ADDED_COLUMNS[{1: 0, 2: 2}[version] :]
    schema = store_module._SCHEMA
    for column, declaration, _ in added:
        schema = schema.replace(f",\n    {column} {declaration}", "")
        assert f"\n    {column} " not in schema  # the column itself (base is in base_branch)
    con.executescript(schema)
    con.execute(
        "INSERT INTO runs (name, status, task, backend, cwd, created_at, ended_at, run_dir, "
        "output_path, log_path) VALUES ('done', 'completed', 't', 'subprocess', '/', 1, 2, "
        "'', '', ''), ('busy', 'running', 't', 'subprocess', '/', 1, NULL, '', '', '')"
    )
    con.execute(f"PRAGMA user_version={version}")
    con.commit()
    con.close()
    store = Store(state)
    assert store.conn.execute("PRAGMA user_version").fetchone()[0] == store_module.SCHEMA_VERSION
    assert [(r["name"], r["end_announced"]) for r in store.runs()] == [("done", 1), ("busy", 0)]
    assert store.runs()[0]["claude_pid"] is None
    assert not store.unannounced()
    store.finish(store.require("busy")["run_id"], COMPLETED)
    assert [r["name"] for r in store.claim_ended()] == ["busy"]
    assert store.claim_ended() == []


def test_no_built_in_plugin_listens_to_events() -> None:
    """``python -m orch_plugins.events`` loads only third-party plugins: were a built-in to
    implement an event hook, it would never hear the ends that process announces."""
    import importlib

    from orch_plugins.plugins import BUILTINS

    for _, module in BUILTINS:
        mod = importlib.import_module(module)
        for hook in ("orch_agent_launched", "orch_agent_ended"):
            assert not hasattr(mod, hook), f"{module} implements {hook}: see events.main"


def test_a_run_nobody_listens_to_costs_nothing_at_its_end(project: Path) -> None:
    """Without a plugin implementing orch_agent_ended when the run starts, its supervisor
    hands nothing over and starts no announcing process."""
    orch("launch", "quiet", "say hi", check=True)
    orch("wait", "quiet", check=True)
    [run] = status_json("quiet")
    con = sqlite3.connect(project / ".orchestrate" / "state.db")
    [state] = con.execute(
        "SELECT end_announced FROM runs WHERE run_id=?", (run["run_id"],)
    ).fetchone()
    con.close()
    assert state == 2  # END_UNHEARD
    assert not (project / ".orchestrate" / "events").exists()

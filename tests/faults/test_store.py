"""Stores of other releases. One written by the release before the last schema change is read
(migrated) by this one with nothing lost; one from a newer release is refused with one clear
line and never written, not even a byte of its header."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import sqlite3
import subprocess
import sys
import tarfile
from pathlib import Path

from orch_plugins.store import SCHEMA_VERSION
from tests.faults.kit import Case
from tests.faults.make_old_store import PLACE
from tests.faults.test_hooks import fire
from tests.helpers import FAKE_CLAUDE

HERE = Path(__file__).resolve().parent
#: Fields of a run that must read the same after the migration (the ones both releases have).
KEPT = ("name", "task", "session_id", "cost_usd", "num_turns", "error", "run_id", "exit_code",
        "input_tokens", "output_tokens", "created_at", "ended_at", "output_path")  # fmt: skip


def test_a_store_of_the_previous_release_is_read(project: Path, tmp_path: Path) -> None:
    # Made by make_old_store.py with the code of the commit before the last schema change.
    shutil.rmtree(PLACE, ignore_errors=True)
    PLACE.mkdir()
    try:
        with tarfile.open(HERE / "data" / "store-schema5.tar.gz") as tar:
            tar.extractall(PLACE, filter="data")
        shutil.copy(FAKE_CLAUDE, PLACE / "fake_claude.py")  # the claude its queued run names
        (PLACE / "store").rename(PLACE / "proj")
        old = {r["name"]: r for r in json.loads((PLACE / "proj" / "expected.json").read_text())}
        db = PLACE / "proj" / ".orchestrate" / "state.db"
        assert sqlite3.connect(db).execute("PRAGMA user_version").fetchone()[0] == 5
        case = Case(PLACE, "proj")
        runs = {r["name"]: r for r in case.settle()}
        assert sqlite3.connect(db).execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert set(runs) == set(old)
        for name, before in old.items():
            after = runs[name]
            for key in KEPT if name not in ("busy", "waiting") else KEPT[:2]:
                # (those two go on under the new release)
                assert after[key] == before[key], (name, key, before[key], after[key])
        assert runs["done"]["status"] == "completed" and runs["broke"]["status"] == "failed"
        assert runs["stopped"]["status"] == "cancelled"
        # The run that was running: its supervisor is gone, so lost (never "running").
        assert runs["busy"]["status"] == "lost", runs["busy"]
        # The one queued behind it is started by the new release and completes.
        assert runs["waiting"]["status"] == "completed", runs["waiting"]
        assert case.orch("output", "done").stdout.startswith("sha256=")
        cost = json.loads(case.orch("cost", "--json", "--all").stdout)
        assert cost["total"]["cost_usd"] == round(2 * old["done"]["cost_usd"], 6), cost
        # The session the old hook recorded is still known, and its next prompt hears of
        # exactly the ends that came after it was first seen (the migration numbered them).
        sid = "11111111-2222-4333-8444-555555555555"
        sessions = case.orch("sessions", "--json")
        assert sid in sessions.stdout, sessions
        text, rc = fire(case, sid, PLACE / "transcript.jsonl", None)
        assert rc == 0 and sorted(re.findall(r"^- (\w+): ", text, re.M)) == ["busy", "waiting"]
        # And the migrated store takes new agents.
        assert case.orch("launch", "new", "after the upgrade").returncode == 0
        assert {r["name"]: r["status"] for r in case.settle()}["new"] == "completed"
    finally:
        shutil.rmtree(PLACE, ignore_errors=True)


def digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_a_store_of_a_newer_release_is_refused_untouched(project: Path, tmp_path: Path) -> None:
    case = Case(tmp_path, "newer")
    assert case.orch("launch", "a", "made now", "--wait").returncode == 0
    db = case.state_dir / "state.db"
    con = sqlite3.connect(db)
    # A newer release: a higher schema version, a table this one does not know, and (say) a
    # journal mode of its own, so even setting WAL mode would rewrite the header.
    con.execute("PRAGMA journal_mode=DELETE")
    con.execute("CREATE TABLE future (x)")
    con.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    con.close()
    before = digest(case.state_dir)
    for args in (["status"], ["status", "--json"], ["launch", "b", "task"], ["cost"], ["wait"]):
        out = case.orch(*args)
        assert out.returncode == 1, (args, out)
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("orch: error: "), (args, out.stderr)
        assert f"newer orch-plugins (schema {SCHEMA_VERSION + 1};" in lines[0], lines
    # A hook in a session of that project exits 0, quietly, and writes nothing to the store.
    payload = json.dumps({"session_id": "abc-1", "prompt": "hi", "cwd": str(case.root)})
    hook = subprocess.run(
        [sys.executable, "-m", "orch_plugins.claude_hooks", "UserPromptSubmit"],
        input=payload, env=case.env(), capture_output=True, text=True,
    )  # fmt: skip
    assert hook.returncode == 0 and hook.stdout == "", hook
    after = digest(case.state_dir)
    after.pop("hooks.log", None)  # the hook says why it did nothing
    assert after == before

"""A full disk under the state directory (a small tmpfs mounted for the test): launches fail
with one clear line, running agents end with what they could record (never left ``running``),
the store stays readable, nothing already recorded is lost, and all is well once there is room
again."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults.kit import Case, leftovers

FULL = ("No space left", "disk is full", "is full")


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 2 MB tmpfs (as root; the suite runs as root in CI). Fails, never skips, when it
    cannot be mounted: the case is then not tested at all."""
    where = tmp_path / "fs"
    where.mkdir()
    out = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m,mode=0755", "tmpfs", str(where)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert out.returncode == 0, f"cannot mount a small tmpfs (root needed): {out.stderr}"
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def fill(where: Path) -> Path:
    """Fill the file system up: a file grown until the kernel says no space is left."""
    filler = where / "filler"
    with open(filler, "wb", buffering=0) as fh:
        try:
            while True:
                fh.write(b"\0" * 4096)
        except OSError:
            pass
    return filler


def test_a_full_disk(project: Path, small_fs: Path) -> None:
    case = Case(small_fs, "state")
    before = case.orch("launch", "before", "done before the disk filled", "--wait")
    assert before.returncode == 0, before.stderr
    [done] = case.runs()
    kept = Path(done["output_path"]).read_bytes()
    gate = small_fs.parent / "gate"  # outside the full file system
    held = {
        "mid-turn": f"HOLD={gate}",  # claude is mid-turn (an event logged) when the disk fills
        "not-started": f"GATE={gate}",  # claude has printed nothing yet
        "streaming": f"GATE={gate} STREAM=20",  # claude streams its answer into a full disk
    }
    for name, task in held.items():
        assert case.orch("launch", name, task).returncode == 0
    time.sleep(1.0)
    filler = fill(small_fs)

    out = case.orch("launch", "refused", "no room for this one")
    assert out.returncode == 1, out
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("orch: error: "), out.stderr
    assert any(word in lines[0] for word in FULL), lines
    # The store stays readable while the disk is full.
    runs = {r["name"]: r for r in case.runs()}
    assert "refused" not in runs and runs["before"]["status"] == "completed"

    gate.touch()  # the held agents go on into the full disk
    runs = {r["name"]: r for r in case.settle(timeout=90)}
    for name in held:
        run = runs[name]
        # Ended, with what could be recorded: a completed run keeps claude's result, any
        # other says the disk was full (not "killed").
        if run["status"] != "completed" or not Path(run["output_path"]).exists():
            assert any(word in (run["error"] or "") for word in FULL), (name, run["error"])
        assert not leftovers(run), name
    # Nothing recorded before is lost.
    assert runs["before"]["status"] == "completed"
    assert Path(runs["before"]["output_path"]).read_bytes() == kept
    cost = json.loads(case.orch("cost", "--json", "--all").stdout)
    assert cost["total"]["cost_usd"] >= done["cost_usd"]

    filler.unlink()  # room again: the store is whole and takes new agents
    db = sqlite3.connect(case.state_dir / "state.db")
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert case.orch("launch", "after", "room again", "--wait").returncode == 0
    assert {r["name"]: r["status"] for r in case.runs()}["after"] == "completed"

"""Make ``data/store-schema5.tar.gz``: a real store written by the release before the last
schema change, for ``test_store.py``. Run by hand (the result is committed)::

    python tests/faults/make_old_store.py [COMMIT]

COMMIT (default :data:`OLD_COMMIT`, the last commit with ``SCHEMA_VERSION = 5``) is checked out
with ``git worktree add`` and its own ``orch`` makes the store with the fake claude, at
:data:`PLACE` (the store holds absolute paths: the test puts it back there). Committed rather
than made at test time because a CI checkout may lack the history (shallow clones) and the old
code's dependencies may not install any more; this script says exactly how it was made.

What it holds: a completed run (cost, tokens, output), a failed one, a cancelled one, a session
recorded by the old hook, a run ``running`` when the store was copied (its supervisor gone
since: the new release must find it lost), and a run ``queued`` behind it (the new release must
start it and see it complete), and ``expected.json``: the old ``orch status --json --all``.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tarfile
import time
from pathlib import Path

OLD_COMMIT = "576396d"
PLACE = Path("/tmp/orch-faults-schema5")
HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent


def main() -> None:
    commit = sys.argv[1] if len(sys.argv) > 1 else OLD_COMMIT
    old = Path("/tmp/orch-old-code")
    git = ["git", "-C", str(ROOT), "worktree"]
    subprocess.run([*git, "remove", "--force", str(old)])
    subprocess.run([*git, "add", "--detach", str(old), commit], check=True)
    shutil.rmtree(PLACE, ignore_errors=True)
    proj, home = PLACE / "proj", PLACE / "home"
    proj.mkdir(parents=True)
    home.mkdir()
    shutil.copy(ROOT / "tests" / "fake_claude.py", PLACE / "fake_claude.py")
    state = proj / ".orchestrate"
    env = dict(
        os.environ,
        PYTHONPATH=str(old / "src"),
        HOME=str(home),
        ORCH_STATE_DIR=str(state),
        ORCH_CONFIG=str(PLACE / "config.toml"),
        ORCH_CLAUDE_BIN=str(PLACE / "fake_claude.py"),
    )

    def orch(*args: str, rc: int = 0) -> str:
        out = subprocess.run(
            [sys.executable, "-m", "orch_plugins.cli", *args],
            env=env, cwd=proj, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert out.returncode == rc, (args, out.stderr)
        return out.stdout

    orch("launch", "done", "old answer one", "--wait")
    orch("launch", "broke", "TASKFAIL", "--wait", rc=1)
    orch("launch", "stopped", f"GATE={PLACE}/never")
    orch("cancel", "stopped")
    hook = {"session_id": "11111111-2222-4333-8444-555555555555", "cwd": str(proj),
            "source": "startup", "transcript_path": "/nonexistent.jsonl"}  # fmt: skip
    subprocess.run(
        [sys.executable, "-m", "orch_plugins.claude_hooks", "SessionStart"],
        env=env, cwd=proj, input=json.dumps(hook), text=True, check=True,
    )  # fmt: skip
    orch("launch", "busy", f"GATE={PLACE}/gate", "--max-parallel", "1")
    orch("launch", "waiting", "queued answer", "--max-parallel", "1")
    deadline = time.monotonic() + 30
    while json.loads(orch("status", "--json", "busy"))[0]["session_id"] is None:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    expected = orch("status", "--json", "--all")
    statuses = {r["name"]: r["status"] for r in json.loads(expected)}
    assert statuses == {"done": "completed", "broke": "failed", "stopped": "cancelled",
                        "busy": "running", "waiting": "queued"}, statuses  # fmt: skip
    # A consistent copy of the store as it is now, and the run directories.
    copy = PLACE / "copy"
    shutil.copytree(state, copy / ".orchestrate", ignore=shutil.ignore_patterns("state.db*"))
    src, dst = sqlite3.connect(state / "state.db"), sqlite3.connect(copy / ".orchestrate/state.db")
    src.backup(dst)
    dst.execute("PRAGMA journal_mode=DELETE")  # one file, no -wal beside it
    src.close()
    dst.close()
    (copy / "expected.json").write_text(expected)
    orch("cancel", "--all")
    out = HERE / "data" / "store-schema5.tar.gz"
    with tarfile.open(out, "w:gz") as tar:
        tar.add(copy, arcname="store")
    print(f"{out}: {out.stat().st_size} bytes, made by {commit}")
    subprocess.run([*git, "remove", "--force", str(old)], check=True)


if __name__ == "__main__":
    main()

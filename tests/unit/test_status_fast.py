"""``orch status --json`` from SQLite (issue 17): the same values as the status objects built in
Python, and the CLI answers it without loading typer when nothing live needs checking."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from orch_plugins.store import Store, public
from tests.helpers import orch, status_json


def seed(store: Store) -> None:
    """Runs with every kind of value the status object converts."""
    now = time.time()
    a = store.insert_run(name="a", task='ünï "q" \\ task\n', backend="subprocess", cwd="/tmp")
    store.finish(
        a["run_id"],
        "completed",
        exit_code=0,
        cost_usd=0.0123,
        num_turns=3,
        usage=json.dumps({"input_tokens": 12, "output_tokens": 5}),
        models=json.dumps({"claude-x": {"cost_usd": 0.0123, "input_tokens": 12}}),
        changes=json.dumps({"files": 2, "branch": "orch/a", "dirty": False}),
        ended_at=now + 0.999999,
    )
    b = store.insert_run(name="b", task="t", backend="tmux", cwd="/tmp", timeout=4.0)
    store.finish(b["run_id"], "failed", error="boom", usage="not json", models="{}", changes="[1]")
    store.update(b["run_id"], started_at=now - 10.5, last_activity=now - 1.25)
    c = store.insert_run(name="a", task="again", backend="subprocess", cwd="/tmp")
    store.finish(c["run_id"], "cancelled", error="cancelled", models="nope")
    d = store.insert_run(name="old", task="archived", backend="subprocess", cwd="/tmp")
    store.finish(d["run_id"], "lost")
    store.archive([d["run_id"]])


def status_reporting_typer() -> subprocess.CompletedProcess[str]:
    """``orch status --json`` as a process that says on stderr whether it loaded typer."""
    code = (
        "import atexit, sys; sys.argv = ['orch', 'status', '--json']\n"
        "atexit.register(lambda: print('typer' in sys.modules, file=sys.stderr))\n"
        "from orch_plugins.cli import main\n"
        "main()\n"
    )
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)


def test_the_sql_status_objects_equal_the_python_ones(project: Path) -> None:
    store = Store(project / ".orchestrate")
    seed(store)
    for kw in ({}, {"include_archived": True, "latest_only": False}):
        assert json.loads(store.status_json(**kw)) == [public(r) for r in store.runs(**kw)]
    assert [r["name"] for r in json.loads(store.status_json())] == ["b", "a"]
    store.close()


def test_status_json_is_answered_without_typer_unless_an_agent_is_live(project: Path) -> None:
    store = Store(project / ".orchestrate")
    seed(store)
    expected = [public(r) for r in store.runs()]
    store.close()
    proc = status_reporting_typer()
    assert json.loads(proc.stdout) == expected
    assert proc.stderr.strip() == "False"
    # --all, through the same path, and the full command agrees.
    assert status_json(all_=True) == json.loads(orch("status", "--json", "-a", check=True).stdout)
    # A live agent is checked by the full status read.
    gate = project / "gate"
    orch("launch", "live", f"GATE={gate} wait", check=True)
    proc = status_reporting_typer()
    assert [r["status"] for r in json.loads(proc.stdout)] == ["failed", "cancelled", "running"]
    assert proc.stderr.strip() == "True"  # the live agent was checked by the full command
    gate.touch()
    orch("wait", "live", "--timeout", "30", check=True, timeout=40)

"""The typed run and the launch request: checked once, handle decoded once, API at the root."""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from orch_plugins.errors import OrchError
from orch_plugins.model import MAX_TASK_BYTES, LaunchRequest
from orch_plugins.store import Store
from tests.helpers import orch, status_json


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"name": "-bad"}, "invalid agent name '-bad'"),
        ({"task": "  \n"}, "the task is empty"),
        ({"task": "x" * (MAX_TASK_BYTES + 1)}, f"the limit is {MAX_TASK_BYTES}"),
        ({"task": "half a pair \ud800"}, "the task is not valid UTF-8"),
        ({"timeout": 0}, "--timeout must be a positive number of seconds"),
        ({"timeout": float("nan")}, "--timeout must be a positive number of seconds"),
        ({"retries": -1}, "--retries must be 0 or more"),
        ({"max_parallel": 0}, "--max-parallel must be at least 1"),
        ({"cwd": "/no/such/dir"}, "working directory '/no/such/dir' does not exist"),
    ],
)
def test_a_request_is_checked_when_built(fields: dict[str, object], message: str) -> None:
    base: dict[str, object] = {"name": "a1", "task": "do it"}
    with pytest.raises(OrchError, match=message.replace("(", r"\(")):
        LaunchRequest(**{**base, **fields})  # type: ignore[arg-type]


def test_a_request_is_frozen_and_its_cwd_absolute(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    request = LaunchRequest("a1", "t", cwd=str(tmp_path / "sub" / ".." / "sub"))
    assert request.cwd == str((tmp_path / "sub").resolve())
    with pytest.raises(dataclasses.FrozenInstanceError):
        request.name = "b"  # type: ignore[misc]
    # A copy with other fields is checked again.
    with pytest.raises(OrchError, match="the task is empty"):
        dataclasses.replace(request, task="")


def test_the_store_decodes_a_handle_once_and_keeps_the_column_json(tmp_path: Path) -> None:
    store = Store(tmp_path / "state")
    with store.transaction():
        run = store.insert_run(name="a1", task="t", backend="subprocess", cwd="/")
    assert run["handle"] is None
    store.update(run["run_id"], handle={"pid": 42, "start_time": 7})
    assert store.get_run(run["run_id"])["handle"] == {"pid": 42, "start_time": 7}
    assert store.latest("a1")["handle"] == {"pid": 42, "start_time": 7}  # type: ignore[index]
    assert [r["handle"] for r in store.runs()] == [{"pid": 42, "start_time": 7}]
    # The schema is unchanged: the column holds JSON text, as older versions wrote it.
    con = sqlite3.connect(store.db_path)
    [raw] = con.execute("SELECT handle FROM runs").fetchone()
    assert json.loads(raw) == {"pid": 42, "start_time": 7}
    # A handle that is not a JSON object reads as none, never as a crash.
    con.execute("UPDATE runs SET handle='not json'")
    con.commit()
    assert store.get_run(run["run_id"])["handle"] is None


def test_parallel_with_one_bad_task_records_none(project: Path) -> None:
    r = orch("parallel", "a fine task", "   ")
    assert r.returncode == 1 and r.stderr == "orch: error: the task is empty\n", r.stderr
    assert status_json() == []


def test_the_plugin_api_comes_from_the_package_root_lazily() -> None:
    code = (
        "import sys, orch_plugins\n"
        "assert 'pluggy' not in sys.modules and 'typing' not in sys.modules\n"
        "from orch_plugins import (Backend, BackendRegistry, Handle, LaunchRequest, LaunchSpec,"
        " OrchError, Role, RoleRegistry, Run, hookimpl, hookspec)\n"
        "from orch_plugins.model import Run as R\n"
        "assert Run is R and callable(hookimpl)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    with pytest.raises(AttributeError):
        import orch_plugins

        orch_plugins.NoSuchThing  # noqa: B018


def test_an_interactive_agents_whole_command_line_is_in_its_spec(project: Path) -> None:
    """claude.py builds it at launch (hooks in --settings, the task after --); the supervisor
    runs it as it is."""
    from orch_plugins.core import Orchestrator

    orch_ = Orchestrator()
    task = "look at 'this' $(not a shell) --flag"
    run = orch_.launch(
        LaunchRequest("i1", task, backend="tmux", options={"interactive": True}), start=False
    )
    argv = json.loads(Path(run["run_dir"], "spec.json").read_text())["argv"]
    assert argv[-2:] == ["--", task]
    settings = json.loads(argv[argv.index("--settings") + 1])
    stop = settings["hooks"]["Stop"][0]["hooks"]
    assert str(Path(run["run_dir"], "stop.json")) in stop[-1]["command"]
    assert "-p" not in argv
    orch_.cancel(["i1"])

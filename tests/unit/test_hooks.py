"""The Claude Code hooks: session records, agent attachment, the finished-agents notice."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from orch_plugins import claude_hooks as hooks
from orch_plugins.store import COMPLETED, FAILED, Store

ROOT = Path(__file__).resolve().parents[2]
SHIM = ROOT / "claude" / "hooks" / "orch_hook.py"
SRC = ROOT / "src"


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    """A project with a state directory, as Claude Code's hook environment shows it."""
    project = tmp_path / "proj"
    (project / "sub").mkdir(parents=True)
    state = project / ".orchestrate"
    Store(state).close()
    for var in ("ORCH_STATE_DIR", "ORCH_RUN_ID", "ORCH_AGENT", "CLAUDE_ENV_FILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg-state"))
    monkeypatch.setenv("CLAUDE_PROJECT_DIR", str(project))
    sid = str(uuid.uuid4())
    monkeypatch.setenv("CLAUDE_CODE_SESSION_ID", sid)
    return {"project": project, "state": state, "sid": sid, "tmp": tmp_path}


def fire(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    event: str,
    payload: dict,
) -> str:
    """Run one hook in-process the way the shim does; return what it printed."""
    data = json.dumps({"hook_event_name": event, **payload}).encode()
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
    assert hooks.main([event]) == 0
    return capsys.readouterr().out


def start_payload(env: dict, sid: str | None = None, source: str = "startup") -> dict:
    sid = sid or env["sid"]
    return {
        "session_id": sid,
        "cwd": str(env["project"]),
        "source": source,
        "transcript_path": f"/t/{sid}.jsonl",
    }


def ended_run(store: Store, name: str, status: str = COMPLETED, output: str | None = None) -> dict:
    with store.transaction():
        run = store.insert_run(name=name, task=f"task {name}", backend="subprocess", cwd="/")
    Path(run["run_dir"]).mkdir(parents=True, exist_ok=True)
    if output is not None:
        Path(run["output_path"]).write_text(output)
    store.finish(
        run["run_id"], status, error="API error 529: overloaded" if status == FAILED else None
    )
    return store.get_run(run["run_id"])


def test_session_start_records_the_session(env, monkeypatch, capsys) -> None:
    assert fire(monkeypatch, capsys, "SessionStart", start_payload(env)) == ""
    session = Store(env["state"]).session(env["sid"])
    assert session["cwd"] == str(env["project"])
    assert session["source"] == "startup"
    assert session["transcript_path"] == f"/t/{env['sid']}.jsonl"
    assert session["run_id"] is None and session["last_event"] == "SessionStart"


def test_state_dir_is_found_above_the_project_dir_and_never_created(
    env, monkeypatch, capsys, tmp_path
) -> None:
    monkeypatch.setenv("CLAUDE_PROJECT_DIR", str(env["project"] / "sub"))
    fire(monkeypatch, capsys, "SessionStart", start_payload(env))
    assert Store(env["state"]).session(env["sid"]) is not None

    elsewhere = tmp_path / "other"
    elsewhere.mkdir()
    monkeypatch.setenv("CLAUDE_PROJECT_DIR", str(elsewhere))
    for event in hooks.HANDLERS:
        fire(monkeypatch, capsys, event, start_payload(env, sid=str(uuid.uuid4())))
    assert list(elsewhere.iterdir()) == []
    assert not (tmp_path / "xdg-state").exists()  # no error was logged either


def agent_run(env: dict, monkeypatch: pytest.MonkeyPatch, session_id: str | None = None) -> dict:
    store = Store(env["state"])
    with store.transaction():
        run = store.insert_run(name="a1", task="t", backend="subprocess", cwd="/")
    store.update(run["run_id"], session_id=session_id)
    monkeypatch.setenv("ORCH_RUN_ID", str(run["run_id"]))
    monkeypatch.setenv("ORCH_AGENT", "a1")
    monkeypatch.setenv("ORCH_STATE_DIR", str(env["state"]))
    monkeypatch.setenv("CLAUDE_PROJECT_DIR", "/nonexistent")  # ORCH_STATE_DIR wins
    return run


def test_an_agents_session_is_attached_to_its_run(env, monkeypatch, capsys) -> None:
    run = agent_run(env, monkeypatch)
    fire(monkeypatch, capsys, "SessionStart", start_payload(env))
    store = Store(env["state"])
    assert store.get_run(run["run_id"])["session_id"] == env["sid"]
    assert store.session(env["sid"])["run_id"] == run["run_id"]


def test_a_forked_agent_is_attached_at_its_first_prompt(env, monkeypatch, capsys) -> None:
    store = Store(env["state"])
    parent = env["sid"]
    fire(monkeypatch, capsys, "SessionStart", start_payload(env))  # the orchestrator
    run = agent_run(env, monkeypatch, session_id=None)
    # Claude Code 2.1.197 reports the parent's id at SessionStart of a --fork-session resume.
    fire(monkeypatch, capsys, "SessionStart", start_payload(env, source="resume"))
    assert store.session(parent)["run_id"] is None
    assert store.session(parent)["source"] == "startup"
    assert store.get_run(run["run_id"])["session_id"] is None

    fork = str(uuid.uuid4())
    monkeypatch.setenv("CLAUDE_CODE_SESSION_ID", fork)
    out = fire(
        monkeypatch, capsys, "UserPromptSubmit", {**start_payload(env, sid=fork), "prompt": "p"}
    )

    assert out == ""  # agents get no notices
    assert store.get_run(run["run_id"])["session_id"] == fork
    assert store.session(fork)["run_id"] == run["run_id"]
    assert store.session(parent)["run_id"] is None


def test_stop_and_session_end_record_the_end(env, monkeypatch, capsys) -> None:
    fire(monkeypatch, capsys, "SessionStart", start_payload(env))
    fire(monkeypatch, capsys, "Stop", start_payload(env))
    store = Store(env["state"])
    session = store.session(env["sid"])
    assert session["last_event"] == "Stop" and session["ended_at"] is None
    fire(monkeypatch, capsys, "SessionEnd", {**start_payload(env), "reason": "other"})
    session = store.session(env["sid"])
    assert session["last_event"] == "SessionEnd" and session["ended_at"] is not None


def test_session_start_puts_orch_on_the_path(env, monkeypatch, capsys, tmp_path) -> None:
    bindir = tmp_path / "it's bin"
    bindir.mkdir()
    (bindir / "orch").write_text("#!/bin/sh\n")
    monkeypatch.setattr(sys, "executable", str(bindir / "python3"))
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    env_file = tmp_path / "env.sh"
    monkeypatch.setenv("CLAUDE_ENV_FILE", str(env_file))

    fire(monkeypatch, capsys, "SessionStart", start_payload(env))

    line = env_file.read_text()
    out = subprocess.run(
        ["sh", "-c", f'{line}\nprintf %s "$PATH"'], capture_output=True, text=True, check=True
    )
    assert out.stdout == f"/usr/bin:/bin:{bindir}"  # appended: the user's python still wins
    monkeypatch.setenv("PATH", f"/usr/bin:{bindir}")
    env_file.unlink()
    fire(monkeypatch, capsys, "SessionStart", start_payload(env))
    assert not env_file.exists()  # already reachable: nothing written


def notice_of(out: str) -> str:
    data = json.loads(out)
    assert data["hookSpecificOutput"]["hookEventName"] == "UserPromptSubmit"
    return data["hookSpecificOutput"]["additionalContext"]


def test_notice_lists_agents_that_ended_since_the_previous_prompt(env, monkeypatch, capsys) -> None:
    store = Store(env["state"])
    ended_run(store, "before", output="old news")
    time.sleep(0.01)
    fire(monkeypatch, capsys, "SessionStart", start_payload(env))
    prompt = {**start_payload(env), "prompt": "hello"}
    assert fire(monkeypatch, capsys, "UserPromptSubmit", prompt) == ""  # nothing yet

    good = ended_run(store, "good", output="\n  Found 3 bugs   in parser.py\nmore detail\n")
    bad = ended_run(store, "bad", status=FAILED)
    notice = notice_of(fire(monkeypatch, capsys, "UserPromptSubmit", prompt))

    lines = notice.splitlines()
    assert lines[:-1] == [
        "orch: 2 agents ended since your previous prompt:",
        f"- good: completed — Found 3 bugs in parser.py (output: {good['output_path']})",
        f"- bad: failed — API error 529: overloaded (output: {bad['output_path']})",
    ]
    # Tagged, so that a hook killed after printing is known to have delivered it.
    assert re.fullmatch(
        r"Read a full result with `orch output NAME`; see all agents with `orch status`\. "
        r"\(notice [0-9a-f]{12}\)",
        lines[-1],
    )
    assert "before" not in notice  # ended before the session started
    assert fire(monkeypatch, capsys, "UserPromptSubmit", prompt) == ""  # told once
    assert store.session(env["sid"])["notified_seq"] == store.get_run(bad["run_id"])["end_seq"]


def test_the_person_sees_one_line_on_screen(env, monkeypatch, capsys) -> None:
    """The notice goes to the model; a one-line summary (systemMessage) to the screen."""
    store = Store(env["state"])
    fire(monkeypatch, capsys, "SessionStart", start_payload(env))
    ended_run(store, "parser", output="Found 3 bugs")
    ended_run(store, "perf", status=FAILED)
    out = json.loads(fire(monkeypatch, capsys, "UserPromptSubmit", start_payload(env)))
    screen = "orch: 2 agents ended: parser completed, perf failed (orch status)"
    assert out["systemMessage"] == screen
    assert "- parser: completed — Found 3 bugs" in out["hookSpecificOutput"]["additionalContext"]

    for i in range(7):
        ended_run(store, f"many{i}", output="x")
    out = json.loads(fire(monkeypatch, capsys, "UserPromptSubmit", start_payload(env)))
    assert out["systemMessage"] == (
        "orch: 7 agents ended: many0 completed, many1 completed, many2 completed, "
        "many3 completed, many4 completed, 2 more (orch status)"
    )
    assert "\n" not in out["systemMessage"]


def test_agents_get_no_notice(env, monkeypatch, capsys) -> None:
    store = Store(env["state"])
    fire(monkeypatch, capsys, "SessionStart", start_payload(env))
    ended_run(store, "done", output="x")
    other = str(uuid.uuid4())
    monkeypatch.setenv("ORCH_RUN_ID", "1")
    assert fire(monkeypatch, capsys, "UserPromptSubmit", start_payload(env, sid=other)) == ""
    monkeypatch.delenv("ORCH_RUN_ID")
    assert "done: completed" in notice_of(
        fire(monkeypatch, capsys, "UserPromptSubmit", start_payload(env))
    )


def test_a_late_commit_within_the_overlap_is_still_reported_once(env, monkeypatch, capsys) -> None:
    store = Store(env["state"])
    fire(monkeypatch, capsys, "SessionStart", start_payload(env))
    first = ended_run(store, "first", output="1")
    assert "first" in notice_of(fire(monkeypatch, capsys, "UserPromptSubmit", start_payload(env)))
    # A run whose end was stamped before the watermark but committed after the notice.
    late = ended_run(store, "late", output="2")
    first_seen = store.session(env["sid"])["first_seen"]
    store.update(late["run_id"], ended_at=(first_seen + first["ended_at"]) / 2)
    notice = notice_of(fire(monkeypatch, capsys, "UserPromptSubmit", start_payload(env)))
    assert "late: completed" in notice and "first" not in notice
    assert fire(monkeypatch, capsys, "UserPromptSubmit", start_payload(env)) == ""


def test_with_the_ended_marker_nothing_new_does_not_open_the_store(
    env, monkeypatch, capsys
) -> None:
    store = Store(env["state"])
    fire(monkeypatch, capsys, "SessionStart", start_payload(env))
    marker = env["state"] / hooks.ENDED_MARKER
    marker.touch()
    run = ended_run(store, "a", output="x")
    with open(marker, "a") as fh:  # what the store does once a run's end is committed
        fh.write(f"{run['run_id']}\n")
    assert "a: completed" in notice_of(
        fire(monkeypatch, capsys, "UserPromptSubmit", start_payload(env))
    )

    def boom(_sd: str) -> None:
        raise AssertionError("the store was opened although nothing changed")

    monkeypatch.setattr(hooks, "_open_store", boom)
    assert fire(monkeypatch, capsys, "UserPromptSubmit", start_payload(env)) == ""
    assert not (Path(os.environ["XDG_STATE_HOME"])).exists()
    assert not (env["state"] / hooks.LOG_NAME).exists()


def test_internal_errors_are_logged_and_exit_zero(env, monkeypatch, capsys) -> None:
    (env["state"] / "state.db").write_bytes(b"this is not a database" * 100)
    assert fire(monkeypatch, capsys, "SessionStart", start_payload(env)) == ""
    assert hooks.main(["NoSuchEvent"]) == 0
    log = (env["state"] / hooks.LOG_NAME).read_text()
    assert "SessionStart" in log and "corrupt or unreadable" in log
    assert re.search(r"NoSuchEvent pid=\d+ ValueError: unknown hook event", log)


def run_shim(args: list[str], payload: dict, env: dict, python: str = sys.executable):
    proc_env = {
        "PATH": "/usr/bin:/bin",
        "HOME": os.environ["HOME"],
        "XDG_STATE_HOME": os.environ["XDG_STATE_HOME"],
        "CLAUDE_PROJECT_DIR": str(env["project"]),
    }
    return subprocess.run(
        [python, "-I", "-S", str(SHIM), *args],
        input=json.dumps(payload).encode(),
        env=proc_env,
        capture_output=True,
        timeout=30,
    )


def test_shim_runs_isolated_with_the_package_dir(env) -> None:
    r = run_shim(["SessionStart", str(SRC)], start_payload(env), env)
    assert r.returncode == 0 and r.stdout == b"" and r.stderr == b"", r.stderr
    assert Store(env["state"]).session(env["sid"]) is not None


def test_hook_commands_from_before_the_rename_still_run(env, tmp_path: Path) -> None:
    """The hook module is ``orch_plugins.claude_hooks``; the shim an earlier install copied
    (and interactive agents' ``--settings``) import ``orch_plugins.hooks``, which forwards."""
    old_shim = tmp_path / "orch_hook.py"
    old_shim.write_text(SHIM.read_text().replace("orch_plugins.claude_hooks", "orch_plugins.hooks"))
    assert "orch_plugins.claude_hooks" in SHIM.read_text()
    r = subprocess.run(
        [sys.executable, "-I", "-S", str(old_shim), "SessionStart", str(SRC)],
        input=json.dumps(start_payload(env)).encode(),
        env={
            "PATH": "/usr/bin:/bin",
            "HOME": os.environ["HOME"],
            "XDG_STATE_HOME": os.environ["XDG_STATE_HOME"],
            "CLAUDE_PROJECT_DIR": str(env["project"]),
        },
        capture_output=True,
        timeout=30,
    )
    assert r.returncode == 0 and r.stderr == b"", r.stderr
    assert Store(env["state"]).session(env["sid"]) is not None


def test_shim_without_a_package_dir_falls_back_to_site_packages(env) -> None:
    r = run_shim(["Stop"], start_payload(env), env)
    assert r.returncode == 0 and r.stderr == b"", r.stderr
    assert Store(env["state"]).session(env["sid"])["last_event"] == "Stop"


def test_shim_without_the_package_logs_and_exits_zero(env, tmp_path) -> None:
    venv = tmp_path / "bare-venv"  # an interpreter that has never heard of orch_plugins
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    r = run_shim(
        ["SessionStart", str(tmp_path / "nowhere")],
        start_payload(env),
        env,
        python=str(venv / "bin" / "python3"),
    )
    assert r.returncode == 0 and r.stdout == b"" and r.stderr == b""
    log = Path(os.environ["XDG_STATE_HOME"]) / "orch-plugins" / "log" / "hooks.log"
    assert "orch_hook.py SessionStart: cannot import orch_plugins.claude_hooks" in log.read_text()


def test_hooks_import_only_the_standard_library_and_the_store() -> None:
    code = (
        f"import sys; sys.path.append({str(SRC)!r}); "
        "import orch_plugins.claude_hooks as h, orch_plugins.store; "
        "print(' '.join(sorted(sys.modules)))"
    )
    r = subprocess.run(
        [sys.executable, "-I", "-S", "-c", code], capture_output=True, text=True, check=True
    )
    modules = set(r.stdout.split())
    ours = {m for m in modules if m.startswith("orch_plugins")}
    assert ours <= {
        "orch_plugins",
        "orch_plugins.claude_hooks",
        "orch_plugins.store",
        "orch_plugins.errors",
    }
    for heavy in ("typer", "click", "rich", "pluggy", "platformdirs"):
        assert heavy not in modules


def test_two_installs_firing_at_once_give_one_notice(env, monkeypatch, capsys) -> None:
    """A project install and the plugin form both run UserPromptSubmit, concurrently."""
    store = Store(env["state"])
    fire(monkeypatch, capsys, "SessionStart", start_payload(env))
    ended_run(store, "once", output="done")
    proc_env = {
        "PATH": "/usr/bin:/bin",
        "HOME": os.environ["HOME"],
        "CLAUDE_PROJECT_DIR": str(env["project"]),
        "CLAUDE_CODE_SESSION_ID": env["sid"],
    }
    argv = [sys.executable, "-I", "-S", str(SHIM), "UserPromptSubmit", str(SRC)]
    procs = [
        subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=proc_env)
        for _ in range(4)
    ]
    outs = [p.communicate(json.dumps(start_payload(env)).encode(), timeout=30)[0] for p in procs]
    assert sorted(bool(o) for o in outs) == [False, False, False, True]
    assert "once: completed — done" in notice_of(next(o for o in outs if o).decode())


def test_the_notice_goes_to_the_session_that_launched_the_agent(env, monkeypatch, capsys) -> None:
    store = Store(env["state"])
    other = str(uuid.uuid4())
    for sid in (env["sid"], other):
        fire(monkeypatch, capsys, "SessionStart", start_payload(env, sid=sid))
    mine = ended_run(store, "mine", output="for me")
    theirs = ended_run(store, "theirs", output="for the other session")
    anyone = ended_run(store, "anyone", output="from a terminal")
    store.update(mine["run_id"], launched_by=env["sid"])
    store.update(theirs["run_id"], launched_by=other)
    notice = notice_of(fire(monkeypatch, capsys, "UserPromptSubmit", start_payload(env)))
    assert "- mine: completed" in notice and "- anyone: completed" in notice
    assert "theirs" not in notice
    monkeypatch.setenv("CLAUDE_CODE_SESSION_ID", other)  # as Claude Code sets it per session
    notice = notice_of(fire(monkeypatch, capsys, "UserPromptSubmit", start_payload(env, sid=other)))
    assert "- theirs: completed" in notice and "- anyone: completed" in notice
    assert "mine" not in notice
    assert anyone["launched_by"] is None


# -- session ids stay with their runs ----------------------------------------------------------


def two_agents(env: dict, monkeypatch: pytest.MonkeyPatch, capsys, *, fork_of: str = "") -> tuple:
    """Agent a1 (run A) that reported its session S_A, then the environment of run B (a fork of
    ``fork_of`` when given) with no session yet: ``(store, run A, run B)``."""
    store = Store(env["state"])
    run_a = agent_run(env, monkeypatch)
    monkeypatch.setenv("ORCH_FORK_OF", "")
    fire(monkeypatch, capsys, "SessionStart", start_payload(env))
    with store.transaction():
        run_b = store.insert_run(name="b1", task="t", backend="subprocess", cwd="/")
    monkeypatch.setenv("ORCH_RUN_ID", str(run_b["run_id"]))
    monkeypatch.setenv("ORCH_AGENT", "b1")
    monkeypatch.setenv("ORCH_FORK_OF", fork_of)
    return store, run_a, run_b


@pytest.mark.parametrize("source", ["startup", "resume", "fork", "compact", "clear"])
def test_another_sessions_start_or_prompt_never_moves_an_id(
    env, monkeypatch, capsys, source
) -> None:
    """Run B, which has its own session, sees events of A's session and of a new one (a claude
    one of its tools started, a /clear, a /resume typed in its pane): B keeps its id, and A's
    session stays A's."""
    store, run_a, run_b = two_agents(env, monkeypatch, capsys)
    own = str(uuid.uuid4())
    fire(monkeypatch, capsys, "SessionStart", start_payload(env, sid=own))
    assert store.get_run(run_b["run_id"])["session_id"] == own

    new = str(uuid.uuid4())
    for sid in (env["sid"], new):
        fire(monkeypatch, capsys, "SessionStart", start_payload(env, sid=sid, source=source))
        fire(
            monkeypatch, capsys, "UserPromptSubmit", {**start_payload(env, sid=sid), "prompt": "p"}
        )
        fire(monkeypatch, capsys, "Stop", start_payload(env, sid=sid))

    assert store.get_run(run_b["run_id"])["session_id"] == own
    assert store.get_run(run_a["run_id"])["session_id"] == env["sid"]
    assert store.session(env["sid"])["run_id"] == run_a["run_id"]
    assert store.session(own)["run_id"] == run_b["run_id"]
    assert store.session(new)["run_id"] is None  # recorded, but nobody's run


@pytest.mark.parametrize("source", ["resume", "fork"])
def test_a_fork_never_takes_its_parents_id(env, monkeypatch, capsys, source) -> None:
    """Claude Code 2.1.197 reports a fork as ``source: resume`` with the parent's id, 2.1.214+
    as ``source: fork``; a prompt or a stop may carry the parent's id too."""
    parent = env["sid"]
    store, run_a, run_b = two_agents(env, monkeypatch, capsys, fork_of=parent)
    before = store.session(parent)
    fire(monkeypatch, capsys, "SessionStart", start_payload(env, sid=parent, source=source))
    fire(monkeypatch, capsys, "UserPromptSubmit", {**start_payload(env, sid=parent), "prompt": "p"})
    fire(monkeypatch, capsys, "Stop", start_payload(env, sid=parent))
    assert store.get_run(run_b["run_id"])["session_id"] is None
    assert store.session(parent) == before  # not even touched: it was not that session's event

    fork = str(uuid.uuid4())
    fire(monkeypatch, capsys, "SessionStart", start_payload(env, sid=fork, source=source))
    fire(monkeypatch, capsys, "UserPromptSubmit", {**start_payload(env, sid=fork), "prompt": "p"})
    assert store.get_run(run_b["run_id"])["session_id"] == fork
    assert store.session(fork)["run_id"] == run_b["run_id"]
    assert store.get_run(run_a["run_id"])["session_id"] == parent
    assert store.session(parent)["run_id"] == run_a["run_id"]


def test_a_resumed_agent_takes_its_session_at_session_start(env, monkeypatch, capsys) -> None:
    """A resume that is no fork (``ORCH_FORK_OF`` empty) continues the same session: its id is
    the run's from SessionStart on, not only from the first prompt."""
    store, run_a, run_b = two_agents(env, monkeypatch, capsys)
    fire(monkeypatch, capsys, "SessionStart", start_payload(env, source="resume"))
    assert store.get_run(run_b["run_id"])["session_id"] == env["sid"]
    assert store.session(env["sid"])["run_id"] == run_b["run_id"]  # the session's newest run
    assert store.get_run(run_a["run_id"])["session_id"] == env["sid"]


def test_a_subagents_stop_is_not_the_end_of_the_sessions_turn(env, monkeypatch, capsys) -> None:
    store = Store(env["state"])
    agent_run(env, monkeypatch)
    fire(monkeypatch, capsys, "SessionStart", start_payload(env))
    fire(monkeypatch, capsys, "UserPromptSubmit", {**start_payload(env), "prompt": "p"})
    sub = {**start_payload(env), "agent_id": "a3f9", "agent_type": "general-purpose"}
    fire(monkeypatch, capsys, "Stop", sub)
    assert store.session(env["sid"])["last_event"] == "UserPromptSubmit"
    fire(monkeypatch, capsys, "Stop", start_payload(env))
    assert store.session(env["sid"])["last_event"] == "Stop"


def test_the_interactive_stop_handover_skips_a_subagents_stop(tmp_path: Path) -> None:
    """The ``--settings`` Stop command that hands the payload to an interactive supervisor."""
    from orch_plugins.claude import hook_settings

    stop_file = tmp_path / "it's stop.json"
    (command,) = [
        h["command"]
        for h in hook_settings(str(stop_file))["hooks"]["Stop"][0]["hooks"]
        if "orch_plugins.claude_hooks" not in h["command"]
    ]
    sub = {"session_id": "s1", "hook_event_name": "Stop", "agent_id": "a3f9"}
    subprocess.run(["sh", "-c", command], input=json.dumps(sub).encode(), check=True)
    assert not stop_file.exists()
    whole = {"session_id": "s1", "hook_event_name": "Stop", "last_assistant_message": "done"}
    subprocess.run(["sh", "-c", command], input=json.dumps(whole).encode(), check=True)
    assert json.loads(stop_file.read_text()) == whole


def test_the_orchestrator_hears_of_new_board_posts(env, monkeypatch, capsys) -> None:
    store = Store(env["state"])
    store.post("early", "before the session")
    time.sleep(0.01)
    fire(monkeypatch, capsys, "SessionStart", start_payload(env))
    prompt = {**start_payload(env), "prompt": "hi"}
    assert fire(monkeypatch, capsys, "UserPromptSubmit", prompt) == ""
    store.post("a1", "found the bug\nin parser.py", run_id=1)
    store.post("orchestrator", "my own", session_id=env["sid"])
    store.post("a2", "second")
    out = json.loads(fire(monkeypatch, capsys, "UserPromptSubmit", prompt))
    assert out["systemMessage"] == "orch: 2 new board posts (orch board read)"
    assert notice_of(json.dumps(out)).splitlines() == [
        "orch: 2 new board posts since your previous prompt:",
        "- #2 a1: found the bug",
        "- #4 a2: second",
        "Read them in full with `orch board read --since 1`.",
    ]
    assert fire(monkeypatch, capsys, "UserPromptSubmit", prompt) == ""  # told once


def test_an_agent_hears_of_the_agents_it_launched(env, monkeypatch, capsys) -> None:
    store = Store(env["state"])
    parent_sid = str(uuid.uuid4())
    with store.transaction():
        parent = store.insert_run(name="lead", task="t", backend="subprocess", cwd="/")
        child = store.insert_run(
            name="kid", task="t", backend="subprocess", cwd="/", launched_by=parent_sid
        )
    monkeypatch.setenv("ORCH_RUN_ID", str(parent["run_id"]))
    monkeypatch.setenv("ORCH_STATE_DIR", str(env["state"]))
    payload = {**start_payload(env, sid=parent_sid), "prompt": "task"}
    assert fire(monkeypatch, capsys, "UserPromptSubmit", payload) == ""
    ended_run(store, "someone-elses")
    Path(child["run_dir"]).mkdir(parents=True)
    Path(child["output_path"]).write_text("kid done")
    store.finish(child["run_id"], COMPLETED)
    notice = notice_of(fire(monkeypatch, capsys, "UserPromptSubmit", payload))
    assert "- kid: completed — kid done" in notice and "someone-elses" not in notice

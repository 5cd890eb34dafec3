"""The tmux backend with the real Claude Code CLI against the Messages API stand-in.

Lean on purpose (each claude costs ~0.75 CPU-s): ten claude processes in all.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from orch_plugins.supervisor import TRANSCRIPT_COPY, descendants
from orch_plugins.testing.api import MessagesStandIn, Reply
from orch_plugins.testing.pytest_plugin import trust_project
from tests.helpers import (
    init_session,
    leaver,
    megabyte_answers,
    orch,
    pid_gone,
    running,
    status_json,
    wait_for,
)
from tests.tmux.helpers import Tm, handle

pytestmark = pytest.mark.e2e


def _started(name: str) -> dict | None:
    run = status_json(name)[0]
    return run if run["session_id"] else None


def test_three_agents_status_output_and_readable_panes(
    real_tmux_project: Path, tmux_server: Tm, messages_api: MessagesStandIn
) -> None:
    messages_api.on("ALPHA", Reply.text("alpha result"))
    messages_api.on("BETA", Reply.bash("echo made > made.txt"), Reply.text("beta made it"))
    messages_api.on("GAMMA", Reply.text("gamma result"))
    tasks = ("ALPHA task", "BETA task", "GAMMA task")
    r = orch("parallel", *tasks, "--role", "implementer", "--json", check=True)
    assert [x["backend"] for x in json.loads(r.stdout)] == ["tmux"] * 3
    orch("wait", "agent1", "agent2", "agent3", check=True, timeout=150)
    for name, text in (
        ("agent1", "alpha result"),
        ("agent2", "beta made it"),
        ("agent3", "gamma result"),
    ):
        assert orch("output", name, check=True).stdout == f"{text}\n"
    runs = status_json()
    for run in runs:
        assert run["status"] == "completed" and run["exit_code"] == 0
        assert run["session_id"] == init_session(run)
        assert run["cost_usd"] > 0 and run["num_turns"] >= 1
    assert (real_tmux_project / "made.txt").read_text() == "made\n"
    assert runs[1]["tool_calls"] == 1
    pane = tmux_server.capture(handle(real_tmux_project, runs[1]["run_id"])["pane"])
    assert "[tool] Bash: echo made > made.txt" in pane and "[result] beta made it" in pane
    assert "== completed" in pane and '"type":' not in pane  # readable, not stream-json


def test_cancel_timeout_and_resume(
    real_tmux_project: Path, tmux_server: Tm, messages_api: MessagesStandIn
) -> None:
    messages_api.on("SLOW", Reply.text("too late", delay=60))
    messages_api.on("FIRST", Reply.text("first answer"))
    messages_api.on("SECOND", Reply.text("second answer"))
    orch("launch", "slow", "SLOW one", "--timeout", "3", check=True)
    orch("launch", "stopme", "SLOW two", check=True)
    run = wait_for(lambda: _started("stopme"), timeout=60)
    h = handle(real_tmux_project, run["run_id"])
    children = descendants(h["pid"])
    assert children  # claude runs under the pane's supervisor
    assert "stopme: cancelled" in orch("cancel", "stopme", check=True).stdout
    assert all(pid_gone(p) for p in [h["pid"], *children])
    r = orch("wait", "slow", timeout=60)
    assert r.returncode == 1 and "slow: timed_out" in r.stdout
    assert status_json("slow")[0]["error"] == "timed out after 3.0 s"

    orch("launch", "talk", "FIRST question", check=True)
    orch("wait", "talk", check=True, timeout=120)
    first = status_json("talk")[0]
    orch("resume", "talk", "SECOND question", check=True)
    orch("wait", "talk", check=True, timeout=120)
    second = status_json("talk")[0]
    assert second["session_id"] == first["session_id"] and second["run_id"] != first["run_id"]
    assert orch("output", "talk", check=True).stdout == "second answer\n"
    req = next(r for r in messages_api.conversation_requests() if "SECOND" in r.prompt_text)
    assert any("FIRST question" in t for t in req.all_user_texts)
    # Each run kept the session's transcript as it was at its end.
    copies = [Path(r["output_path"]).parent / TRANSCRIPT_COPY for r in (first, second)]
    texts = [gzip.decompress(c.read_bytes()).decode() for c in copies]
    assert "FIRST question" in texts[0] and "SECOND question" not in texts[0]
    assert "SECOND question" in texts[1]


def test_interactive_records_session_id_from_the_hook(
    real_tmux_project: Path, tmux_server: Tm, messages_api: MessagesStandIn
) -> None:
    home = Path(os.environ["HOME"])
    trust_project(home, real_tmux_project)
    messages_api.on("INTERACTIVE", Reply.text("interactive answer"))
    orch("launch", "ia", "INTERACTIVE task", "--interactive", check=True)
    orch("wait", "ia", check=True, timeout=120)
    run = status_json("ia")[0]
    assert run["status"] == "completed" and run["exit_code"] is None  # claude stays open
    transcripts = list((home / ".claude" / "projects").glob(f"*/{run['session_id']}.jsonl"))
    assert transcripts, "the recorded session id is the one Claude Code wrote its transcript for"
    assert orch("output", "ia", check=True).stdout == "interactive answer\n"
    wait_for(lambda: status_json("ia")[0]["num_turns"] == 1)  # counted from the transcript
    h = handle(real_tmux_project, run["run_id"])
    assert "interactive answer" in tmux_server.capture(h["pane"])
    children = descendants(h["pid"])
    assert children  # the interactive claude, waiting for the person
    # The transcript was kept when the task's turn ended (again a moment later: Claude Code
    # may write the turn's lines after its Stop hook), and again when claude was closed.
    copy = Path(run["output_path"]).parent / TRANSCRIPT_COPY
    wait_for(lambda: b"INTERACTIVE task" in gzip.decompress(copy.read_bytes()), timeout=10)
    tmux_server("kill-window", "-t", h["window"])  # closing it ends claude; the record stays
    wait_for(lambda: all(pid_gone(p) for p in [h["pid"], *children]), timeout=20)
    assert status_json("ia")[0]["status"] == "completed"
    assert gzip.decompress(copy.read_bytes()) == transcripts[0].read_bytes()


def test_killed_tmux_server(
    real_tmux_project: Path, tmux_server: Tm, messages_api: MessagesStandIn
) -> None:
    """Documented behaviour: a non-interactive agent survives (the pane was a view); an
    interactive one, which needs its terminal, is recorded ``lost``."""
    trust_project(Path(os.environ["HOME"]), real_tmux_project)
    messages_api.on("HOLD ON", Reply.text("held answer", delay=4))
    messages_api.on("HOLD INTERACTIVE", Reply.text("never seen", delay=60))
    orch("launch", "keeper", "HOLD ON please", check=True)
    orch("launch", "ix", "HOLD INTERACTIVE please", "--interactive", check=True)
    wait_for(lambda: _started("keeper") and _started("ix"), timeout=60)
    ix = handle(real_tmux_project, status_json("ix")[0]["run_id"])
    tmux_server("kill-server")
    orch("wait", "keeper", check=True, timeout=120)
    assert orch("output", "keeper", check=True).stdout == "held answer\n"
    wait_for(lambda: status_json("ix")[0]["status"] == "lost", timeout=30)
    assert "tmux pane closed" in status_json("ix")[0]["error"]
    wait_for(lambda: pid_gone(ix["pid"]), timeout=20)


def test_one_and_two_megabyte_answers_whole(
    real_tmux_project: Path, tmux_server: Tm, messages_api: MessagesStandIn
) -> None:
    megabyte_answers(messages_api, "tmux")


def _type(tm: Tm, pane: str, text: str) -> None:
    tm("send-keys", "-t", pane, "-l", text)
    time.sleep(0.5)  # let the prompt line settle (slash-command menu) before Enter
    tm("send-keys", "-t", pane, "Enter")


def test_interactive_agent_keeps_its_session_and_resume_waits_for_its_claude(
    real_tmux_project: Path, tmux_server: Tm, messages_api: MessagesStandIn
) -> None:
    """While its claude is open in the window, a resume would run a second claude on the same
    session: refused. A /clear typed there starts another session, which is not the run's.
    Once that claude is quit, the resume continues the task's own session."""
    home = Path(os.environ["HOME"])
    trust_project(home, real_tmux_project)
    messages_api.on("FIRST-TASK", Reply.text("first answer"))
    messages_api.on("AFTER-CLEAR", Reply.text("cleared answer"))
    messages_api.on("THIRD-TASK", Reply.text("third answer"))
    orch("launch", "ia", "FIRST-TASK remember PELICAN", "--interactive", check=True)
    orch("wait", "ia", check=True, timeout=120)
    run = status_json("ia")[0]
    sid, claude = run["session_id"], run["claude_pid"]
    h = handle(real_tmux_project, run["run_id"])
    assert claude in descendants(h["pid"])  # the recorded claude is the one in the window

    r = orch("resume", "ia", "THIRD-TASK")
    assert r.returncode == 1 and r.stdout == "" and r.stderr.count("\n") == 1
    assert f"still open in its tmux window (claude pid {claude})" in r.stderr
    assert len(status_json("ia", all_=True)) == 1 and not pid_gone(claude)

    _type(tmux_server, h["pane"], "/clear")
    cleared = wait_for(
        lambda: [
            s["session_id"]
            for s in json.loads(orch("sessions", "--json", check=True).stdout)
            if s["source"] == "clear"
        ]
    )
    time.sleep(1.0)  # claude redraws its prompt after the clear
    _type(tmux_server, h["pane"], "AFTER-CLEAR what now")
    wait_for(lambda: orch("output", "ia").stdout == "cleared answer\n", timeout=60)
    sessions = {s["session_id"]: s for s in json.loads(orch("sessions", "--json").stdout)}
    assert sessions[cleared[0]]["agent"] is None and sessions[sid]["agent"] == "ia"
    assert status_json("ia")[0]["session_id"] == sid

    _type(tmux_server, h["pane"], "/exit")
    wait_for(lambda: pid_gone(claude), timeout=30)
    orch("resume", "ia", "THIRD-TASK", check=True)
    orch("wait", "ia", check=True, timeout=120)
    third = status_json("ia")[0]
    assert third["run_id"] != run["run_id"] and third["session_id"] == sid
    req = next(r for r in messages_api.conversation_requests() if "THIRD-TASK" in r.prompt_text)
    assert any("FIRST-TASK" in t for t in req.all_user_texts)  # the task's own session
    assert not any("AFTER-CLEAR" in t for t in req.all_user_texts)


def test_interactive_agent_completes_after_its_subagent(
    real_tmux_project: Path, tmux_server: Tm, messages_api: MessagesStandIn, claude_bin: str
) -> None:
    """A Task sub-agent still at work does not end the run: Claude Code 2.1.332 runs it in the
    background (the turn stops meanwhile, then its result comes back as another turn, whose
    text the stand-in sees under the first prompt); 2.1.197 waits for it within the turn."""
    trust_project(Path(os.environ["HOME"]), real_tmux_project)
    # 2.1.332's default interactive mode ("auto") asks a server-side check the stand-in lacks.
    settings = real_tmux_project / ".claude" / "settings.json"
    settings.parent.mkdir(exist_ok=True)
    settings.write_text(json.dumps({"permissions": {"defaultMode": "acceptEdits"}}))
    task = {"description": "helper", "prompt": "SUBTASK look", "subagent_type": "general-purpose"}
    messages_api.on("SUBTASK", Reply.text("sub result", delay=3))
    messages_api.on(
        "DELEGATE", Reply.tool("Task", task), Reply.text("main turn done"), Reply.text("final")
    )
    orch("launch", "ia", "DELEGATE the work", "--interactive", check=True)
    orch("wait", "ia", check=True, timeout=120)
    version = subprocess.run([claude_bin, "--version"], capture_output=True, text=True).stdout
    background = not version.startswith("2.1.197")
    assert orch("output", "ia", check=True).stdout == (
        "final\n" if background else "main turn done\n"
    )


def test_what_an_agent_leaves_is_stopped_when_it_completes(
    real_tmux_project: Path, tmux_server: Tm, messages_api: MessagesStandIn
) -> None:
    command, needle = leaver("TMUX")
    messages_api.on("LEAVES", Reply.bash(command), Reply.text("left", delay=3))
    orch("launch", "leaves", "LEAVES", "--role", "implementer", check=True)
    wait_for(lambda: len(running(needle)) == 2, timeout=90)
    orch("wait", "leaves", check=True, timeout=120)
    wait_for(lambda: not running(needle), timeout=15)

"""The tmux backend against a real (private) tmux server, with the fast fake claude."""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

import pytest

from orch_plugins.backend import BackendContext, LaunchSpec
from orch_plugins.backends.tmux import client as tmux_mod
from orch_plugins.backends.tmux.backend import TmuxBackend
from orch_plugins.backends.tmux.client import format_literal, session_name, tmux_arg
from orch_plugins.store import Store
from orch_plugins.supervisor import descendants
from tests.helpers import FAKE_CLAUDE, git_project, orch, pid_gone, status_json, wait_for
from tests.tmux.helpers import HERE, Tm, handle, wrapper

HOSTILE = 'it\'s "q" $(touch /tmp/pwned-tmux) `id` ; | & > x\n\tünï 🚀 {task} %s\\ #{pane_id};'


@pytest.fixture
def fast_claude(tmux_project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The fake claude behind a wrapper that also dumps the agent's environment."""
    dump = tmp_path / "envs"
    dump.mkdir()
    script = tmp_path / "claude"
    script.write_text(
        "#!/bin/sh\n"
        'env > "$ENV_DUMP_DIR/$ORCH_AGENT.env"\n'
        f'exec "{sys.executable}" "{FAKE_CLAUDE}" "$@"\n'
    )
    script.chmod(0o755)
    monkeypatch.setenv("ORCH_CLAUDE_BIN", str(script))
    monkeypatch.setenv("ENV_DUMP_DIR", str(dump))
    return dump


def _env(dump: Path, name: str) -> dict[str, str]:
    text = (dump / f"{name}.env").read_text()
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def _agent_panes(tm: Tm) -> dict[str, dict[str, str]]:
    session = session_name(Path.cwd() / ".orchestrate", {})
    return {p["name"]: p for p in tm.panes() if p["session"] == session}


def test_argument_and_name_helpers() -> None:
    assert tmux_arg("a;") == "a\\;" and tmux_arg("a\\;") == "a\\\\;" and tmux_arg("a") == "a"
    assert format_literal("/x/#{pane_id}/#(id)") == "/x/##{pane_id}/##(id)"
    digest = hashlib.sha1(b"/p/my.proj/.orchestrate").hexdigest()[:6]
    assert session_name("/p/my.proj/.orchestrate", {}) == f"orch-my-proj-{digest}"
    assert session_name("/p/state", {}).startswith("orch-state-")
    assert session_name("/p/x/.orchestrate", {"session": "agents"}) == "agents"
    # One session per project, however alike their directory names are.
    names = {
        session_name(p, {})
        for p in (
            "/a/repo/.orchestrate",
            "/b/repo/.orchestrate",
            "/c/demo.example.io/.orchestrate",
            "/c/demo-example-io/.orchestrate",
        )
    }
    assert len(names) == 4


def test_three_agents_progress_records_and_environment(
    tmux_project: Path, tmux_server: Tm, fast_claude: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The server exists already, with a variable of its own that agents must not see.
    tmux_server("new-session", "-d", "-s", "keep", "sleep 600")
    tmux_server("set-environment", "-g", "SERVER_ONLY", "1")
    monkeypatch.setenv("LAUNCHER_ONLY", "yes")
    monkeypatch.setenv("CLAUDECODE", "1")  # in unset_env: a nested claude refuses to start
    r = orch("parallel", "SLEEP=0.3 one", HOSTILE, "EXIT=3", "--json", check=True)
    runs = json.loads(r.stdout)
    assert [x["backend"] for x in runs] == ["tmux"] * 3
    assert orch("wait", "agent1", "agent2", "agent3", timeout=60).returncode == 1
    a1, a2, a3 = status_json("agent1", "agent2", "agent3")
    assert a1["status"] == "completed" and a1["exit_code"] == 0 and a1["session_id"]
    assert a1["num_turns"] == 2 and a1["tool_calls"] == 1 and a1["cost_usd"] > 0
    digest = hashlib.sha256(HOSTILE.encode()).hexdigest()
    assert f"sha256={digest}" in orch("output", "agent2", check=True).stdout
    assert not Path("/tmp/pwned-tmux").exists()
    # The exit status is the supervisor's record, not tmux's.
    assert a3["status"] == "failed" and a3["exit_code"] == 3
    assert a3["error"] == "claude exited with code 3"

    panes = _agent_panes(tmux_server)
    assert set(panes) == {"agent1", "agent2", "agent3"}
    for run in (a1, a2, a3):
        h = handle(tmux_project, run["run_id"])
        assert (
            panes[run["name"]]["pane"] == h["pane"] and int(panes[run["name"]]["pid"]) == h["pid"]
        )
        assert not (Path(run["output_path"]).parent / ".launcher-env.json").exists()
    start_cmds = tmux_server("list-panes", "-a", "-F", "#{pane_start_command}")
    assert "one" not in start_cmds and "ünï" not in start_cmds  # task text never in argv
    text = tmux_server.capture(panes["agent1"]["pane"])
    assert "== orch agent agent1 (run 1) ==" in text
    assert "[tool] Bash: true" in text and "[done] 2 turns" in text
    assert "== completed" in text and '{"type"' not in text  # readable, not raw JSON
    assert "error: claude exited with code 3" in tmux_server.capture(panes["agent3"]["pane"])

    env = _env(fast_claude, "agent1")
    assert env["LAUNCHER_ONLY"] == "yes" and "SERVER_ONLY" not in env
    assert "CLAUDECODE" not in env and env["ORCH_RUN_ID"] == "1"
    assert env["TMUX_PANE"] == panes["agent1"]["pane"]  # the pane's own terminal variables


def test_odd_working_directory(tmux_project: Path, tmux_server: Tm, fast_claude: Path) -> None:
    odd = tmux_project / "we ird #{pane_id} #(touch pwned-dir) x;"
    odd.mkdir()
    run = json.loads(orch("launch", "odd", "SLEEP=1", "--cwd", str(odd), "--json").stdout)
    pid = handle(tmux_project, run["run_id"])["pid"]
    assert os.readlink(f"/proc/{pid}/cwd") == str(odd)  # tmux took -c literally
    orch("wait", "odd", check=True, timeout=60)
    assert not list(tmux_project.rglob("pwned-dir"))


def test_cancel_timeout_ctrl_c_and_kill9(
    tmux_project: Path, tmux_server: Tm, fast_claude: Path
) -> None:
    orch("launch", "stopme", "SLEEP=30 a", check=True)
    orch("launch", "slow", "SLEEP=30 b", "--timeout", "1", check=True)
    orch("launch", "ctrlc", "SLEEP=30 c", check=True)
    orch("launch", "victim", "SLEEP=30 d", check=True)
    started = lambda n: status_json(n)[0]["session_id"] and status_json(n)[0]  # noqa: E731
    stopme = wait_for(lambda: started("stopme"))
    h = handle(tmux_project, stopme["run_id"])
    children = descendants(h["pid"])
    assert children
    assert "stopme: cancelled" in orch("cancel", "stopme", check=True).stdout
    assert all(pid_gone(p) for p in [h["pid"], *children])
    assert "== cancelled" in tmux_server.capture(h["pane"])

    r = orch("wait", "slow", timeout=60)
    assert r.returncode == 1 and "slow: timed_out" in r.stdout

    ctrlc = wait_for(lambda: started("ctrlc"))
    tmux_server("send-keys", "-t", handle(tmux_project, ctrlc["run_id"])["pane"], "C-c")
    wait_for(lambda: status_json("ctrlc")[0]["status"] == "cancelled", timeout=20)

    victim = wait_for(lambda: started("victim"))
    h = handle(tmux_project, victim["run_id"])
    children = descendants(h["pid"])
    os.kill(h["pid"], signal.SIGKILL)
    wait_for(lambda: pid_gone(h["pid"]))
    run = status_json("victim")[0]
    assert run["status"] == "lost"
    wait_for(lambda: all(pid_gone(p) for p in children), timeout=15)  # no orphaned claude


def test_killed_tmux_server_loses_the_view_not_the_agent(
    tmux_project: Path, tmux_server: Tm, fast_claude: Path
) -> None:
    gate = tmux_project / "go"  # the agent answers only once the test has looked
    orch("launch", "survivor", f"GATE={gate} keep going", check=True)
    run = wait_for(lambda: status_json("survivor")[0]["session_id"] and status_json("survivor")[0])
    tmux_server("kill-server")
    assert not tmux_server.running()
    assert status_json("survivor")[0]["status"] == "running"
    gate.touch()
    orch("wait", "survivor", check=True, timeout=60)
    run = status_json("survivor")[0]
    assert run["status"] == "completed" and run["exit_code"] == 0
    assert "sha256=" in orch("output", "survivor", check=True).stdout


def test_retries_queue_and_resume(
    tmux_project: Path, tmux_server: Tm, fast_claude: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # FAKE_API_FAIL_FILE reaches the agent only through the launcher's environment.
    monkeypatch.setenv("FAKE_API_FAIL_FILE", str(tmux_project / "fails"))
    orch("launch", "flaky", "API=529 API_FAILS=1", "--retries", "2", check=True)
    orch("wait", "flaky", check=True, timeout=60)
    run = status_json("flaky")[0]
    assert run["status"] == "completed" and run["attempt"] == 2
    assert "[orch retry] attempt 2/3" in tmux_server.capture(
        handle(tmux_project, run["run_id"])["pane"]
    )

    # The queue is pumped by ending supervisors, from inside their panes.
    r = orch("parallel", "SLEEP=0.3 q1", "q2", "q3", "--max-parallel", "1", "--json", check=True)
    assert [x["status"] for x in json.loads(r.stdout)] == ["running", "queued", "queued"]
    orch("wait", check=True, timeout=90)
    runs = [r for r in status_json() if r["name"].startswith("agent")]
    assert [x["status"] for x in runs] == ["completed"] * 3
    spans = sorted((x["started_at"], x["ended_at"]) for x in runs)
    assert all(a[1] <= b[0] for a, b in itertools.pairwise(spans))

    first = status_json("flaky")[0]
    orch("resume", "flaky", "more please", check=True)
    orch("wait", "flaky", check=True, timeout=60)
    second = status_json("flaky")[0]
    assert second["session_id"] == first["session_id"] and second["run_id"] != first["run_id"]
    assert "--resume" in orch("output", "flaky", check=True).stdout
    windows = [p for p in tmux_server.panes() if p["name"] == "flaky"]
    assert len(windows) == 2  # the ended run's window stays until tidied


def _specs(store: Store, n: int, argv: list[str]) -> list[LaunchSpec]:
    specs = []
    state_dir = str(store.state_dir.resolve())
    for i in range(n):
        with store.transaction():
            run = store.insert_run(
                name=f"many{i}", task="t", backend="tmux", cwd=os.getcwd(), status="running"
            )
        run_dir = Path(run["run_dir"])
        run_dir.mkdir(parents=True)
        (run_dir / "prompt.txt").write_text("t")
        spec = LaunchSpec(
            run_id=run["run_id"],
            name=run["name"],
            argv=argv,
            env={},
            cwd=os.getcwd(),
            run_dir=str(run_dir),
            state_dir=state_dir,
            prompt_path=str(run_dir / "prompt.txt"),
            output_path=run["output_path"],
            log_path=run["log_path"],
        )
        spec.spec_path.write_text(json.dumps(spec.to_json()))
        specs.append(spec)
    return specs


def as_runs(handles: list[dict]) -> list[dict]:
    """Minimal run records for ``Backend.poll``: an id and the (decoded) handle."""
    return [{"run_id": i, "handle": h} for i, h in enumerate(handles, 1)]


def test_fifty_windows_in_one_call_and_status_without_tmux(
    tmux_project: Path, tmux_server: Tm, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Store.open()
    specs = _specs(store, 50, ["/bin/sleep", "60"])
    backend = TmuxBackend(BackendContext(store.state_dir))
    calls = []
    real_run = tmux_mod.Tmux.run
    monkeypatch.setattr(
        tmux_mod.Tmux, "run", lambda self, *c, **k: calls.append(c) or real_run(self, *c, **k)
    )
    handles = backend.launch_many(specs)
    try:
        # No server yet: one failed batch, the session made with the first window, then 50
        # windows in a few batched calls (a call holds 16 KiB at most).
        assert len(calls) <= 5, [c[0][0] for c in calls]
        session = session_name(store.state_dir, {})
        indexes = tmux_server("list-windows", "-t", f"={session}", "-F", "#{window_index}")
        assert indexes.split() == ["0", *(str(s.run_id) for s in specs[1:])]
        # (The time it takes is measured in benchmarks/bench_tmux.py, not asserted here.)
        assert len({h["window"] for h in handles}) == 50
        calls.clear()
        assert [u.alive for u in backend.poll(as_runs(handles)).values()] == [True] * 50
        assert calls == []  # liveness is read from /proc
        panes = backend.windows(store.state_dir)
        assert len(calls) == 1 and len([p for p in panes if p["name"].startswith("many")]) == 50
    finally:
        threads = [threading.Thread(target=backend.cancel, args=(h, 1.0)) for h in handles]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert not any(u.alive for u in backend.poll(as_runs(handles)).values())


# -- interactive, with a fake interactive claude that runs the --settings hooks -----------------


@pytest.fixture
def fake_interactive(tmux_project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    claude = wrapper(tmp_path / "iclaude", HERE / "fake_interactive_claude.py")
    monkeypatch.setenv("ORCH_CLAUDE_BIN", str(claude))


def _type(tm: Tm, pane: str, text: str) -> None:
    tm("send-keys", "-t", pane, "-l", text)
    tm("send-keys", "-t", pane, "Enter")


def test_interactive_session_id_completion_and_later_turns(
    tmux_project: Path, tmux_server: Tm, fake_interactive: None
) -> None:
    orch("launch", "ia", "first task", "--interactive", check=True)
    orch("wait", "ia", check=True, timeout=60)
    run = status_json("ia")[0]
    assert run["backend"] == "tmux" and run["status"] == "completed"
    transcripts = list((Path(os.environ["HOME"]) / ".claude" / "projects").rglob("*.jsonl"))
    assert [t.stem for t in transcripts] == [run["session_id"]]  # from the SessionStart hook
    assert orch("output", "ia", check=True).stdout == "answer: first task\n"
    assert run["num_turns"] == 1 and run["tool_calls"] == 1 and run["exit_code"] is None
    pane = handle(tmux_project, run["run_id"])["pane"]
    assert handle(tmux_project, run["run_id"])["interactive"] is True
    # The person takes over: later turns keep the output current; the run stays completed.
    _type(tmux_server, pane, "NOLAST second question")  # output from the transcript then
    wait_for(lambda: orch("output", "ia").stdout == "answer: NOLAST second question\n")
    assert status_json("ia")[0]["num_turns"] == 2
    _type(tmux_server, pane, "/exit")
    wait_for(lambda: status_json("ia")[0]["exit_code"] == 0)
    assert status_json("ia")[0]["status"] == "completed"


def test_interactive_timeout_cancel_closed_pane_and_early_exit(
    tmux_project: Path, tmux_server: Tm, fake_interactive: None
) -> None:
    orch("launch", "slow", "SLEEP=30 x", "--interactive", "--timeout", "1", check=True)
    orch("launch", "stopme", "SLEEP=30 y", "--interactive", check=True)
    orch("launch", "closed", "SLEEP=30 z", "--interactive", check=True)
    orch("launch", "quitter", "NOSTOP", "--interactive", check=True)
    for name in ("stopme", "closed", "quitter"):
        wait_for(lambda n=name: status_json(n)[0]["session_id"])
    assert "stopme: cancelled" in orch("cancel", "stopme", check=True).stdout
    tmux_server(
        "kill-window", "-t", handle(tmux_project, status_json("closed")[0]["run_id"])["window"]
    )
    _type(tmux_server, handle(tmux_project, status_json("quitter")[0]["run_id"])["pane"], "/exit")
    orch("wait", timeout=60)
    slow, stopme, closed, quitter = status_json("slow", "stopme", "closed", "quitter")
    assert slow["status"] == "timed_out" and slow["error"] == "timed out after 1.0 s"
    assert stopme["status"] == "cancelled"
    assert closed["status"] == "lost" and "tmux pane closed" in closed["error"]
    assert quitter["status"] == "failed" and "before its first turn ended" in quitter["error"]
    for run in (slow, stopme, closed):
        wait_for(lambda r=run: pid_gone(handle(tmux_project, r["run_id"])["pid"]))


def test_orch_parallel_creates_the_windows_in_one_tmux_call(
    tmux_project: Path, tmux_server: Tm, fast_claude: Path, tmp_path: Path
) -> None:
    calls = tmp_path / "tmux-calls"
    spy = tmp_path / "tmux-spy"
    spy.write_text(f'#!/bin/sh\necho "$*" >> "{calls}"\nexec "{tmux_server.binary}" "$@"\n')
    spy.chmod(0o755)
    (tmp_path / "config.toml").write_text(f'[backends.tmux]\ntmux = "{spy}"\n')
    tasks = [f"batch task {i}" for i in range(10)]
    r = orch("parallel", *tasks, "--max-parallel", "10", "--json", check=True)
    assert {x["status"] for x in json.loads(r.stdout)} == {"running"}
    # One batched call for all ten (plus one that found no session yet on this fresh server,
    # after which the first window creates it), not ten.
    new_window_calls = [c for c in calls.read_text().splitlines() if "new-window" in c]
    assert len(new_window_calls) <= 2, new_window_calls
    assert new_window_calls[-1].count("new-window") >= 9
    orch("wait", check=True, timeout=120)
    assert {x["status"] for x in status_json()} == {"completed"}


def test_interactive_subagent_stop_clear_and_resume_beside_its_claude(
    tmux_project: Path, tmux_server: Tm, fake_interactive: None
) -> None:
    """A sub-agent's Stop mid-turn does not complete the run; a /clear does not move its
    session; a resume waits until the person has quit the claude still open on the session."""
    orch("launch", "ia", "SUBAGENT SLEEP=8 task", "--interactive", check=True)
    run = wait_for(lambda: status_json("ia")[0]["session_id"] and status_json("ia")[0])
    pane = handle(tmux_project, run["run_id"])["pane"]
    wait_for(lambda: "sub-agent stopped" in tmux_server.capture(pane))
    time.sleep(0.6)  # the supervisor polls stop.json every 0.25 s
    assert status_json("ia")[0]["status"] == "running"
    orch("wait", "ia", check=True, timeout=60)
    assert orch("output", "ia", check=True).stdout == "answer: SUBAGENT SLEEP=8 task\n"
    sid = run["session_id"]

    r = orch("resume", "ia", "more")
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr.startswith("orch: error: agent 'ia' is still open in its tmux window")
    assert r.stderr.count("\n") == 1 and "/exit" in r.stderr
    assert len(status_json("ia", all_=True)) == 1  # nothing recorded

    _type(tmux_server, pane, "/clear")
    _type(tmux_server, pane, "after clear")
    wait_for(lambda: orch("output", "ia").stdout == "answer: after clear\n")
    assert status_json("ia")[0]["session_id"] == sid

    _type(tmux_server, pane, "/exit")
    wait_for(lambda: status_json("ia")[0]["exit_code"] == 0)
    orch("resume", "ia", "third", check=True)
    orch("wait", "ia", check=True, timeout=60)
    second = status_json("ia")[0]
    assert second["run_id"] != run["run_id"] and second["session_id"] == sid


def test_a_worktree_agent_works_in_its_worktree_window(tmux_project: Path, tmux_server: Tm) -> None:
    git_project(tmux_project)
    orch("launch", "wt.a", "edit APPEND=f.txt:w SLEEP=2", "--worktree", check=True)
    run = status_json("wt.a")[0]
    wt = Path(run["worktree"])
    pane = wait_for(lambda: _agent_panes(tmux_server).get("wt.a"))
    assert Path(pane["path"]) == wt  # the window opened in the worktree
    orch("wait", "wt.a", check=True, timeout=60)
    assert (wt / "f.txt").read_text() == "base\nw\n"
    assert (tmux_project / "f.txt").read_text() == "base\n"
    assert status_json("wt.a")[0]["changes"]["files"] == 1

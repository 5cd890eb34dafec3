"""The ssh backend against real OpenSSH servers on loopback, with the fast fake claude installed
"remotely" (the life-cycle mechanics); test_ssh_real.py runs the real Claude Code CLI."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from orch_plugins.backend import BackendContext
from orch_plugins.backends.ssh.backend import SshBackend
from orch_plugins.backends.ssh.hosts import Host
from orch_plugins.backends.ssh.transport import NO_FALLBACK, SshTransport
from orch_plugins.config import load_config
from orch_plugins.errors import OrchError
from orch_plugins.supervisor import descendants
from tests.helpers import Follow, handle, orch, pid_gone, status_json, wait_for
from tests.ssh.conftest import (
    FAKE,
    LOCAL_SECRET_KEY,
    LOCAL_SECRET_URL,
    ConfigureFn,
    drop_masters,
    tree_gone,
)
from tests.ssh.sshd import Hosts, SshdMissing, start_hosts

HOSTILE = (
    'it\'s "quoted" $(touch /tmp/orch-ssh-pwned) `id` $HOME; echo pwned | cat && exit 1\n'
    "\tline2 ünïcødé 🚀 \\ %s {task} '\"'\"' \r\n\x1b[31m -oProxyCommand=x  "
)


def ended(*names: str, timeout: float = 60) -> list[dict]:
    def check() -> list[dict] | None:
        runs = status_json(*names)
        return runs if all(r["status"] not in ("queued", "running") for r in runs) else None

    return wait_for(check, timeout=timeout, interval=0.2)


# -- life cycle ---------------------------------------------------------------------------------


def test_placement_waiting_output_logs_and_hostile_text(
    ssh_project: Path, two_hosts: Hosts, configure: ConfigureFn
) -> None:
    configure(hosts={"h1": {**FAKE, "max_parallel": 1}, "h2": {**FAKE, "max_parallel": 1}})
    first = HOSTILE + " SLEEP=3"
    r = orch("parallel", first, "second SLEEP=3", "third", "-b", "ssh", "--json", check=True)
    runs = json.loads(r.stdout)
    assert [x["status"] for x in runs] == ["running"] * 3  # admission's slots; the 3rd waits
    project = ssh_project
    assert handle(project, "agent1")["host"] == "h1"  # least loaded, config order on a tie
    assert handle(project, "agent2")["host"] == "h2"
    assert handle(project, "agent3")["deferred"] is True
    assert status_json("agent3")[0]["error"].startswith("waiting: every host is busy (h1 1/1")
    follow = orch("logs", "-f", "agent2", check=True).stdout  # follows it home as it runs
    assert "[start] session" in follow and follow.rstrip().endswith("[completed]")
    runs = ended()
    assert [x["status"] for x in runs] == ["completed"] * 3
    assert all(x["error"] is None for x in runs)
    assert handle(project, "agent3")["host"] in ("h1", "h2")
    for name, text in (("agent1", first), ("agent2", "second SLEEP=3"), ("agent3", "third")):
        out = orch("output", name, check=True).stdout
        assert out.startswith(f"sha256={hashlib.sha256(text.encode()).hexdigest()}\n")
        logs = orch("logs", name, check=True).stdout
        assert "[tool] Bash: true" in logs and "[done]" in logs
    assert not Path("/tmp/orch-ssh-pwned").exists()
    # The remote side: its own run directories, and nothing of the orchestrator's secrets.
    h1_runs, h2_runs = two_hosts["h1"].runs(), two_hosts["h2"].runs()
    assert len(h1_runs) + len(h2_runs) == 3 and h1_runs and h2_runs
    for run_dir in h1_runs + h2_runs:
        spec_text = (run_dir / "spec.json").read_text()
        assert LOCAL_SECRET_KEY not in spec_text and LOCAL_SECRET_URL not in spec_text
        spec = json.loads(spec_text)
        assert "ORCH_STATE_DIR" not in spec["env"] and spec["options"]["report"] == "file"
        assert (run_dir / "supervisor.py").exists()  # shipped, not pre-installed
    a1 = Path(handle(project, "agent1")["remote_dir"])
    assert (a1 / "prompt.txt").read_bytes() == first.encode()
    assert (Path(status_json("agent1")[0]["log_path"])).read_bytes() == (
        a1 / "events.jsonl"
    ).read_bytes()

    # Sessions live where they ran: resume and --from go back to that host and directory.
    sid = status_json("agent2")[0]["session_id"]
    orch("resume", "agent2", "again", check=True)
    orch("launch", "forked", "branch off", "--from", "agent1", check=True)
    assert handle(project, "agent2")["host"] == "h2" and handle(project, "forked")["host"] == "h1"
    resumed, forked = ended("agent2", "forked")
    assert resumed["status"] == forked["status"] == "completed"
    assert resumed["session_id"] == sid
    out = orch("output", "forked", check=True).stdout
    assert '"--resume", "' + status_json("agent1")[0]["session_id"] in out
    assert "--fork-session" in out
    assert handle(project, "forked")["cwd"] == handle(project, "agent1")["cwd"]


def test_send_reaches_a_remote_print_mode_agent(
    ssh_project: Path, two_hosts: Hosts, configure: ConfigureFn, tmp_path: Path
) -> None:
    """orch send to an agent on a host: the text (hostile, never on a command line) reaches
    its claude as the next user turn before the run ends, the message shows in orch logs once
    (the remote log comes home with it), and an ended agent refuses."""
    configure(hosts={"h1": FAKE})
    hold = tmp_path / "go-on"
    orch("launch", "s1", f"HOLD={hold}", "-b", "ssh", check=True)
    wait_for(lambda: status_json("s1")[0]["tool_calls"] == 1, timeout=60)  # held mid-turn
    r = orch("send", "s1", HOSTILE, check=True)
    assert r.stdout == "s1: message 1 sent\n"
    hold.touch()
    [run] = ended("s1")
    assert run["status"] == "completed"
    # Byte for byte (orch() reads text with universal newlines: \r\n would pass as \n).
    assert Path(run["output_path"]).read_bytes() == f"reply: {HOSTILE}".encode()
    logs = orch("logs", "s1", check=True).stdout
    assert logs.count("[message from user at 20") == 1
    assert "[orch] 1 message handed to the agent as its next turn" in logs
    assert not Path("/tmp/orch-ssh-pwned").exists()
    r = orch("send", "s1", "more")
    assert r.returncode == 1 and r.stderr == (
        "orch: error: agent 's1' has ended (completed); resume it instead: orch resume s1 TASK\n"
    )


def test_cancel_timeout_retries_and_lost(
    ssh_project: Path, two_hosts: Hosts, configure: ConfigureFn, tmp_path: Path
) -> None:
    fails = tmp_path / "api-fails"
    configure(
        hosts={
            "h1": {**FAKE, "max_parallel": 4, "env": {"FAKE_API_FAIL_FILE": str(fails)}},
            "h2": {**FAKE, "max_parallel": 4},
        }
    )
    orch("launch", "stopme", "SLEEP=60", "--host", "h2", check=True)
    orch("launch", "slow", "SLEEP=60", "--host", "h2", "--timeout", "1.5", check=True)
    orch("launch", "flaky", "API=529 API_FAILS=1", "--host", "h1", "--retries", "2", check=True)
    orch("launch", "victim", "SLEEP=60", "--host", "h1", check=True)
    project = ssh_project
    stop = wait_for(lambda: status_json("stopme")[0]["session_id"] and handle(project, "stopme"))
    children = wait_for(lambda: descendants(stop["pid"]))
    assert "stopme: cancelled" in orch("cancel", "stopme", check=True).stdout
    assert all(pid_gone(p) for p in [stop["pid"], *children])
    state = json.loads((Path(stop["remote_dir"]) / "state.json").read_text())
    assert state["status"] == "cancelled"

    victim = wait_for(lambda: status_json("victim")[0]["session_id"] and handle(project, "victim"))
    orphans = wait_for(lambda: descendants(victim["pid"]))
    os.kill(victim["pid"], signal.SIGKILL)
    wait_for(lambda: pid_gone(victim["pid"]))
    [run] = status_json("victim")
    assert run["status"] == "lost"
    wait_for(lambda: all(pid_gone(p) for p in orphans), timeout=15)  # no orphaned claude

    slow, flaky = ended("slow", "flaky")
    assert slow["status"] == "timed_out" and slow["error"] == "timed out after 1.5 s"
    assert wait_for(lambda: tree_gone(handle(project, "slow")["pid"]))
    assert flaky["status"] == "completed" and flaky["attempt"] == 2
    assert len(fails.read_text().splitlines()) == 2  # the host's own env reached claude


def test_connection_drop_and_one_round_trip_per_host(
    ssh_project: Path, two_hosts: Hosts, configure: ConfigureFn, tmp_path: Path
) -> None:
    calls = tmp_path / "ssh-calls"
    wrapper = tmp_path / "ssh-counting"
    wrapper.write_text(f'#!/bin/sh\necho call >> "{calls}"\nexec ssh "$@"\n')
    wrapper.chmod(0o755)
    configure(
        hosts={"h1": {**FAKE, "max_parallel": 4}, "h2": {**FAKE, "max_parallel": 4}},
        backend={"ssh": str(wrapper)},
    )
    orch("parallel", "SLEEP=30", "SLEEP=30", "SLEEP=30", "--host", "h1", check=True)
    orch("launch", "other", "SLEEP=30", "--host", "h2", check=True)
    project = ssh_project
    wait_for(lambda: all(r["session_id"] for r in status_json()))
    calls.write_text("")
    runs = status_json()
    assert [r["status"] for r in runs] == ["running"] * 4
    assert len(calls.read_text().splitlines()) == 2  # one call per host, whatever the count

    # Drop every multiplexed master connection: agents run on; the next call reconnects.
    assert drop_masters(two_hosts)
    pids = [handle(project, n)["pid"] for n in ("agent1", "agent2", "agent3", "other")]
    assert not any(pid_gone(p) for p in pids)
    runs = status_json()
    assert [r["status"] for r in runs] == ["running"] * 4 and all(r["error"] is None for r in runs)
    orch("cancel", "--all", check=True)
    assert wait_for(lambda: all(tree_gone(p) for p in pids))


def context(table: dict[str, object], hosts: dict[str, object] | None = None) -> BackendContext:
    """The ssh backend's context with this ``[backends.ssh]`` table (and ``[hosts.*]``)."""
    return BackendContext(Path(".orchestrate"), table, hosts or load_config().hosts)


def slow_calls(transport: SshTransport, host: Host, slow: Path, base: Path, n: int) -> None:
    """``n`` calls at once, from threads, each holding its session for the second that the
    ``slow`` claude's ``--version`` takes; all must succeed."""
    request = {"cmd": "doctor", "claude": str(slow), "base_dir": str(base)}
    replies: list[dict] = []
    threads = [
        threading.Thread(target=lambda: replies.append(transport.call(host, request)[0]))
        for _ in range(n)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(replies) == n and all(r["checks"][1][1] for r in replies)


def test_concurrent_calls_stay_under_sshds_sessions_per_connection(
    two_hosts: Hosts, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """sshd refuses an 11th session on one connection (MaxSessions 10); ssh then quietly opens
    a second connection, losing the multiplexing. The backend's session slots prevent that."""
    monkeypatch.setenv("ORCH_CONFIG", str(tmp_path / "none.toml"))
    slow = tmp_path / "slow-claude"
    slow.write_text("#!/bin/sh\nsleep 1\necho 1.0\n")
    slow.chmod(0o755)
    log = tmp_path / "ssh.log"
    wrapper = tmp_path / "ssh-logging"
    wrapper.write_text(f'#!/bin/sh\nexec ssh -E "{log}" "$@"\n')
    wrapper.chmod(0o755)

    def burst(max_sessions: int) -> str:
        log.write_text("")
        backend = SshBackend(
            context(
                {
                    "ssh": str(wrapper),
                    "ssh_config": str(two_hosts.ssh_config),
                    "control_dir": str(two_hosts.control_dir),
                    "max_sessions": max_sessions,
                }
            )
        )
        host = backend.host("h1")
        backend.transport.call(host, {"cmd": "status", "runs": []})  # the master connection
        slow_calls(backend.transport, host, slow, tmp_path / "b", 12)
        return log.read_text()

    assert "refused" not in burst(8)
    assert "Session open refused" in burst(16)  # the limit is real: without slots it bites


# -- failures -----------------------------------------------------------------------------------


def test_failures_are_clear_and_leave_other_agents_alone(
    ssh_project: Path, two_hosts: Hosts, configure: ConfigureFn
) -> None:
    known_hosts = two_hosts.root / "known_hosts"
    before = known_hosts.read_bytes()
    configure(
        hosts={
            "h1": {**FAKE, "max_parallel": 4},
            "unknown": {"ssh": "h2-unknown"},
            "badkey": {"ssh": "h2-badkey"},
            "nowhere": {"ssh": "nowhere"},
            "noclaude": {"ssh": "h2", "claude": "/nonexistent/claude"},
            "nopython": {"ssh": "h2", "python": "python3-missing"},
        }
    )
    gate = two_hosts.root / "keeper-go"  # the keeper (fake claude) answers once this exists
    orch("launch", "keeper", f"GATE={gate} keep going", "--host", "h1", check=True)
    wait_for(lambda: status_json("keeper")[0]["session_id"])
    r = orch("doctor", "--host", "h1", "--host", "unknown", "--host", "noclaude", timeout=120)
    assert r.returncode == 1
    lines = r.stdout.splitlines()

    def shows(verdict: str, *words: str) -> bool:
        return any(x.startswith(verdict) and all(w in x for w in words) for x in lines)

    assert shows("ok", "h1: claude") and shows("ok", "h1: base_dir"), r.stdout
    assert shows("FAIL", "unknown: ssh", "host key"), r.stdout
    assert shows("ok", "noclaude: ssh") and shows("FAIL", "noclaude: claude"), r.stdout
    # Start afresh, so the launches below each make their own connection.
    drop_masters(two_hosts)

    expected = {
        "unknown": "host key of h2-unknown is unknown or has changed",
        "badkey": "h2-badkey refused the key",
        "nowhere": "cannot reach nowhere",
        "noclaude": "claude not found on the remote host (looked for '/nonexistent/claude'",
        "nopython": "'python3-missing' not found on the host",
    }
    for host, message in expected.items():
        r = orch("launch", f"on-{host}", "task", "--host", host)
        assert r.returncode == 1 and "launched (failed)" in r.stdout
        assert r.stderr.startswith(f"orch: error: on-{host}: launch failed: host {host} (")
        assert message in r.stderr.splitlines()[0], r.stderr
        [run] = status_json(f"on-{host}")
        assert run["status"] == "failed"
        assert run["error"].startswith(f"launch failed: host {host} (")
        assert message in run["error"], run["error"]
    assert known_hosts.read_bytes() == before  # nothing was accepted behind the user's back
    assert two_hosts["h2"].runs() == []
    [keeper] = status_json("keeper")
    assert keeper["status"] == "running" and keeper["error"] is None

    # A host that stops answering: its agents are "status unknown", never "lost".
    two_hosts["h1"].proc.terminate()
    two_hosts["h1"].proc.wait(5)
    drop_masters(two_hosts)
    [keeper] = status_json("keeper")
    assert keeper["status"] == "running"
    assert keeper["error"].startswith("status unknown: host h1 (h1): cannot reach h1")
    gate.touch()  # let the keeper's claude end


# -- configuration and command line (no server needed) -----------------------------------------


def test_ssh_command_line_keeps_the_users_ssh_settings(tmp_path: Path) -> None:
    with pytest.raises(OrchError, match="too long for a unix socket"):
        SshTransport({"control_dir": str(tmp_path / ("x" * 50))}).control_dir()
    short = Path(tempfile.mkdtemp(prefix="oc-"))
    shutil.rmtree(short)
    backend = SshTransport({"control_dir": str(short / "c")})
    host = Host.from_table(
        "h", {"ssh": "me@box", "ssh_config": "~/my_config", "ssh_options": ["ProxyJump=bastion"]}
    )
    argv = backend.ssh_argv(host, backend.remote_command(host))
    joined = " ".join(argv)
    assert argv[:5] == ["ssh", "-F", os.path.expanduser("~/my_config"), "-o", "ProxyJump=bastion"]
    for opt in ("BatchMode=yes", "ControlMaster=auto", "ControlPersist=60"):
        assert opt in argv
    assert f"ControlPath={short / 'c'}/m-{backend.connection_key(host)}" in argv
    assert NO_FALLBACK not in argv
    guarded = backend.ssh_argv(host, "x", no_fallback=True)
    assert guarded[3:7] == ["-o", NO_FALLBACK, "-o", "ProxyJump=bastion"]  # before the user's
    assert "StrictHostKeyChecking" not in joined and "UserKnownHostsFile" not in joined
    assert argv[-3:-1] == ["--", "me@box"]
    assert argv[-1].startswith("exec python3 -S -c 'import sys,types;")  # constant text only
    assert oct((short / "c").stat().st_mode & 0o777) == "0o700"
    shutil.rmtree(short)


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"max_paralel": 2}, "unknown key(s) max_paralel"),
        ({"ssh": "-oProxyCommand=touch /tmp/x"}, "invalid ssh destination"),
        ({"ssh": "box; rm -rf /"}, "invalid ssh destination"),
        ({"ssh_options": ["-oProxyCommand=x"]}, "ssh_options must be a list"),
        ({"max_parallel": 0}, "max_parallel must be"),
        ({"env": {"A B": "x"}}, "env must be a table"),
    ],
)
def test_bad_host_tables_fail_loudly(table: dict, message: str) -> None:
    with pytest.raises(OrchError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Host.from_table("h", table)


def test_a_resume_with_its_transcript_may_go_to_any_host(tmp_path: Path) -> None:
    """Placement of a resume or fork (no network: ``places`` answers from config and spec)."""
    from orch_plugins.backend import LaunchSpec

    hosts = {"h1": {"ssh": "h1", "max_parallel": 2}, "h2": {"ssh": "h2", "max_parallel": 3}}
    backend = SshBackend(BackendContext(tmp_path, {}, hosts))

    def spec(**kw: object) -> LaunchSpec:
        base = dict(run_id=1, name="a", argv=["claude"], env={}, cwd="/", run_dir=str(tmp_path))
        paths = dict(state_dir="/", prompt_path="p", output_path="o", log_path="l")
        return LaunchSpec(**base, **paths, resume_from={"host": "h2"}, **kw)  # type: ignore[arg-type]

    copy = str(tmp_path / "transcript.jsonl.gz")
    # The transcript travels: every host, the source's first (it wins a tie).
    assert list(backend.places(spec(resume_transcript=copy)).items()) == [("h2", 3), ("h1", 2)]
    with_host = spec(resume_transcript=copy, options={"host": "h1"})
    assert backend.places(with_host) == {"h1": 2}
    # No copy kept: only where the session's transcript is.
    assert backend.places(spec()) == {"h2": 3}
    with pytest.raises(OrchError, match=r"no copy of the session's transcript.*not 'h1'"):
        backend.places(spec(options={"host": "h1"}))
    # Continuing in its worktree: only where the worktree is.
    tree = {"path": "/w", "branch": "orch/a", "create": False}
    assert backend.places(spec(resume_transcript=copy, worktree=tree)) == {"h2": 3}
    with pytest.raises(OrchError, match=r"works in its worktree on its host.*not 'h1'"):
        backend.places(spec(resume_transcript=copy, worktree=tree, options={"host": "h1"}))


def test_no_hosts_configured_is_a_clear_launch_error(
    ssh_project: Path, configure: ConfigureFn
) -> None:
    configure(hosts={})
    r = orch("launch", "nowhere", "task", "--backend", "ssh")
    assert r.returncode == 1 and "no remote hosts: pass --host HOST" in r.stderr
    [run] = status_json("nowhere")
    assert run["status"] == "failed" and "no remote hosts: pass --host HOST" in run["error"]


def test_remote_helper_compiles_only_the_process_module(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The status path must stay cheap: the shipped procs.py only, not the supervisor."""
    import types

    from orch_plugins import procs, supervisor
    from orch_plugins.backends.ssh import remote

    shipped = types.ModuleType("orch_supervisor")
    shipped.SOURCE = Path(supervisor.__file__).read_bytes()  # type: ignore[attr-defined]
    shipped.PROCS = Path(procs.__file__).read_bytes()  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "orch_supervisor", shipped)
    monkeypatch.setattr(remote, "_procs", None)
    helpers = remote.procs()
    assert helpers is not procs and not hasattr(helpers, "Supervisor")
    assert helpers.pid_alive(os.getpid(), helpers.proc_start_time(os.getpid()))
    assert callable(helpers.stop_supervisor)


# -- a host that allows fewer sessions per connection -------------------------------------------


@pytest.fixture
def limited(tmp_path: Path) -> Iterator[Hosts]:
    """One sshd that allows 4 sessions per connection (``MaxSessions 4``) and logs logins."""
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "LANG": "C.UTF-8"}
    try:
        hosts = start_hosts(
            tmp_path / "limited",
            env,
            names=("h1",),
            addresses=("127.0.0.5",),
            sshd_options={"h1": ["MaxSessions 4", "LogLevel INFO"]},
        )
    except SshdMissing as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield hosts
    finally:
        hosts.stop()


def test_a_host_allowing_fewer_sessions_is_learnt_not_turned_into_logins(
    project: Path, limited: Hosts, tmp_path: Path
) -> None:
    """orch assumes 8 sessions per connection; this sshd allows 4. A refused session must not
    quietly become a full login: the host's limit is lowered (for every later process too) and
    the call asks the master again. ``orch doctor --host`` measures the limit."""
    (tmp_path / "config.toml").write_text(limited.config_toml(hosts={"h1": FAKE}))
    slow = tmp_path / "slow-claude"
    slow.write_text("#!/bin/sh\nsleep 1\necho 1.0\n")
    slow.chmod(0o755)
    config = BackendContext.of("ssh", load_config(), project / ".orchestrate")
    host = SshBackend(config).host("h1")

    def burst() -> None:
        # A new backend, as a new process would have: only the file remembers.
        slow_calls(SshBackend(config).transport, host, slow, tmp_path / "b", 10)

    SshBackend(config).transport.call(host, {"cmd": "status", "runs": []})  # the master connection
    assert limited.logins("h1") == 1
    burst()
    assert limited.logins("h1") == 1  # every session went through the one connection
    learnt = SshBackend(config).transport.session_limit(host)
    assert 1 <= learnt <= 4
    limits = SshBackend(config).transport.learnt_limits()
    assert limits[SshTransport.connection_key(host)]["how"] == "refused"

    r = orch("doctor", "--host", "h1", timeout=120)  # (no API key here: "local: api" fails)
    line = next(x for x in r.stdout.splitlines() if "h1: sessions" in x)
    assert line.startswith("ok") and "4 per connection (sshd MaxSessions)" in line, r.stdout
    assert "orch opens at most 4 at once" in line
    assert SshBackend(config).transport.session_limit(host) == 4  # measured and kept
    burst()  # within the limit: never refused again
    limits = SshBackend(config).transport.learnt_limits()
    assert limits[SshTransport.connection_key(host)]["how"] == "probed"
    assert limited.logins("h1") == 1
    drop_masters(limited)  # its socket stays behind: the next call must replace the master
    assert SshBackend(config).transport.control_path(host).is_socket()
    SshBackend(config).transport.call(host, {"cmd": "status", "runs": []})
    assert limited.logins("h1") == 2


def test_logs_follow_shows_a_remote_answer_while_it_is_written(
    ssh_project: Path, two_hosts: Hosts, configure: ConfigureFn
) -> None:
    configure(hosts={"h1": FAKE})
    orch("launch", "writer", "STREAM=15 please", "--host", "h1", check=True)
    follow = Follow("writer")
    first = wait_for(lambda: "word3 " in follow.text() and follow.text(), timeout=30)
    assert "word14" not in first and status_json("writer")[0]["status"] == "running"
    text = follow.wait(60)
    words = "".join(f"word{i} " for i in range(15))
    assert f"[writing] {words}\n" in text and "[assistant]" not in text, text
    assert text.splitlines()[-1] == "[completed]"
    run = status_json("writer")[0]
    assert not (Path(run["log_path"]).parent / "live.txt").exists()
    assert '"stream_event"' not in Path(run["log_path"]).read_text()

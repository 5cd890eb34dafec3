"""The ssh backend with the real Claude Code CLI on two loopback "hosts" (sshd), against the
Messages API stand-in that each host reaches with its own settings (sshd's SetEnv)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from orch_plugins.supervisor import TRANSCRIPT_COPY, descendants, transcript_key
from orch_plugins.testing.api import MessagesStandIn, Reply
from tests.helpers import (
    handle,
    leaver,
    megabyte_answers,
    orch,
    pid_gone,
    running,
    status_json,
    use_real_claude,
    wait_for,
)
from tests.ssh.conftest import drop_masters
from tests.ssh.sshd import Hosts

pytestmark = pytest.mark.e2e

HOSTILE = 'ALPHA it\'s "q" $(touch /tmp/orch-ssh-pwned) `id` ; | & > x\n\tünï 🚀 {task} %s\\'


def test_two_hosts_placement_output_and_resume_on_the_right_host(
    ssh_project: Path, two_hosts: Hosts, messages_api: MessagesStandIn
) -> None:
    messages_api.on("ALPHA", Reply.text("alpha result"))
    messages_api.on("BETA", Reply.text("beta result"))
    messages_api.on("SECOND TURN", Reply.text("second answer"))
    orch("parallel", HOSTILE, "BETA task", "--backend", "ssh", check=True)
    project = ssh_project
    assert [handle(project, n)["host"] for n in ("agent1", "agent2")] == ["h1", "h2"]
    orch("wait", "--timeout", "120", check=True, timeout=150)
    assert orch("output", "agent1", check=True).stdout == "alpha result\n"
    assert orch("output", "agent2", check=True).stdout == "beta result\n"
    assert "[done]" in orch("logs", "agent2", check=True).stdout
    prompts = {req.prompt_text for req in messages_api.conversation_requests()}
    assert HOSTILE in prompts  # byte for byte: stdin and files, never a shell
    assert not Path("/tmp/orch-ssh-pwned").exists()
    first = {r["name"]: r for r in status_json()}
    for name, host in (("agent1", "h1"), ("agent2", "h2")):
        sid = first[name]["session_id"]
        assert sid and first[name]["cost_usd"] > 0
        assert first[name]["claude_pid"]  # the remote claude, through state.json
        # The transcript is on the host that ran the agent, under that host's HOME.
        assert list(two_hosts[host].home.glob(f".claude/projects/*/{sid}.jsonl"))

    orch("resume", "agent2", "SECOND TURN now", check=True)
    assert handle(project, "agent2")["host"] == "h2"
    orch("wait", "agent2", check=True, timeout=120)
    second = status_json("agent2")[0]
    assert second["session_id"] == first["agent2"]["session_id"]
    assert orch("output", "agent2", check=True).stdout == "second answer\n"
    req = next(r for r in messages_api.conversation_requests() if "SECOND TURN" in r.prompt_text)
    assert any("BETA" in t for t in req.all_user_texts)  # the model saw the earlier turn
    assert len(two_hosts["h2"].runs()) == 2 and len(two_hosts["h1"].runs()) == 1
    # On the host, the resumed run's supervisor was told which claude ran the session before.
    spec = json.loads((Path(handle(project, "agent2")["remote_dir"]) / "spec.json").read_text())
    assert [c["pid"] for c in spec["previous_claudes"]] == [first["agent2"]["claude_pid"]]


def test_a_resume_runs_on_any_host_with_its_context(
    ssh_project: Path,
    two_hosts: Hosts,
    messages_api: MessagesStandIn,
    claude_env: dict[str, str],
    claude_bin: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    messages_api.on("FIRST", Reply.text("first answer"))
    messages_api.on("SECOND", Reply.text("second answer"))
    messages_api.on("THIRD", Reply.text("third answer"))
    orch("launch", "roamer", "FIRST task: remember the word OSPREY", "--host", "h1", check=True)
    orch("wait", "roamer", check=True, timeout=120)
    first = status_json("roamer")[0]
    sid = first["session_id"]

    def transcripts(host: str) -> list[Path]:
        return list(two_hosts[host].home.glob(f".claude/projects/*/{sid}.jsonl"))

    # The run's copy came home with its other files: the host's transcript, gzipped.
    [on_h1] = transcripts("h1")
    local_copy = Path(first["output_path"]).parent / TRANSCRIPT_COPY
    assert gzip.decompress(local_copy.read_bytes()) == on_h1.read_bytes()
    assert not transcripts("h2")

    # Resumed on the other host (--host): the copy travels, the model sees the earlier turn.
    orch("resume", "roamer", "SECOND: which word?", "--host", "h2", check=True)
    assert handle(ssh_project, "roamer")["host"] == "h2"
    orch("wait", "roamer", check=True, timeout=120)
    second = status_json("roamer")[0]
    assert second["status"] == "completed", second["error"]
    assert second["session_id"] == sid
    req = next(r for r in messages_api.conversation_requests() if "SECOND" in r.prompt_text)
    assert any("OSPREY" in t for t in req.all_user_texts)
    key = transcript_key(str(two_hosts["h2"].workdir))  # in h2's workdir, as a new launch
    assert [p.parent.name for p in transcripts("h2")] == [key]

    # Back on h1, the newer copy from h2 replaces h1's older transcript of the session.
    orch("resume", "roamer", "THIRD: and the answer before?", "--host", "h1", check=True)
    assert handle(ssh_project, "roamer")["host"] == "h1"
    orch("wait", "roamer", check=True, timeout=120)
    third = status_json("roamer")[0]
    assert third["status"] == "completed", third["error"]
    req = next(r for r in messages_api.conversation_requests() if "THIRD" in r.prompt_text)
    texts = req.all_user_texts
    assert any("OSPREY" in t for t in texts) and any("SECOND" in t for t in texts)

    # And on this machine, with another backend: the copy h1 kept came home and goes along.
    messages_api.on("FOURTH", Reply.text("fourth answer"))
    use_real_claude(monkeypatch, claude_env, claude_bin)
    orch("resume", "roamer", "FOURTH: all the words?", "--backend", "subprocess", check=True)
    orch("wait", "roamer", check=True, timeout=120)
    fourth = status_json("roamer")[0]
    assert fourth["status"] == "completed" and fourth["backend"] == "subprocess"
    req = next(r for r in messages_api.conversation_requests() if "FOURTH" in r.prompt_text)
    assert any("THIRD" in t for t in req.all_user_texts)


def test_agent_survives_a_dropped_connection_and_cancels(
    ssh_project: Path, two_hosts: Hosts, messages_api: MessagesStandIn
) -> None:
    messages_api.on("SLOW", Reply.text("too late", delay=60))
    orch("launch", "slow", "SLOW job", "--host", "h2", check=True)
    wait_for(lambda: status_json("slow")[0]["session_id"], timeout=60, interval=0.2)
    h = handle(ssh_project, "slow")
    children = wait_for(lambda: descendants(h["pid"]))  # claude runs under the supervisor
    assert drop_masters(two_hosts)  # the orchestrator's connection is gone mid-run
    [run] = status_json("slow")
    assert run["status"] == "running" and run["error"] is None
    assert not pid_gone(h["pid"])
    assert "[start] session" in orch("logs", "slow", check=True).stdout
    assert "slow: cancelled" in orch("cancel", "slow", check=True).stdout
    assert all(pid_gone(p) for p in [h["pid"], *children])
    state = json.loads((Path(h["remote_dir"]) / "state.json").read_text())
    assert state["status"] == "cancelled"


def test_one_and_two_megabyte_answers_come_home_whole(
    ssh_project: Path, two_hosts: Hosts, messages_api: MessagesStandIn
) -> None:
    extra = {"mb1": ["--host", "h1"], "mb2": ["--host", "h2"]}
    for name, (run, text) in megabyte_answers(messages_api, "ssh", extra).items():
        assert orch("output", name, check=True).stdout == text
        remote = Path(handle(ssh_project, name)["remote_dir"])
        assert (remote / "output.md").read_bytes() == text.encode("utf-8")
        assert Path(run["log_path"]).read_bytes() == (remote / "events.jsonl").read_bytes()


def test_what_a_remote_agent_leaves_is_stopped(
    ssh_project: Path, two_hosts: Hosts, messages_api: MessagesStandIn
) -> None:
    done_cmd, done = leaver("DONE")
    stop_cmd, stop = leaver("STOP")
    messages_api.on("FINISHES", Reply.bash(done_cmd), Reply.text("finished", delay=3))
    messages_api.on("CANCELLED", Reply.bash(stop_cmd), Reply.text("never", delay=60))
    orch("launch", "done", "FINISHES", "--host", "h1", "--role", "implementer", check=True)
    orch("launch", "stopme", "CANCELLED", "--host", "h2", "--role", "implementer", check=True)
    wait_for(lambda: len(running(done)) == 2 and len(running(stop)) == 2, timeout=90)
    orch("wait", "done", check=True, timeout=120)
    wait_for(lambda: not running(done), timeout=15)
    assert "stopme: cancelled" in orch("cancel", "stopme", check=True).stdout
    assert not running(stop)

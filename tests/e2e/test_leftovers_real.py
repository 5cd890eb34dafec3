"""What an agent's tools start is stopped when the run ends: completion, cancel, timeout.

The real Claude Code CLI runs a Bash tool call that leaves processes behind the way dev servers
and watchers do: one in a new session (``setsid``), one double-forked (its parent exits at
once). Both still carry the agent's ``ORCH_RUN_ID``; neither is below claude any more.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from orch_plugins import procs
from orch_plugins.testing.api import MessagesStandIn, Reply
from tests.helpers import leaver, orch, running, status_json, wait_for

pytestmark = pytest.mark.e2e


def cgroup_of(run: dict) -> str | None:
    """Where the run's cgroup is (or was), from the token in its spec."""
    env = json.loads(Path(run["output_path"]).with_name("spec.json").read_text())["env"]
    return procs.find_cgroup(procs.cgroup_name(run["run_id"], env["ORCH_RUN_TOKEN"]))


def in_orch_cgroup(pid: int) -> bool:
    try:
        return "/orch-" in Path(f"/proc/{pid}/cgroup").read_text()
    except OSError:
        return False


@pytest.mark.parametrize("containment", ["auto", "tree"])
def test_what_an_agent_leaves_is_stopped_at_its_end(
    real_project: Path,
    messages_api: MessagesStandIn,
    monkeypatch: pytest.MonkeyPatch,
    containment: str,
) -> None:
    monkeypatch.setenv("ORCH_CONTAINMENT", containment)
    done_cmd, done = leaver("DONE")
    stop_cmd, stop = leaver("STOP")
    slow_cmd, slow = leaver("SLOW")
    messages_api.on("FINISHES", Reply.bash(done_cmd), Reply.text("finished", delay=3))
    messages_api.on("CANCELLED", Reply.bash(stop_cmd), Reply.text("never", delay=60))
    messages_api.on("TIMES OUT", Reply.bash(slow_cmd), Reply.text("never", delay=60))
    args = ("--role", "implementer")
    orch("launch", "done", "FINISHES", *args, check=True)
    orch("launch", "stopme", "CANCELLED", *args, check=True)
    if containment == "auto":
        orch("launch", "slow", "TIMES OUT", *args, "--timeout", "15", check=True)
    for needle in (done, stop) + ((slow,) if containment == "auto" else ()):
        pids = wait_for(lambda n=needle: len(running(n)) == 2 and running(n), timeout=90)
        # Where this machine allows a cgroup (root, no systemd: this CI), auto uses one.
        assert all(in_orch_cgroup(p) for p in pids) == (containment == "auto")

    orch("wait", "done", check=True, timeout=120)
    assert orch("output", "done", check=True).stdout == "finished\n"
    wait_for(lambda: not running(done), timeout=15)

    assert "stopme: cancelled" in orch("cancel", "stopme", check=True).stdout
    assert not running(stop)

    if containment == "auto":
        r = orch("wait", "slow", timeout=120)
        assert r.returncode == 1 and "slow: timed_out" in r.stdout
        wait_for(lambda: not running(slow), timeout=15)
        # The runs' cgroups are removed once empty.
        assert not [c for c in map(cgroup_of, status_json()) if c and Path(c).exists()]


def test_keep_children_leaves_them_running(
    real_project: Path, messages_api: MessagesStandIn
) -> None:
    command, needle = leaver("KEEP")
    messages_api.on("KEEPS", Reply.bash(command), Reply.text("kept"))
    orch("launch", "keeper", "KEEPS", "--role", "implementer", "--keep-children", check=True)
    orch("wait", "keeper", check=True, timeout=120)
    pids = running(needle)
    try:
        assert len(pids) == 2  # still there after the run completed
        env = Path(f"/proc/{pids[0]}/environ").read_bytes().split(b"\0")
        run_id = status_json("keeper")[0]["run_id"]
        assert f"ORCH_RUN_ID={run_id}".encode() in env
        assert any(e.startswith(b"ORCH_RUN_TOKEN=") for e in env)
    finally:
        for pid in pids:
            os.kill(pid, 9)
        cgroup = cgroup_of(status_json("keeper")[0])
        if cgroup:  # the kept processes held it; now it can go
            procs.remove_cgroup(cgroup)


def test_a_sub_agent_an_agent_launched_is_not_its_leftover(
    real_project: Path, messages_api: MessagesStandIn
) -> None:
    """A sub-agent's supervisor ends up below its launcher's supervisor (a subreaper), and
    would start in its cgroup, yet it is a run of its own: the launcher's end must not stop
    it. (The sub-agent makes no cgroup of its own here: its claude would stay in its
    launcher's, had its supervisor not been started outside it.)"""
    launch = f"ORCH_CONTAINMENT=tree {sys.executable} -m orch_plugins.cli launch sub 'SUB task'"
    messages_api.on("PARENT", Reply.bash(launch), Reply.text("parent done"))
    messages_api.on("SUB task", Reply.text("sub done", delay=6))
    orch("launch", "parent", "PARENT", "--role", "implementer", check=True)
    orch("wait", "parent", check=True, timeout=120)
    assert status_json("sub")[0]["status"] == "running"
    orch("wait", "sub", check=True, timeout=120)
    assert orch("output", "sub", check=True).stdout == "sub done\n"

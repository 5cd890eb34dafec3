"""The ray backend on a real local Ray cluster (a head and a second node, one agent slot each)
with the real Claude Code CLI on both, against the Messages API stand-in.

Claude starts are few on purpose (~0.75 CPU-s each): one test covers the queue, placement,
output, cost, session ids, transcripts and hostile task text with three agents.
"""

from __future__ import annotations

import gzip
import importlib.metadata
import json
import re
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from orch_plugins.testing.api import MessagesStandIn, Reply
from tests.helpers import git, git_project, handle, orch, status_json, wait_for
from tests.ray.cluster import Cluster
from tests.ray.conftest import ray_config

pytestmark = pytest.mark.e2e

HOSTILE = 'QUICK it\'s "q" $(touch /tmp/orch-ray-pwned) `id` ; | & > x\n\tünï 🚀 {task} %s\\'
ON_HEAD = '{"claude": 1, "head": 1}'
ON_WORKER = '{"claude": 1, "worker": 1}'
RAY_VERSION = importlib.metadata.version("ray")


def prompts(api: MessagesStandIn) -> set[str]:
    return {r.prompt_text for r in api.conversation_requests()}


def seen(api: MessagesStandIn, marker: str) -> bool:
    return any(marker in p for p in prompts(api))


def job(cluster: Cluster, project: Path, name: str) -> dict[str, Any]:
    """Ray's own record of the agent's job."""
    sid = handle(project, name)["submission_id"]
    with urllib.request.urlopen(f"{cluster.address}/api/jobs/{sid}", timeout=10) as resp:
        return dict(json.loads(resp.read()))


def node_of(cluster: Cluster, run: dict[str, Any]) -> str:
    """Which node ran ``run``: the one whose HOME holds its run directory there."""
    node = json.loads(Path(run["output_path"]).with_name("ray-node.json").read_text())
    found = [n for n, home in cluster.homes.items() if node["run_dir"].startswith(str(home))]
    assert len(found) == 1, node
    return found[0]


def transcripts(cluster: Cluster, node: str, session: str) -> list[Path]:
    return list(cluster.homes[node].glob(f".claude/projects/*/{session}.jsonl"))


def agent_pids(name: str, run_id: int) -> list[int]:
    """Live processes of the agent on this machine (every node is this machine here): those
    whose environment names it and its run."""
    mine = (f"ORCH_AGENT={name}".encode(), f"ORCH_RUN_ID={run_id}".encode())
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            env = (entry / "environ").read_bytes().split(b"\0")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z" and all(m in env for m in mine):
            out.append(int(entry.name))
    return out


def test_two_slots_run_two_queue_the_third_and_everything_comes_home(
    ray_project: Path, ray_cluster: Cluster, messages_api: MessagesStandIn
) -> None:
    messages_api.on("SLOW-A", Reply.text("answer a", delay=12))
    messages_api.on("SLOW-B", Reply.text("answer b", delay=12))
    messages_api.on("QUICK", Reply.text("answer quick"))
    orch("launch", "a", "SLOW-A", check=True)
    orch("launch", "b", "SLOW-B", check=True)
    try:
        wait_for(lambda: seen(messages_api, "SLOW-A") and seen(messages_api, "SLOW-B"), 180)
    except AssertionError:
        raise AssertionError(orch("status", "--json").stdout) from None
    orch("launch", "c", HOSTILE, check=True)
    # Both slots are taken: Ray keeps the third job PENDING and orch shows it queued.
    wait_for(lambda: status_json("c")[0]["status"] == "queued", timeout=30)
    [c] = status_json("c")
    assert "waiting in the Ray cluster" in c["error"], c
    assert job(ray_cluster, ray_project, "c")["status"] == "PENDING"
    assert " queued " in orch("status", "c", check=True).stdout
    # A Ray-queued agent cancelled: its job is stopped before it ever starts.
    orch("launch", "d", "NEVER-D", check=True)
    wait_for(lambda: job(ray_cluster, ray_project, "d")["status"] == "PENDING", timeout=30)
    assert "d: cancelled" in orch("cancel", "d", check=True, timeout=120).stdout
    assert status_json("d")[0]["status"] == "cancelled"
    # It starts only once one of the first two has ended.
    while not any(r["status"] == "completed" for r in status_json("a", "b")):
        assert not seen(messages_api, "QUICK"), "the third agent started while both slots ran"
        time.sleep(0.3)
    orch("wait", "--timeout", "180", check=True, timeout=200)
    runs = {r["name"]: r for r in status_json()}
    expected = {"a": "answer a", "b": "answer b", "c": "answer quick"}
    for name, text in expected.items():
        run = runs[name]
        assert run["status"] == "completed" and run["error"] is None, run
        assert orch("output", name, check=True).stdout == text + "\n"
        assert run["cost_usd"] > 0 and run["num_turns"] >= 1
        sid = run["session_id"]
        assert sid and sid in Path(run["log_path"]).read_text()  # the events came home
        node = node_of(ray_cluster, run)
        other = "worker" if node == "head" else "head"
        # The transcript is on the node that ran it (its HOME), not on the other one...
        [found] = transcripts(ray_cluster, node, sid)
        assert not transcripts(ray_cluster, other, sid)
        # ... and the copy the run kept came home with it.
        kept = Path(run["output_path"]).with_name("transcript.jsonl.gz")
        assert gzip.decompress(kept.read_bytes()) == found.read_bytes()
    assert {node_of(ray_cluster, runs["a"]), node_of(ray_cluster, runs["b"])} == {
        "head",
        "worker",
    }
    assert not seen(messages_api, "NEVER-D")
    assert job(ray_cluster, ray_project, "d")["status"] == "STOPPED"
    assert HOSTILE in prompts(messages_api)  # byte for byte, never through a shell
    assert not Path("/tmp/orch-ray-pwned").exists()
    assert "[done]" in orch("logs", "c", check=True).stdout
    doctor = orch("doctor").stdout
    expected = rf"ok\s+ray: job API\s+Ray {re.escape(RAY_VERSION)} at {ray_cluster.address}"
    assert re.search(expected, doctor), doctor


def test_cancel_stops_the_job_and_its_claude(
    ray_project: Path, ray_cluster: Cluster, messages_api: MessagesStandIn
) -> None:
    # An answer streamed slowly (~40 s): what claude is writing shows in orch logs meanwhile.
    messages_api.on("HANG", Reply.text("streaming " + "word " * 800, chunk=20, pace=0.2))
    orch("launch", "h", "HANG here", check=True)
    wait_for(lambda: seen(messages_api, "HANG"), timeout=120)
    wait_for(lambda: "[writing] streaming word" in orch("logs", "h").stdout, timeout=30)
    run_id = status_json("h")[0]["run_id"]
    pids = wait_for(lambda: agent_pids("h", run_id), timeout=30)
    assert "h: cancelled" in orch("cancel", "h", check=True, timeout=120).stdout
    [run] = status_json("h")
    assert run["status"] == "cancelled", run
    assert run["session_id"]  # the node's record of the end came home
    assert job(ray_cluster, ray_project, "h")["status"] == "STOPPED"
    wait_for(lambda: not agent_pids("h", run_id), timeout=20)
    assert pids


def test_resume_on_the_other_node_keeps_the_context(
    ray_project: Path,
    ray_cluster: Cluster,
    messages_api: MessagesStandIn,
    claude_bin: str,
    tmp_path: Path,
) -> None:
    messages_api.on("FIRST", Reply.text("first answer"))
    messages_api.on("SECOND", Reply.text("second answer"))
    orch("launch", "r", "FIRST turn", "-o", f"resources={ON_HEAD}", check=True)
    orch("wait", "r", "--timeout", "120", check=True, timeout=150)
    [first] = status_json("r")
    assert node_of(ray_cluster, first) == "head"
    # Agents now go to the second node by default: the resume lands there.
    (tmp_path / "config.toml").write_text(
        ray_config(ray_cluster, claude_bin, resources="{claude = 1, worker = 1}")
    )
    orch("resume", "r", "SECOND turn", check=True)
    orch("wait", "r", "--timeout", "120", check=True, timeout=150)
    [second] = status_json("r")
    assert second["status"] == "completed", second
    assert node_of(ray_cluster, second) == "worker"
    assert second["session_id"] == first["session_id"]
    assert orch("output", "r", check=True).stdout == "second answer\n"
    req = next(r for r in messages_api.conversation_requests() if "SECOND" in r.prompt_text)
    assert any("FIRST" in t for t in req.all_user_texts)  # the model saw the earlier turn
    assert transcripts(ray_cluster, "worker", first["session_id"])


def test_a_worktree_branch_comes_home_for_diff_and_merge(
    ray_project: Path, ray_cluster: Cluster, messages_api: MessagesStandIn
) -> None:
    git_project(ray_project)
    messages_api.on("EDIT", Reply.bash("printf 'from the node\\n' > g.txt"), Reply.text("edited"))
    messages_api.on("MORE", Reply.bash("printf 'more\\n' > h.txt"), Reply.text("more done"))
    orch("launch", "w", "EDIT please", "--worktree", "--role", "implementer", check=True)
    orch("wait", "w", "--timeout", "150", check=True, timeout=180)
    [run] = status_json("w")
    assert run["status"] == "completed" and run["branch"], run
    diff = orch("diff", "w", check=True).stdout
    assert "+from the node" in diff and "g.txt" in diff
    # A resume continues on the branch wherever Ray places it (the branch travels along).
    orch("resume", "w", "MORE work", check=True)
    orch("wait", "w", "--timeout", "150", check=True, timeout=180)
    assert status_json("w")[0]["status"] == "completed"
    diff = orch("diff", "w", check=True).stdout
    assert "+from the node" in diff and "+more" in diff
    orch("merge", "w", check=True)
    assert (ray_project / "g.txt").read_text() == "from the node\n"
    assert (ray_project / "h.txt").read_text() == "more\n"
    assert "orch: w run" in git(ray_project, "log", "--format=%s", "-4")


def test_a_node_that_dies_under_its_agent_shows_lost(
    ray_project: Path, ray_cluster: Cluster, messages_api: MessagesStandIn
) -> None:
    messages_api.on("DOOMED", Reply.text("never", delay=120))
    orch("launch", "d", "DOOMED job", "-o", f"resources={ON_WORKER}", check=True)
    wait_for(lambda: seen(messages_api, "DOOMED"), timeout=120)
    wait_for(lambda: status_json("d")[0]["session_id"], timeout=30)
    ray_cluster.kill_worker()
    try:
        wait_for(lambda: status_json("d")[0]["status"] == "lost", timeout=90, interval=1)
        [run] = status_json("d")
        assert "Ray node died" in run["error"], run
    finally:
        ray_cluster.start_worker()  # the other tests need both nodes

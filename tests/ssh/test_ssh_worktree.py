"""A worktree agent over ssh with the real Claude Code CLI: the worktree is made on the host in
the clone its table names, the agent's Bash edits it there, and ``orch merge`` fetches the
branch home over the same ssh settings. One claude start."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from orch_plugins.testing.api import MessagesStandIn, Reply
from tests.helpers import git, git_project, orch, status_json
from tests.ssh.conftest import ConfigureFn
from tests.ssh.sshd import Hosts

pytestmark = pytest.mark.e2e


def test_worktree_on_the_host_and_merge_home(
    ssh_project: Path,
    two_hosts: Hosts,
    configure: ConfigureFn,
    messages_api: MessagesStandIn,
    tmp_path: Path,
) -> None:
    repo = git_project(ssh_project)
    clone = tmp_path / "host-clone"  # the project's clone "on" h1 (no git identity there)
    subprocess.run(["git", "clone", "-q", str(repo), str(clone)], check=True)
    configure(hosts={"h1": {"repo": str(clone)}, "h2": {}})
    messages_api.on(
        "REMOTE EDIT", Reply.bash("echo remote >> f.txt; pwd > where.txt"), Reply.text("done")
    )

    r = orch("launch", "far.fix", "REMOTE EDIT", "--host", "h2", "--worktree")
    assert r.returncode == 1 and "set repo = " in r.stderr  # h2 names no clone

    # Over ssh a role's default does not ask for a worktree: --worktree does.
    launch = ("launch", "far.fix2", "REMOTE EDIT", "--host", "h1", "--role", "implementer")
    orch(*launch, "--worktree", check=True)
    orch("wait", "far.fix2", check=True, timeout=150)
    run = status_json("far.fix2")[0]
    base_dir = two_hosts["h1"].base_dir
    wt = Path(run["worktree"])
    assert wt.is_relative_to(base_dir) and wt.name == "far.fix2"
    assert (wt / "where.txt").read_text().strip() == str(wt)  # claude ran in it, on h1
    assert (
        run["branch"] == "orch/far.fix2" and run["base"] == git(repo, "rev-parse", "HEAD").strip()
    )
    assert run["changes"]["files"] == 2 and run["changes"]["commits"] == 1
    assert git(clone, "log", "-1", "--format=%an", "orch/far.fix2") == "orch\n"
    assert (repo / "f.txt").read_text() == "base\n"

    assert "+remote" in orch("diff", "far.fix2", check=True).stdout  # fetched over ssh
    orch("merge", "far.fix2", check=True)
    assert (repo / "f.txt").read_text() == "base\nremote\n"
    orch("discard", "far.fix2", check=True)  # merged: removed on the host, and here
    assert not wt.exists()
    assert "orch/far.fix2" not in git(clone, "branch", "--list")
    assert "orch/far.fix2" not in git(repo, "branch", "--list")

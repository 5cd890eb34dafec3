"""One supervisor per launch batch, with the real Claude Code CLI: a claude killed with -9 ends
its own run only, and a batch supervisor killed with -9 leaves every run ``lost`` and no claude
behind. (Fake-claude cases: tests/unit/test_batch.py.)"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from orch_plugins import procs
from orch_plugins.testing.api import MessagesStandIn, Reply
from tests.helpers import handle, orch, status_json, wait_for
from tests.unit.test_batch import claude_of, marked

pytestmark = pytest.mark.e2e


def test_a_killed_claude_ends_only_its_run_in_a_batch(
    real_project: Path, messages_api: MessagesStandIn
) -> None:
    messages_api.on("DOOMED", Reply.text("never", delay=60))
    messages_api.on("SURVIVOR", Reply.text("survived", delay=4))
    orch("parallel", "DOOMED task", "SURVIVOR task", "--prefix", "r", check=True)
    assert handle(real_project, "r1")["pid"] == handle(real_project, "r2")["pid"]
    pid, _ = claude_of(real_project, "r1")
    wait_for(lambda: messages_api.conversation_requests(), timeout=60)
    os.kill(pid, signal.SIGKILL)
    orch("wait", "r1", "r2", "--timeout", "120", timeout=150)
    r1, r2 = status_json("r1", "r2")
    assert r1["status"] == "failed" and r2["status"] == "completed"
    assert orch("output", "r2", check=True).stdout == "survived\n"
    assert not marked(real_project, "r1") and not marked(real_project, "r2")


def test_a_killed_batch_supervisor_leaves_lost_runs_and_no_claude(
    real_project: Path, messages_api: MessagesStandIn
) -> None:
    messages_api.on("HELD", Reply.text("never", delay=60))
    orch("parallel", "HELD one", "HELD two", "--prefix", "k", check=True)
    claudes = [claude_of(real_project, n) for n in ("k1", "k2")]
    batch = handle(real_project, "k1")
    os.kill(batch["pid"], signal.SIGKILL)
    wait_for(lambda: not procs.pid_alive(batch["pid"], batch["start_time"]), timeout=10)
    assert [r["status"] for r in status_json("k1", "k2")] == ["lost", "lost"]
    for pid, start in claudes:
        wait_for(lambda p=pid, s=start: not procs.pid_alive(p, s), timeout=15)
    assert not marked(real_project, "k1") and not marked(real_project, "k2")

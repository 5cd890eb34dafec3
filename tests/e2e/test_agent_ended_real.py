"""``orch_agent_ended`` fires once when a real Claude Code agent completes."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from orch_plugins.testing.api import MessagesStandIn, Reply
from tests.helpers import orch, status_json, wait_for
from tests.unit.test_agent_ended import calls, ended  # noqa: F401 - the fixture

pytestmark = pytest.mark.e2e


def test_a_real_agent_completing_fires_the_event_once(
    real_project: Path,
    messages_api: MessagesStandIn,
    ended: Path,  # noqa: F811
) -> None:
    messages_api.on("REPORT", Reply.text("all done"))
    orch("launch", "real", "REPORT please", check=True)
    orch("wait", "real", "--timeout", "120", check=True, timeout=150)
    [run] = status_json("real")
    [call] = wait_for(lambda: calls(ended))
    assert call == {**call, "run_id": run["run_id"], "name": "real", "status": "completed"}
    orch("status", check=True)
    time.sleep(1)
    assert len(calls(ended)) == 1

"""Backend conformance tests: what every backend must do, run against the real Claude Code CLI.

A backend plugin's test suite subclasses :class:`BackendConformance` and names its backend::

    from orch_plugins.testing.conformance import BackendConformance

    class TestMyBackend(BackendConformance):
        backend = "my-backend"

pytest then runs the inherited tests: an agent launched through ``orch`` completes with its
result, cost and the session id Claude Code reported; cancel stops the whole process tree and
records ``cancelled``; a timeout records ``timed_out``; a run's transcript copy is in its local
run directory when it has ended (``transcript.jsonl.gz``) and resume continues the session with
its earlier turns. Each drives the real ``claude`` (fixtures ``claude_bin``, ``claude_env``,
``messages_api`` from this package's pytest plugin) through the real ``orch`` command, so a
missing Claude Code fails the tests rather than skipping them. Override :meth:`backend_env`
for what the backend needs (a private tmux server, a host config), and :meth:`agent_pids` when
the agent's processes do not carry this project's ``ORCH_STATE_DIR`` in their environment (a
remote host, here on loopback).

The built-in ``subprocess``, ``tmux`` and ``ssh`` backends and the example plugin run these
tests too.
"""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from orch_plugins.testing.api import MessagesStandIn, Reply

__all__ = ["BackendConformance", "OrchRunner"]


class OrchRunner:
    """Runs the real ``orch`` command in one scratch project with one environment."""

    def __init__(self, cwd: Path, env: dict[str, str]) -> None:
        self.cwd = cwd
        self.env = env

    def __call__(self, *args: str, check: bool = True, timeout: float = 120) -> Any:
        proc = subprocess.run(
            [sys.executable, "-m", "orch_plugins.cli", *args],
            cwd=self.cwd,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"orch {' '.join(args)} failed: {proc.stderr}{proc.stdout}")
        return proc

    def status(self, name: str) -> dict[str, Any]:
        return json.loads(self("status", name, "--json").stdout)[0]

    def until(self, predicate: Callable[[], Any], timeout: float = 60) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(0.1)
        raise AssertionError(f"condition not met within {timeout} s")


def _init_session(run: dict[str, Any]) -> str | None:
    for line in Path(run["log_path"]).read_text(encoding="utf-8").splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if event.get("type") == "system" and event.get("subtype") == "init":
            return event.get("session_id")
    return None


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            state = fh.read().rsplit(b")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in (b"Z", b"X")


class BackendConformance:
    """Inherit, set ``backend``; every ``test_*`` here runs against that backend."""

    #: The backend's name, as passed to ``--backend``.
    backend: str = ""

    @pytest.fixture
    def backend_env(self, tmp_path: Path) -> Iterator[dict[str, str]]:
        """Extra environment for ``orch`` and its agents. Override this fixture for what the
        backend needs (a private tmux server, a host config), tearing it down after the yield.
        """
        yield {}

    @pytest.fixture
    def orch(
        self,
        tmp_path: Path,
        claude_env: dict[str, str],
        claude_bin: str,
        messages_api: MessagesStandIn,
        backend_env: dict[str, str],
    ) -> Iterator[OrchRunner]:
        if not self.backend:
            pytest.fail(f"{type(self).__name__} must set the class attribute 'backend'")
        project = tmp_path / "project"
        project.mkdir()
        env = {
            **claude_env,
            "ORCH_CLAUDE_BIN": claude_bin,
            "ORCH_STATE_DIR": str(project / ".orchestrate"),
            "ORCH_CONFIG": str(tmp_path / "orch-config.toml"),
            "ORCH_DEFAULT_BACKEND": self.backend,
            "ORCH_KILL_GRACE": "2",
            **backend_env,
        }
        runner = OrchRunner(project, env)
        try:
            yield runner
        finally:
            runner("cancel", "--all", check=False)

    def agent_pids(self, orch: OrchRunner, name: str) -> list[int]:
        """The processes of agent ``name`` on this machine (its supervisor, claude and what
        they started): every process whose environment names the agent (``ORCH_AGENT``) and
        this project's state directory (``ORCH_STATE_DIR``). Override for a backend whose
        agents' environment differs."""
        mine = (
            f"ORCH_AGENT={name}".encode(),
            f"ORCH_STATE_DIR={orch.env['ORCH_STATE_DIR']}".encode(),
        )
        return [
            int(p.name)
            for p in Path("/proc").iterdir()
            if p.name.isdigit() and all(e in _environ(p) for e in mine)
        ]

    def test_launch_records_result_cost_and_session(
        self, orch: OrchRunner, messages_api: MessagesStandIn
    ) -> None:
        messages_api.on("CONFORM launch", Reply.text("conformant result"))
        launched = json.loads(orch("launch", "c1", "CONFORM launch $(x) 'q'", "--json").stdout)
        assert launched["backend"] == self.backend
        assert launched["status"] in ("queued", "running")
        orch("wait", "c1", "--timeout", "90")
        run = orch.status("c1")
        assert run["status"] == "completed" and run["exit_code"] == 0, run
        assert orch("output", "c1").stdout == "conformant result\n"
        assert run["session_id"] and run["session_id"] == _init_session(run)
        assert run["cost_usd"] > 0 and run["num_turns"] >= 1
        prompts = [r.prompt_text for r in messages_api.conversation_requests()]
        assert "CONFORM launch $(x) 'q'" in prompts  # the task, byte for byte

    def test_cancel_stops_the_whole_tree(
        self, orch: OrchRunner, messages_api: MessagesStandIn
    ) -> None:
        messages_api.on("CONFORM hang", Reply.text("never", delay=60))
        orch("launch", "c2", "CONFORM hang")
        orch.until(lambda: messages_api.conversation_requests())  # claude is mid-turn
        pids = self.agent_pids(orch, "c2")
        assert pids, "no process of the agent found"
        orch("cancel", "c2")
        assert orch.status("c2")["status"] == "cancelled"
        orch.until(lambda: not any(_alive(p) for p in pids), timeout=15)

    def test_timeout_is_recorded(self, orch: OrchRunner, messages_api: MessagesStandIn) -> None:
        messages_api.on("CONFORM slow", Reply.text("too late", delay=60))
        orch("launch", "c3", "CONFORM slow", "--timeout", "2")
        assert orch("wait", "c3", "--timeout", "60", check=False).returncode == 1
        run = orch.status("c3")
        assert run["status"] == "timed_out" and run["error"] == "timed out after 2.0 s"

    def test_resume_continues_the_session(
        self, orch: OrchRunner, messages_api: MessagesStandIn
    ) -> None:
        messages_api.on("CONFORM first", Reply.text("first answer"))
        messages_api.on("CONFORM second", Reply.text("second answer"))
        orch("launch", "c4", "CONFORM first")
        orch("wait", "c4", "--timeout", "90")
        first = orch.status("c4")
        # Every run keeps its session's transcript, at home in its run directory (a remote
        # backend brings it back with the other files), so a resume can go anywhere.
        copy = Path(first["output_path"]).parent / "transcript.jsonl.gz"
        assert copy.is_file(), f"{copy} is missing: the run's transcript copy did not come home"
        assert first["session_id"].encode() in gzip.decompress(copy.read_bytes())
        orch("resume", "c4", "CONFORM second", "--wait")
        second = orch.status("c4")
        assert second["session_id"] == first["session_id"]
        req = next(
            r for r in messages_api.conversation_requests() if "CONFORM second" in r.prompt_text
        )
        assert any("CONFORM first" in t for t in req.all_user_texts)  # the earlier turn


def _environ(proc_dir: Path) -> list[bytes]:
    try:
        return (proc_dir / "environ").read_bytes().split(b"\0")
    except OSError:
        return []

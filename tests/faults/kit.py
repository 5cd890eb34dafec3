"""Helpers for the fault-injection suite: one scratch store per case, ``orch`` run with a fault
point (``ORCH_FAULT``, docs/faults.md), and what a case checks afterwards: the statuses in
``orch status --json``, the claude starts, the processes left."""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.helpers import ORCH, cmdlines

HERE = Path(__file__).resolve().parent


@functools.cache
def jumpclock() -> Path:
    """The wall-clock shifter (``jumpclock.c``), built once per test session with ``cc``;
    fails (never skips) when no C compiler is there (.ci/run installs gcc)."""
    cc = shutil.which("cc") or shutil.which("gcc")
    assert cc, "no C compiler (cc) to build tests/faults/jumpclock.c: apt-get install gcc"
    out = Path(tempfile.mkdtemp(prefix="jumpclock-")) / "jumpclock.so"
    subprocess.run(
        [cc, "-shared", "-fPIC", "-O2", "-o", str(out), str(HERE / "jumpclock.c"), "-ldl"],
        check=True,
    )
    return out


def clock_env(offset_file: Path) -> dict[str, str]:
    """Variables that run a process tree with its wall clock shifted by the number of seconds
    in ``offset_file`` (read at every clock read: rewrite it to jump), monotonic time true."""
    return {"LD_PRELOAD": str(jumpclock()), "JUMPCLOCK_FILE": str(offset_file)}


@dataclass
class Case:
    """One fault case: its own state directory, its agent, the token its task carries (so its
    claude starts can be counted and its processes found)."""

    root: Path
    step: str
    name: str = "agent"
    token: str = field(default_factory=lambda: uuid.uuid4().hex[:12])

    @property
    def state_dir(self) -> Path:
        return self.root / self.step / ".orchestrate"

    def env(
        self,
        fault: str | None = None,
        clock: str | None = None,
        extra_env: dict[str, str] | None = None,
    ) -> dict[str, str]:
        env = dict(os.environ, ORCH_STATE_DIR=str(self.state_dir), **(extra_env or {}))
        env.pop("ORCH_FAULT", None)
        if fault:
            env["ORCH_FAULT"] = fault
        if clock:
            offset = self.root / f"{self.step}.clock"
            offset.write_text(clock)
            env.update(clock_env(offset))
        return env

    def orch(
        self,
        *args: str,
        fault: str | None = None,
        clock: str | None = None,
        extra_env: dict[str, str] | None = None,
        timeout: float = 60,
    ) -> subprocess.CompletedProcess[str]:
        """``orch ARGS`` on this case's store (``fault``: the fault point to die at;
        ``clock``: its wall clock shifted by that many seconds, see :func:`clock_env`)."""
        (self.root / self.step).mkdir(parents=True, exist_ok=True)
        return subprocess.run(
            [*ORCH, *args],
            env=self.env(fault, clock, extra_env),
            cwd=self.root / self.step,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def runs(self, *, all_: bool = True, clock: str | None = None) -> list[dict[str, Any]]:
        """``orch status --json [--all]`` of this case's store (a status read: it also
        notices dead agents and starts queued ones)."""
        out = self.orch("status", "--json", *(["--all"] if all_ else []), clock=clock)
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)

    def settle(self, timeout: float = 60) -> list[dict[str, Any]]:
        """Read the status until no run is queued or running; every run of the store."""
        deadline = time.monotonic() + timeout
        while True:
            runs = self.runs()
            if all(r["status"] not in ("queued", "running") for r in runs):
                return runs
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.step}: still active after {timeout} s: {runs}")
            time.sleep(0.2)


def claude_starts(home: Path, token: str) -> int:
    """How many times the fake claude was started on a prompt carrying ``token`` (it keeps
    each session's prompts under ``$HOME/.fake-claude``)."""
    folder = home / ".fake-claude"
    if not folder.is_dir():
        return 0
    return sum(token in p.read_text(errors="replace") for p in folder.iterdir())


def processes_of(marker: str) -> list[tuple[int, str]]:
    """Live processes whose command line or environment holds ``marker`` (a task token, a run
    directory, a run's ``ORCH_RUN_TOKEN``); the test process itself excluded."""
    found = []
    me = os.getpid()
    needle = marker.encode()
    for pid, cmd in cmdlines():
        if pid == me:
            continue
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:
            environ = b""
        if needle in cmd or needle in environ:
            found.append((pid, cmd.decode(errors="replace")[:200]))
    return found


def run_token(run: dict[str, Any]) -> str:
    """The run's marker token, from its spec (every process of the run carries it)."""
    spec = Path(run["output_path"]).with_name("spec.json")
    return json.loads(spec.read_text())["env"]["ORCH_RUN_TOKEN"]


def leftovers(run: dict[str, Any], timeout: float = 10) -> list[tuple[int, str]]:
    """Processes of ``run`` still alive after ``timeout`` seconds (its supervisor, found by its
    run directory on its command line; claude and its children, by the run's token)."""
    run_dir = str(Path(run["output_path"]).parent)
    token = run_token(run)
    deadline = time.monotonic() + timeout
    while True:
        left = processes_of(run_dir) + processes_of(f"ORCH_RUN_TOKEN={token}")
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.1)

"""Helpers for the tmux tests: drive the test's private tmux server, read the store."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


class Tm:
    """The test's tmux server."""

    def __init__(self, binary: str, socket: str, tmpdir: str) -> None:
        self.binary, self.socket, self.tmpdir = binary, socket, tmpdir
        self.env = {**os.environ, "TMUX_TMPDIR": tmpdir}
        self.env.pop("TMUX", None)

    def argv(self, *args: str) -> list[str]:
        return [self.binary, "-L", self.socket, *args]

    def __call__(self, *args: str, check: bool = True) -> str:
        proc = subprocess.run(self.argv(*args), capture_output=True, text=True, env=self.env)
        if check and proc.returncode != 0:
            raise AssertionError(f"tmux {args}: {proc.stderr}")
        return proc.stdout

    def panes(self, target: str | None = None) -> list[dict[str, str]]:
        keys = (
            "session",
            "window",
            "name",
            "pane",
            "pid",
            "dead",
            "role",
            "run",
            "path",
        )
        fmt = "\t".join(
            "#{" + k + "}"
            for k in (
                "session_name",
                "window_id",
                "window_name",
                "pane_id",
                "pane_pid",
                "pane_dead",
                "@orch_role",
                "@orch_run",
                "pane_current_path",
            )
        )
        where = ["-t", target] if target else ["-a"]
        out = self("list-panes", *where, "-F", fmt, check=False)
        return [dict(zip(keys, line.split("\t"))) for line in out.splitlines() if line]

    def capture(self, target: str) -> str:
        """The pane's whole text, history included (``-S -``)."""
        return self("capture-pane", "-p", "-J", "-S", "-", "-t", target)

    def running(self) -> bool:
        return (
            subprocess.run(self.argv("has-session"), capture_output=True, env=self.env).returncode
            == 0
        )


def handle(project: Path, run_id: int) -> dict[str, Any]:
    con = sqlite3.connect(project / ".orchestrate" / "state.db")
    try:
        row = con.execute("SELECT handle FROM runs WHERE run_id=?", (run_id,)).fetchone()
        return json.loads(row[0]) if row and row[0] else {}
    finally:
        con.close()


def wrapper(path: Path, script: Path) -> Path:
    """An executable that runs ``script`` with this interpreter (a version-manager shim in a
    shebang would cost ~80 ms per agent)."""
    path.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{script}" "$@"\n')
    path.chmod(0o755)
    return path

"""Helpers for tests: run the real ``orch`` as a process, read status, poll."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
FAKE_CLAUDE = ROOT / "tests" / "fake_claude.py"
ORCH = [sys.executable, "-m", "orch_plugins.cli"]


def orch(
    *args: str, input: str | bytes | None = None, check: bool = False, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run the real ``orch`` command as a separate process."""
    data = input.encode() if isinstance(input, str) else input
    proc = subprocess.run([*ORCH, *args], input=data, capture_output=True, timeout=timeout)
    out = subprocess.CompletedProcess(
        proc.args,
        proc.returncode,
        proc.stdout.decode("utf-8", "replace"),
        proc.stderr.decode("utf-8", "replace"),
    )
    if check and out.returncode != 0:
        raise AssertionError(f"orch {args} failed ({out.returncode}): {out.stderr}{out.stdout}")
    return out


def orch_at_once(*commands: list[str], timeout: float = 120) -> None:
    """Run several ``orch`` commands as processes at the same time; each must succeed."""
    procs = [
        subprocess.Popen([*ORCH, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for args in commands
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=timeout)
        assert proc.returncode == 0, err


def status_json(*names: str, all_: bool = False) -> list[dict[str, Any]]:
    args = ["status", "--json", *names] + (["--all"] if all_ else [])
    return json.loads(orch(*args, check=True).stdout)


def wait_for(predicate: Callable[[], Any], timeout: float = 30, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s")


def handle(project: Path, name: str) -> dict[str, Any]:
    """The backend handle of an agent's latest run, straight from the store."""
    import sqlite3

    con = sqlite3.connect(project / ".orchestrate" / "state.db")
    try:
        row = con.execute(
            "SELECT handle FROM runs WHERE name=? ORDER BY run_id DESC LIMIT 1", (name,)
        ).fetchone()
        return json.loads(row[0])
    finally:
        con.close()


def pid_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    return not stat.exists() or stat.read_text().rsplit(")", 1)[1].split()[0] == "Z"


def use_real_claude(monkeypatch: Any, claude_env: dict[str, str], claude_bin: str) -> None:
    """Point agents started by ``orch`` at the real ``claude`` and the Messages API stand-in."""
    for key in list(os.environ):
        if key not in claude_env and key.startswith(("ANTHROPIC_", "CLAUDE")):
            monkeypatch.delenv(key)
    for key, value in claude_env.items():
        if key.startswith(("ANTHROPIC_", "CLAUDE", "DISABLE_", "HOME")):
            monkeypatch.setenv(key, value)
    monkeypatch.setenv("ORCH_CLAUDE_BIN", claude_bin)


def init_session(run: dict[str, Any]) -> str:
    """The session id Claude Code itself reported (its init event) for a run."""
    for line in Path(run["log_path"]).read_text().splitlines():
        event = json.loads(line)
        if event.get("type") == "system" and event.get("subtype") == "init":
            return event["session_id"]
    raise AssertionError("no init event")


def big_answer(size: int, tag: str) -> str:
    """About ``size`` bytes of UTF-8 answer text with newlines, quotes, backslashes and
    multi-byte characters (so a byte lost or re-encoded anywhere shows), unique per ``tag``."""
    lines = []
    total = 0
    i = 0
    while total < size:
        line = f'{tag} {i:07d} ünï 🚀 "quoted" back\\slash\ttab <{tag}>\n'
        lines.append(line)
        total += len(line.encode("utf-8"))
        i += 1
    return "".join(lines)


def output_bytes(run: dict[str, Any]) -> bytes:
    """The output file of a run, as stored (``orch output`` adds a newline when it lacks one)."""
    return Path(run["output_path"]).read_bytes()


def megabyte_answers(api: Any, backend: str, extra: dict[str, list[str]] | None = None) -> dict:
    """Agents ``mb1`` and ``mb2`` answer 1 MB and 2 MB at once (``extra``: more ``orch launch``
    arguments per name); check each completed on ``backend`` with its output whole, byte for
    byte. Returns ``{name: (run, answer)}`` for further checks. ``api`` is the stand-in."""
    from orch_plugins.testing.api import Reply

    answers = {"mb1": big_answer(1_000_000, "ONE"), "mb2": big_answer(2_000_000, "TWO")}
    for name, text in answers.items():
        api.on(f"{name.upper()} ANSWER", Reply.text(text))
        orch("launch", name, f"{name.upper()} ANSWER please", *(extra or {}).get(name, []))
    orch("wait", *answers, "--timeout", "150", check=True, timeout=180)
    done = {}
    for name, text in answers.items():
        [run] = status_json(name)
        assert run["status"] == "completed" and run["backend"] == backend, run
        assert output_bytes(run) == text.encode("utf-8")
        done[name] = (run, text)
    return done


class Follow:
    """``orch logs NAME -f`` (or without ``-f``) as a process, with the CPU time it used
    (``wait4``'s rusage, or ``/proc/PID/stat`` while it still runs)."""

    def __init__(self, name: str, *, follow: bool = True) -> None:
        self.out = tempfile.TemporaryFile()  # noqa: SIM115 (closed with this object)
        argv = [*ORCH, "logs", name, *(["-f"] if follow else [])]
        self.proc = subprocess.Popen(argv, stdout=self.out, stderr=self.out)
        self.cpu = 0.0
        self.rc: int | None = None

    def running_cpu(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def wait(self, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while True:
            pid, status, usage = os.wait4(self.proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                cpu = self.running_cpu()
                self.proc.kill()
                self.proc.wait()
                raise AssertionError(f"orch logs -f still runs after {timeout} s ({cpu:.1f} CPU-s)")
            time.sleep(0.05)
        self.proc.returncode = self.rc = os.waitstatus_to_exitcode(status)
        self.cpu = usage.ru_utime + usage.ru_stime
        return self.text()

    def text(self) -> str:
        self.out.seek(0)
        return self.out.read().decode("utf-8", "replace")


def write_dist(root: Path, name: str, eps: dict[str, str], modules: dict[str, str]) -> None:
    """A throwaway installed distribution: a dist-info with entry points, plus its modules."""
    info = root / f"{name.replace('-', '_')}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    lines = "".join(f"{k} = {v}\n" for k, v in eps.items())
    (info / "entry_points.txt").write_text(f"[orch_plugins]\n{lines}")
    for module, source in modules.items():
        (root / f"{module}.py").write_text(source)


def leaver(tag: str) -> tuple[str, str]:
    """A Bash command leaving two sleeps behind, and the text that finds them in /proc."""
    arg = f"{random.randint(100000, 999999)}.{random.randint(10, 99)}"
    command = (
        f"setsid sleep {arg} >/dev/null 2>&1 </dev/null & "
        f"(sleep {arg} >/dev/null 2>&1 </dev/null &) ; echo {tag} left"
    )
    return command, f"sleep {arg}"


def cmdlines() -> list[tuple[int, bytes]]:
    """``(pid, command line with spaces)`` of every live (not zombie) process."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").strip()
            state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            out.append((int(entry), cmd))
    return out


def running(needle: str) -> list[int]:
    """Live processes whose command line is ``needle``."""
    return [pid for pid, cmd in cmdlines() if cmd.decode(errors="replace") == needle]


def git(repo: Path, *args: str) -> str:
    """``git -C repo ARGS``; its stdout (fails the test when git fails)."""
    return subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, check=True
    ).stdout


def git_project(repo: Path) -> Path:
    """Make ``repo`` a git repository (on ``main`` when it is a new one) whose one commit holds
    ``f.txt`` = ``base\\n``, with a committer identity of its own."""
    if not (repo / ".git").exists():
        git(repo, "init", "-q", "-b", "main")
    git(repo, "config", "user.name", "Tester")
    git(repo, "config", "user.email", "tester@example.org")
    (repo / "f.txt").write_text("base\n")
    git(repo, "add", "f.txt")
    git(repo, "commit", "-q", "-m", "init")
    return repo

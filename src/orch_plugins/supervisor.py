"""Runs one ``claude -p`` for one agent and records what it learns while it runs.

Started detached by a backend as ``python -m orch_plugins.supervisor SPEC.json`` (or, on a host
without orch-plugins, as this file alone). It reads Claude Code's stream-json events, keeps them
raw in the run's log, records the session id the moment Claude Code reports it, counts turns and
tool calls, enforces the timeout, retries transient API failures with backoff, stops the whole
process tree on SIGTERM (cancel), and at the end writes the output file and the final record.

Standard library only, and this module imports nothing from orch_plugins at top level: it runs
for every agent, and is shipped to remote hosts as is.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

#: API statuses that Claude Code reports for failures worth another attempt.
TRANSIENT_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504, 529})
PROGRESS_INTERVAL = 0.5


# -- processes ----------------------------------------------------------------------------------


def proc_stat(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name (which may hold spaces and parens)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            data = fh.read().decode("ascii", "replace")
    except OSError:
        return None
    return data[data.rfind(")") + 2 :].split()


def proc_start_time(pid: int) -> int | None:
    """Start time in clock ticks since boot (field 22): a PID's identity across reuse."""
    fields = proc_stat(pid)
    return int(fields[19]) if fields else None


def pid_alive(pid: int | None, start_time: int | None) -> bool:
    """True only if PID runs, is not a zombie, and is the process that started at start_time."""
    if not pid:
        return False
    fields = proc_stat(pid)
    if fields is None:
        if not os.path.isdir("/proc/self"):  # no procfs (macOS): best effort
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return False
            except PermissionError:
                return True
            return True
        return False
    if fields[0] in ("Z", "X"):
        return False
    return start_time is None or int(fields[19]) == int(start_time)


def descendants(root: int) -> list[int]:
    """All processes below root, children before grandchildren."""
    children: dict[int, list[int]] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return []
    for entry in entries:
        if not entry.isdigit():
            continue
        fields = proc_stat(int(entry))
        if fields:
            children.setdefault(int(fields[1]), []).append(int(entry))
    out: list[int] = []
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def _signal_all(pids: list[int], sig: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def terminate_tree(root: int, grace: float, *, include_root: bool = True) -> None:
    """SIGTERM the tree below (and including) root, then SIGKILL what is left after grace."""
    pids = descendants(root) + ([root] if include_root else [])
    _signal_all(pids, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not any(pid_alive(p, None) for p in pids):
            return
        time.sleep(0.05)
    pids = list(dict.fromkeys(pids + descendants(root)))
    _signal_all(pids, signal.SIGKILL)


# -- reporting ----------------------------------------------------------------------------------


class DbReporter:
    """Writes into the local SQLite store (the normal case)."""

    def __init__(self, spec: dict[str, Any]) -> None:
        from orch_plugins.store import Store

        # create=False: a state dir removed while the agent ran must not be resurrected empty.
        self.store = Store(Path(spec["state_dir"]), create=False)
        self.run_id = int(spec["run_id"])

    def update(self, **fields: Any) -> None:
        self.store.update(self.run_id, **fields)

    def finish(self, status: str, **fields: Any) -> None:
        self.store.finish(self.run_id, status, **fields)

    def cancel_requested(self) -> bool:
        return bool(self.store.get_run(self.run_id)["cancel_requested"])

    def queued(self) -> int:
        return self.store.count("queued")


class FileReporter:
    """Writes ``<run_dir>/state.json`` atomically: for hosts without the store (remote)."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.path = Path(spec["run_dir"]) / "state.json"
        self.state: dict[str, Any] = {"status": "running"}

    def _flush(self) -> None:
        tmp = self.path.with_name(f".state.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(self.state))
        os.replace(tmp, self.path)

    def update(self, **fields: Any) -> None:
        self.state.update(fields)
        self._flush()

    def finish(self, status: str, **fields: Any) -> None:
        self.state.update(fields, status=status, ended_at=time.time())
        self._flush()

    def cancel_requested(self) -> bool:
        return False

    def queued(self) -> int:
        return 0


# -- the supervisor -----------------------------------------------------------------------------


class Supervisor:
    def __init__(self, spec: dict[str, Any], reporter: Any) -> None:
        self.spec = spec
        self.rep = reporter
        self.run_dir = Path(spec["run_dir"])
        self.proc: subprocess.Popen[bytes] | None = None
        self.stop_reason: str | None = None  # "cancelled" | "timed_out"
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.session_id: str | None = None
        self.result: dict[str, Any] | None = None
        self.turns = 0
        self.tool_calls = 0
        self.last_flush = 0.0
        self.stderr_tail = ""

    # Stopping: called from a signal handler or the timeout timer; never blocks the caller.
    def stop(self, reason: str) -> None:
        with self.lock:
            if self.stop_reason:
                return
            self.stop_reason = reason
        self.stopping.set()
        threading.Thread(target=self._kill_child, daemon=True).start()

    def _kill_child(self) -> None:
        proc = self.proc
        if proc is not None and proc.poll() is None:
            terminate_tree(proc.pid, float(self.spec.get("kill_grace", 5.0)))

    def on_signal(self, signum: int, _frame: Any) -> None:
        self.stop("cancelled")

    def run(self) -> int:
        spec = self.spec
        timeout = spec.get("timeout")
        start = time.monotonic()
        timer = None
        if timeout:
            timer = threading.Timer(float(timeout), self.stop, args=("timed_out",))
            timer.daemon = True
            timer.start()
        retries = int(spec.get("retries") or 0)
        backoff = float(spec.get("retry_backoff", 2.0))
        rc: int | None = None
        attempt = 0
        while True:
            attempt += 1
            self.result = None
            self.rep.update(attempt=attempt)
            rc = self.run_once()
            if self.stop_reason or attempt > retries or not self.transient():
                break
            delay = min(backoff * 2 ** (attempt - 1), 60.0)
            self.log_event(
                {
                    "type": "orch",
                    "subtype": "retry",
                    "attempt": attempt + 1,
                    "max_attempts": retries + 1,
                    "delay_s": delay,
                    "api_error_status": (self.result or {}).get("api_error_status"),
                }
            )
            if self.stopping.wait(delay):
                break
        if timer:
            timer.cancel()
        self.finish(rc, attempt, time.monotonic() - start)
        return 0

    def transient(self) -> bool:
        res = self.result or {}
        status = res.get("api_error_status")
        return (
            bool(res.get("is_error"))
            and isinstance(status, int)
            and (status in TRANSIENT_STATUSES or status >= 500)
        )

    def log_event(self, event: dict[str, Any]) -> None:
        with open(self.spec["log_path"], "ab") as log:
            log.write(json.dumps(event).encode() + b"\n")

    def run_once(self) -> int | None:
        spec = self.spec
        env = dict(os.environ)
        env.update(spec.get("env") or {})
        for key in spec.get("unset_env") or ():
            env.pop(key, None)
        if self.stopping.is_set():
            return None
        with (
            open(spec["prompt_path"], "rb") as stdin,
            open(self.run_dir / "stderr.log", "ab") as stderr,
            open(spec["log_path"], "ab") as log,
        ):
            try:
                self.proc = subprocess.Popen(
                    spec["argv"],
                    stdin=stdin,
                    stdout=subprocess.PIPE,
                    stderr=stderr,
                    cwd=spec["cwd"],
                    env=env,
                    close_fds=True,
                )
            except OSError as exc:
                self.result = {"is_error": True, "result": f"cannot start claude: {exc}"}
                return None
            if self.stopping.is_set():  # a stop that raced with the start
                self._kill_child()
            assert self.proc.stdout is not None
            for raw in self.proc.stdout:
                log.write(raw)
                log.flush()
                self.on_line(raw)
            rc = self.proc.wait()
        self.flush_progress(force=True)
        return rc

    def on_line(self, raw: bytes) -> None:
        try:
            event = json.loads(raw)
        except ValueError:
            return
        if not isinstance(event, dict):
            return
        kind = event.get("type")
        sid = event.get("session_id")
        if isinstance(sid, str) and sid != self.session_id:
            self.session_id = sid
            self.rep.update(session_id=sid, last_activity=time.time())
        if kind == "assistant":
            self.turns += 1
            content = (event.get("message") or {}).get("content") or []
            self.tool_calls += sum(
                1
                for block in content
                if isinstance(block, dict) and block.get("type") == "tool_use"
            )
        elif kind == "result":
            self.result = event
        self.flush_progress()

    def flush_progress(self, force: bool = False) -> None:
        now = time.time()
        if force or now - self.last_flush >= PROGRESS_INTERVAL:
            self.last_flush = now
            self.rep.update(num_turns=self.turns, tool_calls=self.tool_calls, last_activity=now)

    def finish(self, rc: int | None, attempts: int, elapsed: float) -> None:
        res = self.result or {}
        text = res.get("result")
        fields: dict[str, Any] = {
            "exit_code": rc,
            "tool_calls": self.tool_calls,
            "num_turns": res.get("num_turns", self.turns),
            "cost_usd": res.get("total_cost_usd"),
            "duration_ms": res.get("duration_ms", int(elapsed * 1000)),
            "usage": json.dumps(res["usage"]) if isinstance(res.get("usage"), dict) else None,
        }
        if res.get("session_id"):
            fields["session_id"] = res["session_id"]
        if isinstance(text, str):
            out = Path(self.spec["output_path"])
            tmp = out.with_name(f".{out.name}.tmp")
            tmp.write_text(text, encoding="utf-8")
            os.replace(tmp, out)
        if self.stop_reason == "cancelled" or (
            self.stop_reason is None and rc is not None and rc < 0 and self.rep.cancel_requested()
        ):
            status, error = "cancelled", "cancelled"
        elif self.stop_reason == "timed_out":
            status, error = "timed_out", f"timed out after {self.spec.get('timeout')} s"
        elif rc == 0 and res and not res.get("is_error"):
            status, error = "completed", None
        else:
            status, error = "failed", self.describe_failure(rc, res, attempts)
        fields["error"] = error
        self.rep.finish(status, **fields)

    def describe_failure(self, rc: int | None, res: dict[str, Any], attempts: int) -> str:
        if res.get("api_error_status"):
            tries = f" after {attempts} attempt{'s' * (attempts > 1)}"
            return f"API error {res['api_error_status']}{tries}: {_first_line(res.get('result'))}"
        if res.get("is_error"):
            return (
                _first_line(res.get("result")) or f"claude reported an error ({res.get('subtype')})"
            )
        tail = _last_line(self.run_dir / "stderr.log")
        if rc is None:
            return _first_line(res.get("result")) or "claude did not start"
        return f"claude exited with code {rc}" + (f": {tail}" if tail else "")


def _first_line(text: Any) -> str:
    if not isinstance(text, str):
        return ""
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line[:300]


def _last_line(path: Path) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(max(0, os.path.getsize(path) - 4096))
            lines = fh.read().decode("utf-8", "replace").strip().splitlines()
    except OSError:
        return ""
    return lines[-1][:300] if lines else ""


def pump_queue(state_dir: str) -> None:
    """Let the next queued agent start, in a detached process that may load plugins."""
    # Not -S: the queue may hold agents of third-party backends, found through site-packages.
    subprocess.Popen(
        [sys.executable, "-m", "orch_plugins.admission", state_dir],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        close_fds=True,
    )


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: supervisor SPEC.json", file=sys.stderr)
        return 2
    with open(args[0], encoding="utf-8") as fh:
        spec = json.load(fh)
    reporter = (
        FileReporter(spec) if spec.get("options", {}).get("report") == "file" else DbReporter(spec)
    )
    sup = Supervisor(spec, reporter)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, sup.on_signal)
    try:
        sup.run()
    except BaseException as exc:  # record the crash rather than leave the agent "running"
        try:
            reporter.finish("failed", error=f"supervisor error: {exc!r}")
        finally:
            raise
    if reporter.queued():
        pump_queue(spec["state_dir"])
    return 0


if __name__ == "__main__":
    # Run by file path (``python -S .../orch_plugins/supervisor.py``): import the package from the
    # directory that holds it, not from this file's own directory.
    _here = os.path.dirname(os.path.abspath(__file__))
    if sys.path and os.path.abspath(sys.path[0] or ".") == _here:
        sys.path[0] = os.path.dirname(_here)
    sys.exit(main())

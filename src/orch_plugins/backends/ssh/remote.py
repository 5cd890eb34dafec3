"""The remote half of the ssh backend: fixed code shipped over the connection on every call.

Nothing is installed on a remote host. Each ``ssh`` call runs one constant command,
``python3 -S -c BOOTSTRAP``, and sends on its stdin the sources of the supervisor, of
:mod:`orch_plugins.procs` and of this module, then a JSON request line and the request's files.
:data:`BOOTSTRAP` keeps the first two (written into each run directory; ``procs`` is the one
implementation of "alive" and "stop the agent", see :func:`procs`) and runs this module, which
answers with one marked JSON line followed by raw blobs. No task text, path or name is ever
part of a command line, so nothing here meets a shell.

Standard library only. Runs on python3 3.8+, so that an older host hears why it cannot run the
supervisor (3.10+) instead of failing obscurely.

stdin::

    b"<len supervisor.py> <len procs.py> <len remote.py>\\n" supervisor.py procs.py remote.py
    JSON request line, then the request's files back to back (lengths in the request)

stdout::

    (anything a login script printed) MARKER JSON reply line, then blobs (lengths in the reply)
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from types import SimpleNamespace

# Not ``from typing import ...``: this module runs on every ssh call; typing costs milliseconds.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import ModuleType
    from typing import BinaryIO

#: What ssh runs remotely, after the interpreter name: constant, so the remote shell only ever
#: parses fixed text. It keeps the sources of the supervisor and of procs as
#: ``orch_supervisor.SOURCE`` and ``orch_supervisor.PROCS`` and runs this module.
BOOTSTRAP = (
    "import sys,types;i=sys.stdin.buffer;a,b,c=map(int,i.readline().split());"
    "m=types.ModuleType('orch_supervisor');m.SOURCE=i.read(a);m.PROCS=i.read(b);"
    "sys.modules[m.__name__]=m;"
    "exec(compile(i.read(c),'orch_remote.py','exec'),{'__name__':'__orch_remote__'})"
)
_procs: ModuleType | SimpleNamespace | None = None
_supervisor: ModuleType | SimpleNamespace | None = None


def procs() -> ModuleType | SimpleNamespace:
    """:mod:`orch_plugins.procs` (pid_alive, stop_supervisor, ...): one implementation, here
    and in every backend; on a host, compiled from the shipped source (it imports only os,
    contextlib, signal and time, so a status read stays cheap)."""
    global _procs
    if _procs is None:
        shipped = sys.modules.get("orch_supervisor")
        if shipped is None:  # run locally (tests, the doctor): the package's own module
            from orch_plugins import procs as module

            _procs = module
        else:
            namespace: dict = {"__name__": "orch_procs"}
            exec(compile(shipped.PROCS, "procs.py", "exec"), namespace)
            _procs = SimpleNamespace(**namespace)
    return _procs


def supervisor() -> ModuleType | SimpleNamespace:
    """:mod:`orch_plugins.supervisor` (its inbox: ``post_message``), compiled from the shipped
    source on a host, only for the requests that need it."""
    global _supervisor
    if _supervisor is None:
        shipped = sys.modules.get("orch_supervisor")
        if shipped is None:  # run locally (tests): the package's own module
            from orch_plugins import supervisor as module

            _supervisor = module
        else:
            # The supervisor imports procs from beside it when orch_plugins is not installed.
            sys.modules.setdefault("procs", procs())  # type: ignore[arg-type]
            namespace: dict = {"__name__": "orch_supervisor_code"}
            exec(compile(shipped.SOURCE, "supervisor.py", "exec"), namespace)
            _supervisor = SimpleNamespace(**namespace)
    return _supervisor


#: Starts the reply line, so output of the user's shell start-up files is skipped, not parsed.
MARKER = b"\x00ORCH-REMOTE-1 "
FINAL = ("completed", "failed", "cancelled", "timed_out", "lost")
#: The transcript copy a run keeps at its end (``supervisor.TRANSCRIPT_COPY``).
TRANSCRIPT_COPY = "transcript.jsonl.gz"
#: The supervisor's oldest python (this module itself runs on 3.8, to say so clearly).
MIN_PYTHON = (3, 10)


class RemoteError(Exception):
    """A request the remote side refuses; ``kind`` lets the local side phrase it."""

    def __init__(self, message: str, kind: str = "remote") -> None:
        super().__init__(message)
        self.kind = kind


def _expand(path: str) -> str:
    return os.path.abspath(os.path.expanduser(path))


def _boot_id() -> str | None:
    try:
        with open("/proc/sys/kernel/random/boot_id") as fh:
            return fh.read().strip()
    except OSError:
        return None


def _read_files(inp: BinaryIO, entries: list) -> dict:
    files = {}
    for name, size in entries:
        data = inp.read(size)
        if len(data) != size:
            raise RemoteError("request truncated in transit")
        files[name] = data
    return files


def _write(path: str, data: bytes, mode: int = 0o600) -> None:
    tmp = f"{path}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)


def _alive(run: dict, boot: str | None) -> bool:
    if run.get("boot_id") and boot and run["boot_id"] != boot:
        return False  # the host restarted: that PID is someone else now
    return procs().pid_alive(run.get("pid"), run.get("start_time"))


def _check_python() -> None:
    if sys.version_info < MIN_PYTHON:
        raise RemoteError(
            f"python {sys.version.split()[0]} at {sys.executable} is too old for the supervisor "
            f"(needs {'.'.join(map(str, MIN_PYTHON))}+): set 'python' in the host's table",
            "no_python",
        )


def _resolve_claude(claude: str) -> str:
    import shutil

    found = shutil.which(os.path.expanduser(claude))
    if not found:
        raise RemoteError(
            f"claude not found on the remote host (looked for {claude!r}, "
            f"PATH={os.environ.get('PATH', '')}): install Claude Code there or set "
            "'claude' in the host's [hosts.NAME] table",
            "no_claude",
        )
    return os.path.abspath(found)


# -- requests -----------------------------------------------------------------------------------


def do_launch(req: dict, inp: BinaryIO) -> tuple[dict, list]:
    """Write the run directory and start the supervisor detached (new session, no stdio tied to
    the connection), so it outlives this ssh session and the orchestrator."""
    import subprocess

    files = _read_files(inp, req["files"])
    _check_python()
    run_dir = _expand(req["run_dir"])
    claude = _resolve_claude(req["claude"])
    if req.get("workdir"):
        cwd = _expand(req["workdir"])
        if not os.path.isdir(cwd):
            raise RemoteError(f"working directory {cwd} does not exist on the remote host")
    else:
        cwd = _expand(req["default_workdir"])
        os.makedirs(cwd, exist_ok=True)
    os.makedirs(os.path.dirname(run_dir), mode=0o700, exist_ok=True)
    try:
        os.mkdir(run_dir, 0o700)  # the run's name holds a random token: only a retry finds it
    except FileExistsError:
        return _earlier_launch(run_dir), []
    spec = json.loads(files["spec.json"])
    wt = spec.get("worktree")
    if wt:  # the agent works in its worktree (made by the supervisor when it is new)
        wt["path"] = _expand(wt["path"])
        if wt.get("repo"):
            wt["repo"] = _expand(wt["repo"])
        if not wt.get("create") and not os.path.isdir(wt["path"]):
            raise RemoteError(f"the agent's worktree {wt['path']} is gone from the remote host")
        cwd = wt["path"]
    spec["argv"][0] = claude
    if spec.get("retry_argv"):
        spec["retry_argv"][0] = claude
    spec.update(
        cwd=cwd,
        run_dir=run_dir,
        state_dir=os.path.dirname(os.path.dirname(run_dir)),
        prompt_path=os.path.join(run_dir, "prompt.txt"),
        output_path=os.path.join(run_dir, "output.md"),
        log_path=os.path.join(run_dir, "events.jsonl"),
    )
    spec.setdefault("options", {})["report"] = "file"
    spec_path = os.path.join(run_dir, "spec.json")
    script = os.path.join(run_dir, "supervisor.py")
    _write(os.path.join(run_dir, "prompt.txt"), files["prompt.txt"])
    for name in files:  # the transcript a resume or fork takes along (spec resume_transcript)
        if name not in ("spec.json", "prompt.txt") and os.sep not in name and name[0] != ".":
            _write(os.path.join(run_dir, name), files[name])
    _write(spec_path, json.dumps(spec).encode())  # 0600: may hold forwarded variables
    _write(script, sys.modules["orch_supervisor"].SOURCE)
    _write(os.path.join(run_dir, "procs.py"), sys.modules["orch_supervisor"].PROCS)
    with open(os.path.join(run_dir, "supervisor.log"), "ab") as log, procs().detached() as kw:
        proc = subprocess.Popen(
            [sys.executable, "-S", script, spec_path],
            cwd=run_dir,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
            close_fds=True,
            **kw,
        )
    answer = {
        "pid": proc.pid,
        "start_time": procs().proc_start_time(proc.pid),
        "boot_id": _boot_id(),
        "remote_dir": run_dir,
        "cwd": cwd,
        "claude": claude,
    }
    _write(os.path.join(run_dir, "launched.json"), json.dumps(answer).encode())
    return answer, []


def _earlier_launch(run_dir: str) -> dict:
    """A retried launch (the connection dropped before the answer came back): the same answer,
    never a second agent."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with open(os.path.join(run_dir, "launched.json")) as fh:
                return json.load(fh)
        except (OSError, ValueError):
            time.sleep(0.05)
    raise RemoteError(f"an earlier attempt to start {run_dir} did not finish")


def _tail_from(path: str, offset: int) -> tuple[bytes | None, bool]:
    """Bytes of ``path`` from ``offset`` (all of it if the file is shorter: a reset)."""
    try:
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            reset = size < offset
            fh.seek(0 if reset else offset)
            return fh.read(), reset
    except OSError:
        return None, False


def do_status(req: dict, inp: BinaryIO) -> tuple[dict, list]:
    """Liveness and state.json of many runs in one answer; the log's new bytes and the output
    of runs that ended (or of every run with ``files``), so they come home in the same trip."""
    boot = _boot_id()
    blobs: list = []
    out = {}
    for run in req["runs"]:
        d = run["dir"]
        alive = _alive(run, boot)  # before reading the state: a run that ends in between
        state = None  # is then either still alive or already final in state.json
        try:
            with open(os.path.join(d, "state.json"), "rb") as fh:
                state = json.loads(fh.read())
        except (OSError, ValueError):
            pass
        entry: dict = {"alive": alive, "state": state, "exists": os.path.isdir(d)}
        ended = not alive or (isinstance(state, dict) and state.get("status") in FINAL)
        if run.get("files") or ended:
            data, reset = _tail_from(os.path.join(d, "events.jsonl"), int(run.get("log_size", 0)))
            if data:
                entry["log"], entry["log_reset"] = len(blobs), reset
                blobs.append(data)
            try:
                with open(os.path.join(d, "output.md"), "rb") as fh:
                    output = fh.read()
            except OSError:
                output = None
            if output is not None and len(output) != run.get("out_size", -1):
                entry["output"] = len(blobs)
                blobs.append(output)
            if ended:  # the transcript copy, kept before the run's end was recorded
                _transcript(os.path.join(d, TRANSCRIPT_COPY), run, entry, blobs)
            _live_text(os.path.join(d, "live.txt"), run, entry, blobs)
            if ended and not alive:
                data, _ = _tail_from(os.path.join(d, "supervisor.log"), 0)
                if data:
                    entry["supervisor_log"] = data[-2000:].decode("utf-8", "replace")
        out[str(run["id"])] = entry
    return {"runs": out}, blobs


def _transcript(path: str, run: dict, entry: dict, blobs: list) -> None:
    """The run's transcript copy, when the local side lacks it (another size)."""
    try:
        if os.path.getsize(path) == run.get("transcript_size", -1):
            return
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError:
        return
    entry["transcript"] = len(blobs)
    blobs.append(data)


def _live_text(path: str, run: dict, entry: dict, blobs: list) -> None:
    """The text claude is writing now (``live.txt``): what the local copy lacks, all of it when
    the local copy is of another message, or ``live_gone`` when there is none."""
    try:
        with open(path, "rb") as fh:
            head = fh.readline()
            mid = head.decode("utf-8", "replace").strip() if head.endswith(b"\n") else None
            size = os.fstat(fh.fileno()).st_size
            offset = int(run.get("live_size") or 0)
            reset = mid is None or mid != run.get("live_head") or size < offset
            fh.seek(0 if reset else offset)
            data = fh.read()
    except OSError:
        entry["live_gone"] = True
        return
    if data or reset:
        entry["live"], entry["live_reset"] = len(blobs), reset
        blobs.append(data)


def do_cancel(req: dict, inp: BinaryIO) -> tuple[dict, list]:
    """Ask the supervisor to stop (it stops the agent's processes and records ``cancelled``),
    take its tree down if it will not, and stop what is left of the run, also when the
    supervisor is already gone (see :func:`orch_plugins.procs.stop_supervisor`)."""
    run = req["run"]
    boot = _boot_id()
    with contextlib.suppress(OSError), open(os.path.join(run["dir"], "cancel_requested"), "w"):
        pass
    pid = run.get("pid")
    if not pid or (run.get("boot_id") and boot and run["boot_id"] != boot):
        return {"was_alive": False}, []  # the host restarted: nothing of the run is left
    was_alive = procs().stop_supervisor(
        pid,
        run.get("start_time"),
        float(req.get("grace", 5.0)),
        run_id=run.get("run_id", ""),
        token=run.get("token"),
        keep_children=bool(run.get("keep_children")),
    )
    return {"was_alive": was_alive, "stopped": not _alive(run, boot)}, []


def do_send(req: dict, inp: BinaryIO) -> tuple[dict, list]:
    """``orch send``: put the message (a file of the request, never a command line) into the
    run's inbox, which its supervisor hands to claude as the next user turn, and add the
    message's event line to the run's event log, which comes home with the rest of it."""
    files = _read_files(inp, req["files"])
    run_dir = req["run"]["dir"]
    why = supervisor().post_message(run_dir, files["message.txt"].decode("utf-8"))
    if why:
        raise RemoteError(why, "refused")
    with open(os.path.join(run_dir, "events.jsonl"), "ab") as log:
        log.write(files["event.json"].rstrip(b"\n") + b"\n")
    return {"sent": True}, []


def do_worktree_remove(req: dict, inp: BinaryIO) -> tuple[dict, list]:
    """Remove an agent's worktree and its branch (``orch discard``, ``orch clear``): git run
    with argument lists in the repository the worktree belongs to. The local side has checked
    that nothing unmerged is lost unless ``force``."""
    import subprocess

    def git(cwd: str, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["git", "-C", cwd, *args], capture_output=True, text=True, errors="replace"
        )

    path = _expand(req["path"])
    branch = req["branch"]
    if os.path.isdir(path):
        common = git(path, "rev-parse", "--git-common-dir")
        if common.returncode != 0:
            raise RemoteError(f"{path} is not a git worktree: {common.stderr.strip()}")
        repo = os.path.dirname(os.path.normpath(os.path.join(path, common.stdout.strip())))
        force = ["--force"] if req.get("force") else []
        removed = git(repo, "worktree", "remove", *force, "--", path)
        if removed.returncode != 0:
            raise RemoteError(f"git worktree remove {path}: {removed.stderr.strip()}")
    else:
        repo = _expand(req.get("repo") or "")
        if not req.get("repo"):
            return {"removed": False}, []
    git(repo, "worktree", "prune")
    if git(repo, "show-ref", "--verify", "--quiet", f"refs/heads/{branch}").returncode == 0:
        gone = git(repo, "branch", "-D", "--", branch)
        if gone.returncode != 0:
            raise RemoteError(f"git branch -D {branch}: {gone.stderr.strip()}")
    return {"removed": True}, []


def do_doctor(req: dict, inp: BinaryIO) -> tuple[dict, list]:
    """What a remote host needs: python3 (running this), claude, a writable base directory."""
    import subprocess

    try:
        _check_python()
        checks = [["python", True, f"python {sys.version.split()[0]} at {sys.executable}"]]
    except RemoteError as exc:
        checks = [["python", False, str(exc)]]
    try:
        claude = _resolve_claude(req["claude"])
        env = dict(os.environ, DISABLE_AUTOUPDATER="1")
        try:
            proc = subprocess.run(
                [claude, "--version"],
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=60,
                env=env,
            )
            version = (proc.stdout.decode("utf-8", "replace").strip().splitlines() or [""])[0]
            ok = proc.returncode == 0
            detail = (
                f"{version or 'no version'} at {claude}"
                if ok
                else (
                    f"{claude} --version exited {proc.returncode}: "
                    + proc.stderr.decode("utf-8", "replace").strip()[-300:]
                )
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            ok, detail = False, f"{claude} --version failed: {exc}"
        checks.append(["claude", ok, detail])
    except RemoteError as exc:
        checks.append(["claude", False, str(exc)])
    base = _expand(req["base_dir"])
    try:
        os.makedirs(base, mode=0o700, exist_ok=True)
        probe = os.path.join(base, f".probe.{os.getpid()}")
        _write(probe, b"ok")
        os.unlink(probe)
        checks.append(["base_dir", True, f"{base} is writable"])
    except OSError as exc:
        checks.append(["base_dir", False, f"{base} is not writable: {exc}"])
    if req.get("workdir"):
        wd = _expand(req["workdir"])
        ok = os.path.isdir(wd) and os.access(wd, os.W_OK | os.X_OK)
        checks.append(["workdir", ok, f"{wd} {'is' if ok else 'is not'} a writable directory"])
    return {"checks": checks}, []


def do_hold(req: dict, inp: BinaryIO) -> tuple[dict, list]:
    """Keep this session open until stdin closes, answering first: ``orch doctor --host``
    counts how many sessions one connection may hold open at once (sshd's MaxSessions)."""
    out = sys.stdout.buffer
    out.write(MARKER + json.dumps({"ok": True, "held": True, "blobs": []}).encode() + b"\n")
    out.flush()
    inp.read()
    return {"held": True}, []


COMMANDS = {
    "launch": do_launch,
    "status": do_status,
    "cancel": do_cancel,
    "send": do_send,
    "doctor": do_doctor,
    "hold": do_hold,
    "worktree_remove": do_worktree_remove,
}


def main() -> int:
    inp = sys.stdin.buffer
    blobs: list = []
    try:
        req = json.loads(inp.readline())
        reply, blobs = COMMANDS[req["cmd"]](req, inp)
        reply["ok"] = True
    except RemoteError as exc:
        reply = {"ok": False, "error": str(exc), "kind": exc.kind}
    except Exception as exc:  # report, never a bare traceback the local side cannot parse
        reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}", "kind": "remote"}
    reply["blobs"] = [len(b) for b in blobs]
    out = sys.stdout.buffer
    out.write(MARKER + json.dumps(reply).encode() + b"\n")
    for blob in blobs:
        out.write(blob)
    out.flush()
    return 0


if __name__ == "__orch_remote__":
    sys.exit(main())

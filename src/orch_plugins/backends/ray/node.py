"""orch's side of a Ray job: what runs on the node that Ray placed an agent on.

Shipped in the run's package (a ``py_modules`` entry of the job's runtime_env, see
:mod:`orch_plugins.backends.ray.backend`) as ``orch_ray_node.py`` beside an ``orch_ray_run/``
directory that holds the spec, the prompt, the supervisor and procs, and, for a resume, the
session's transcript and the git bundles of the agent's branch. The job's entrypoint is the
constant ``python3 -S -m orch_ray_node``: no task text, name or path is ever part of it.

On the node it makes the run's directory (``<base_dir>/<project>/runs/<run>-<name>-<token>``),
a private copy of the project (the job's ``working_dir``) or a git worktree rebuilt from the
shipped bundle, hands a resumed session's transcript copy to the supervisor (which puts it
where Claude Code looks), and runs orch's supervisor (``report = file``). Everything the
orchestrator needs comes home through the job's log (its stdout, which Ray keeps and serves
at ``GET /api/jobs/ID/logs``), as lines that start with :data:`PREFIX`:

* ``N {json}``: the node (host name, run directory, working directory), once;
* ``E "line"``: one line of the run's ``events.jsonl``, as a JSON string (ASCII only);
* ``S {json}``: the supervisor's ``state.json`` whenever it changes;
* ``L =TEXT``, ``L +TEXT``, ``L -``: the message being written (``live.txt``): all of it, what
  was added, gone (TEXT a JSON string);
* ``F NAME BASE64`` ... ``Z NAME SIZE SHA256``: a file (``output.md``, the supervisor's
  ``transcript.jsonl.gz``, ``branch.bundle``) in chunks, then its size and digest;
* ``D {json}``: done; nothing follows.

Standard library only (the node has Ray's Python, not orch-plugins). :func:`parse` reads the
records back on the orchestrator's side.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

#: Starts every record line in the job's log (anything else there is Ray's or a stray print).
PREFIX = "\x1eORCH1 "
#: Bytes of a file per ``F`` record (base64 makes lines of ~76 KB).
CHUNK = 57 * 1000
#: The directory of the run's files in the package, beside this module.
RUN_DIR_NAME = "orch_ray_run"
#: The supervisor's copy of the session's transcript in a run directory
#: (``supervisor.TRANSCRIPT_COPY``), and the one a resume or fork brings along.
TRANSCRIPT_COPY = "transcript.jsonl.gz"
RESUME_TRANSCRIPT = "resume-transcript.jsonl.gz"
FINAL = ("completed", "failed", "cancelled", "timed_out", "lost", "stalled")
#: How often the log is fed while the supervisor runs (seconds).
FEED_INTERVAL = 0.2


def _emit(kind: str, payload: str) -> None:
    sys.stdout.write(f"{PREFIX}{kind} {payload}\n")
    sys.stdout.flush()


def _git(cwd: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["git", "-C", cwd, *args], capture_output=True, text=True, errors="replace"
    )


def _checked(proc: subprocess.CompletedProcess, what: str) -> None:
    if proc.returncode != 0:
        raise RuntimeError(f"{what}: {proc.stderr.strip() or proc.stdout.strip()}")


class Feeder:
    """Sends new lines of ``events.jsonl`` and each new ``state.json`` to the log."""

    def __init__(self, run_dir: str) -> None:
        self.events = os.path.join(run_dir, "events.jsonl")
        self.state_path = os.path.join(run_dir, "state.json")
        self.offset = 0
        self.state_text: str | None = None
        self.state: dict = {}
        self.live_path = os.path.join(run_dir, "live.txt")
        #: What the log holds of ``live.txt`` (None: no such file).
        self.live: str | None = None

    def feed(self) -> None:
        try:
            with open(self.events, "rb") as fh:
                fh.seek(self.offset)
                data = fh.read()
        except OSError:
            data = b""
        end = data.rfind(b"\n")
        if end >= 0:
            for line in data[: end + 1].split(b"\n")[:-1]:
                text = line.decode("utf-8", "surrogateescape")
                _emit("E", json.dumps(text))
            self.offset += end + 1
        self.feed_state()
        self.feed_live()

    def feed_state(self) -> None:
        try:
            with open(self.state_path, encoding="utf-8") as fh:
                text = fh.read()
        except OSError:
            return
        if text != self.state_text:
            try:
                state = json.loads(text)
            except ValueError:
                return  # never half-written (renamed into place), but be safe
            self.state_text, self.state = text, state
            _emit("S", json.dumps(state))

    def feed_live(self) -> None:
        """The text of the message claude is writing (``live.txt``, for ``orch logs``): what
        was added since the last record (``L +``), the whole file when it is another message
        (``L =``), or that it is gone (``L -``)."""
        try:
            with open(self.live_path, "rb") as fh:
                now: str | None = fh.read().decode("utf-8", "surrogateescape")
        except OSError:
            now = None
        if now == self.live:
            return
        if now is None:
            _emit("L", "-")
        elif self.live is not None and now.startswith(self.live):
            _emit("L", "+" + json.dumps(now[len(self.live) :]))
        else:
            _emit("L", "=" + json.dumps(now))
        self.live = now


def send_file(name: str, path: str) -> bool:
    """Send the file at ``path`` as ``name``; False when there is none."""
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError:
        return False
    for i in range(0, len(data), CHUNK):
        _emit("F", f"{name} {base64.b64encode(data[i : i + CHUNK]).decode('ascii')}")
    _emit("Z", f"{name} {len(data)} {hashlib.sha256(data).hexdigest()}")
    return True


def _expand(path: str) -> str:
    return os.path.abspath(os.path.expanduser(path))


def _copy_project(src: str, dst: str) -> None:
    """The agent's private copy of the project: Ray unpacks one working_dir per node and hands
    it to every job that names it, so an agent never writes into the shared one."""
    shutil.copytree(src, dst, symlinks=True)


def _child_env() -> dict:
    """This process's environment without the package directories Ray put on PYTHONPATH (the
    shared working_dir and this package): the agent's own tools must not see them."""
    env = dict(os.environ)
    parts = [
        p
        for p in env.get("PYTHONPATH", "").split(os.pathsep)
        if p and "runtime_resources" not in p and os.path.realpath(p) != os.getcwd()
    ]
    if parts:
        env["PYTHONPATH"] = os.pathsep.join(parts)
    else:
        env.pop("PYTHONPATH", None)
    return env


def prepare(pkg: str, job: dict) -> tuple:
    """Make the run directory and the agent's working directory; write the node's spec.
    Returns (run_dir, spec)."""
    with open(os.path.join(pkg, "spec.json"), encoding="utf-8") as fh:
        spec = json.load(fh)
    base = _expand(job.get("base_dir") or "~/.orch-ray")
    run_dir = os.path.join(base, job["project"], "runs", job["run_name"])
    os.makedirs(os.path.dirname(run_dir), mode=0o700, exist_ok=True)
    os.makedirs(run_dir, mode=0o700, exist_ok=True)
    for name in ("prompt.txt", "supervisor.py", "procs.py"):
        shutil.copy2(os.path.join(pkg, name), os.path.join(run_dir, name))
    claude = shutil.which(os.path.expanduser(job.get("claude") or "claude"))
    if not claude:
        raise RuntimeError(
            f"claude not found on this node (looked for {job.get('claude') or 'claude'!r}, "
            f"PATH={os.environ.get('PATH', '')}): install Claude Code on the Ray nodes or set "
            "'claude' in [backends.ray]"
        )
    claude = os.path.abspath(claude)
    spec["argv"][0] = claude
    if spec.get("retry_argv"):
        spec["retry_argv"][0] = claude
    project = os.getcwd()  # the job's working_dir, as Ray unpacked it on this node
    rel = job.get("cwd_rel") or "."
    wt = spec.get("worktree")
    if wt:
        cwd = _prepare_worktree(pkg, job, run_dir, project, wt)
    else:
        work = os.path.join(run_dir, "work")
        if not os.path.isdir(work):
            _copy_project(project, work)
        cwd = os.path.normpath(os.path.join(work, rel))
        if not os.path.isdir(cwd):
            cwd = work
    spec.update(
        cwd=cwd,
        run_dir=run_dir,
        state_dir=os.path.dirname(os.path.dirname(run_dir)),
        prompt_path=os.path.join(run_dir, "prompt.txt"),
        output_path=os.path.join(run_dir, "output.md"),
        log_path=os.path.join(run_dir, "events.jsonl"),
        # A claude an earlier run left would be on that run's node, and Ray stopped that
        # job's whole process tree when it ended: nothing here to look for.
        previous_claudes=[],
    )
    spec.setdefault("options", {})["report"] = "file"
    # A resume or fork: the session's transcript copy travelled with the job; the supervisor
    # puts it where Claude Code looks (spec ``resume_transcript``). A local path means nothing.
    spec["resume_transcript"] = None
    shipped = os.path.join(pkg, RESUME_TRANSCRIPT)
    if os.path.exists(shipped):
        shutil.copy2(shipped, os.path.join(run_dir, RESUME_TRANSCRIPT))
        spec["resume_transcript"] = os.path.join(run_dir, RESUME_TRANSCRIPT)
    spec_path = os.path.join(run_dir, "spec.json")
    tmp = spec_path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(spec, fh)
    os.replace(tmp, spec_path)
    return run_dir, spec


def _prepare_worktree(pkg: str, job: dict, run_dir: str, project: str, wt: dict) -> str:
    """A git repository from the shipped bundle (the base commit; for a resume also the
    agent's branch), with the files ``[worktree] copy`` names taken from the project; the
    worktree itself is made by the supervisor (new) or here (a resume lands anywhere)."""
    repo = os.path.join(run_dir, "repo")
    path = os.path.join(run_dir, "worktree")
    if not os.path.isdir(repo):
        _checked(_git(run_dir, "init", "--quiet", repo), "git init")
        branch = f"refs/heads/{wt['branch']}"
        fetches = (
            ("base.bundle", f"+{job.get('base_ref') or 'refs/orch/base'}:refs/orch/base"),
            ("branch.bundle", f"+{branch}:{branch}"),
        )
        for bundle, refspec in fetches:
            src = os.path.join(pkg, bundle)
            if os.path.exists(src):
                fetched = _git(repo, "fetch", "--quiet", "--no-tags", src, refspec)
                _checked(fetched, f"git fetch {bundle}")
        import glob

        for pattern in wt.get("copy") or ():
            for src in sorted(glob.glob(os.path.join(project, pattern))):
                rel = os.path.relpath(src, project)
                if rel.startswith(os.pardir):
                    continue
                dst = os.path.join(repo, rel)
                os.makedirs(os.path.dirname(dst), exist_ok=True)
                if os.path.isdir(src):
                    shutil.copytree(src, dst, symlinks=True, dirs_exist_ok=True)
                else:
                    shutil.copy2(src, dst, follow_symlinks=False)
    wt["repo"] = repo
    if wt.get("create"):
        wt["path"] = path
    else:
        # A resume: the branch came in its bundle; check it out here.
        if not os.path.isdir(path):
            _checked(
                _git(repo, "worktree", "add", "--quiet", "--", path, wt["branch"]),
                "git worktree add",
            )
        wt["path"] = path
    return path


def send_branch(run_dir: str, wt: dict) -> None:
    """The agent's branch as a git bundle (its commits since the base), or a note that it
    is still at its base."""
    repo = wt.get("repo")
    branch = wt.get("branch")
    if not repo or not branch or not os.path.isdir(repo):
        return
    tip = _git(repo, "rev-parse", "--verify", "--quiet", f"refs/heads/{branch}^{{commit}}")
    if tip.returncode != 0:
        return
    out = os.path.join(run_dir, "branch.bundle")
    made = _git(repo, "bundle", "create", "--quiet", out, f"refs/heads/{branch}", "^refs/orch/base")
    if made.returncode != 0:  # no commit beyond the base: an empty bundle is refused
        made = _git(repo, "bundle", "create", "--quiet", out, f"refs/heads/{branch}")
    if made.returncode == 0:
        send_file("branch.bundle", out)


def main() -> int:
    here = os.path.dirname(os.path.abspath(__file__))
    pkg = os.path.join(here, RUN_DIR_NAME)
    with open(os.path.join(pkg, "job.json"), encoding="utf-8") as fh:
        job = json.load(fh)
    stopping = []

    def on_term(signum: int, _frame: Any) -> None:
        # Ray signals every process of the job at once; the supervisor records the end and
        # stops its agent. This process stays to send that end home.
        stopping.append(signum)
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(OSError):
                proc.send_signal(signal.SIGTERM)

    proc = None
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    node = {"host": socket.gethostname(), "pid": os.getpid()}
    try:
        run_dir, spec = prepare(pkg, job)
    except Exception as exc:  # reported as the run's failure, not a bare traceback
        _emit("N", json.dumps(node))
        _emit("S", json.dumps({"status": "failed", "error": f"on the Ray node: {exc}"}))
        _emit("D", json.dumps({"rc": None}))
        return 1
    node.update(run_dir=run_dir, cwd=spec["cwd"])
    _emit("N", json.dumps(node))
    feeder = Feeder(run_dir)
    if not stopping:
        with open(os.path.join(run_dir, "supervisor.log"), "ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-S", os.path.join(run_dir, "supervisor.py"),
                 os.path.join(run_dir, "spec.json")],
                cwd=run_dir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                env=_child_env(),
            )  # fmt: skip
        if stopping:
            proc.send_signal(signal.SIGTERM)
        while proc.poll() is None:
            feeder.feed()
            time.sleep(FEED_INTERVAL)
    feeder.feed()
    state = feeder.state
    if state.get("status") not in FINAL:
        tail = ""
        try:
            with open(os.path.join(run_dir, "supervisor.log"), "rb") as log_fh:
                tail = log_fh.read()[-2000:].decode("utf-8", "replace").strip()
        except OSError:
            pass
        why = "cancelled" if stopping else "the supervisor ended without recording the end"
        state = dict(state, status="cancelled" if stopping else "failed", error=why)
        if tail and not stopping:
            state["error"] = f"{why}: {tail.splitlines()[-1]}"
        _emit("S", json.dumps(state))
    send_file("output.md", os.path.join(run_dir, "output.md"))
    # The copy of the session's transcript the supervisor kept at the run's end.
    send_file(TRANSCRIPT_COPY, os.path.join(run_dir, TRANSCRIPT_COPY))
    if spec.get("worktree"):
        send_branch(run_dir, spec["worktree"])
    _emit("D", json.dumps({"rc": proc.returncode if proc is not None else None}))
    return 0


# -- the orchestrator's side ---------------------------------------------------------------------


class Records:
    """What a job's log holds, read back (:func:`parse`)."""

    def __init__(self) -> None:
        self.node: dict | None = None
        self.events: list = []
        self.state: dict | None = None
        self.files: dict = {}
        #: ``live.txt`` as the last records left it (None: none).
        self.live: str | None = None
        self.done = False


def parse(text: str) -> Records:
    """The records in a job's log text (other lines skipped; a file whose size or digest does
    not match, or that is cut short, is left out)."""
    out = Records()
    chunks: dict = {}
    for line in text.split("\n"):
        if not line.startswith(PREFIX):
            continue
        kind, _, payload = line[len(PREFIX) :].partition(" ")
        try:
            if kind == "E":
                out.events.append(json.loads(payload))
            elif kind == "S":
                out.state = json.loads(payload)
            elif kind == "N":
                out.node = json.loads(payload)
            elif kind == "F":
                name, _, b64 = payload.partition(" ")
                chunks.setdefault(name, []).append(base64.b64decode(b64))
            elif kind == "Z":
                name, size, digest = payload.split(" ")
                blob = b"".join(chunks.pop(name, []))
                if len(blob) == int(size) and hashlib.sha256(blob).hexdigest() == digest:
                    out.files[name] = blob
            elif kind == "L":
                if payload == "-":
                    out.live = None
                elif payload[:1] == "=":
                    out.live = json.loads(payload[1:])
                elif payload[:1] == "+" and out.live is not None:
                    out.live += json.loads(payload[1:])
            elif kind == "D":
                out.done = True
        except (ValueError, TypeError):
            continue
    return out


if __name__ == "__main__":
    sys.exit(main())

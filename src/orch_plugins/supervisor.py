"""Runs one ``claude -p`` for one agent and records what it learns while it runs.

Started detached by a backend as ``python -m orch_plugins.supervisor SPEC.json`` (or, on a host
without orch-plugins, as this file alone). Claude Code writes its stream-json events into a
regular file (``<run_dir>/stdout.jsonl``: a pipe can lose the end of a large answer, see
:meth:`Supervisor.run_once`), which the supervisor follows line by line. It keeps the events raw
in the run's log (all but the partial-message deltas, whose text goes to ``live.txt``, see
:class:`LiveText`), records the session id the moment Claude Code reports it, counts turns and
tool calls, enforces the timeout, retries transient API failures with backoff, stops the whole
process tree on SIGTERM (cancel), and writes the output file and the final record as soon as
Claude Code's ``result`` event is in (a claude that lingers after it is stopped after
``result_grace``); then it stops whatever the agent left running (see :mod:`orch_plugins.procs`).

Standard library only, and this module imports nothing from orch_plugins at top level but
:mod:`orch_plugins.procs` (os-only, shipped beside it): it runs for every agent, and is shipped
to remote hosts as is.
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

try:
    from orch_plugins import procs
except ImportError:  # run as a file on a host without orch-plugins: procs.py lies beside it
    import procs  # type: ignore[no-redef,import-not-found]

# The process helpers, under their earlier home (backends and plugins imported them from here).
pid_alive = procs.pid_alive
proc_start_time = procs.proc_start_time
descendants = procs.descendants
terminate_tree = procs.terminate_tree

# Not ``from typing import TYPE_CHECKING``: importing typing costs ~2.5 ms at start-up, paid by
# every agent and every hook.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

#: API statuses that Claude Code reports for failures worth another attempt.
TRANSIENT_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504, 529})
PROGRESS_INTERVAL = 0.5
#: Interactive mode: how often the store is asked whether a turn ended.
INTERACTIVE_POLL = 0.25
#: Interactive mode: the file in the run directory where claude's Stop hook hands over its
#: payload (see :func:`orch_plugins.claude.hook_settings`).
STOP_FILE = "stop.json"
#: In the spec's ``retry_argv``: where the session id goes (``orch_plugins.claude.retry_argv``).
SESSION_ID_SLOT = "{session_id}"
#: In the run directory: room set aside at the start (:data:`END_FILE_SIZE` spaces), where the
#: run's end is written in place when the store cannot take it (a full disk: the write needs no
#: new block); the next status read records it from there (:func:`read_left_end`).
END_FILE = "end.json"
END_FILE_SIZE = 4096
#: In the state directory: the ended runs' status objects handed to the announcing process.
EVENTS_DIR = "events"
#: Variables a tmux pane sets for its terminal, kept when the launcher's environment is loaded.
PANE_ENV = ("TERM", "COLORTERM", "TMUX", "TMUX_PANE")
#: Seconds claude may linger after its ``result`` event before what is left of its process tree
#: is stopped (spec and config ``result_grace``). Claude Code 2.1.197 itself waits ~5 s for a
#: Bash tool's background task before it exits.
RESULT_GRACE = 3.0
#: The run is recorded (its slot freed) when claude exits, and at the latest this many seconds
#: after its result event; a normal exit comes ~0.1 s after it, so its exit code is recorded too.
RECORD_WAIT = 1.0
#: Following claude's stdout file: read this much at a time; poll this often (seconds, growing
#: from the first to the second figure while nothing new comes).
READ_SIZE = 1 << 20
TAIL_POLL = (0.01, 0.05)
#: The partial text of the message being written is appended to ``live.txt`` at most this often.
LIVE_INTERVAL = 0.25
#: Disk space of claude's stdout file that was already read is given back in steps this big
#: (partial-message deltas make it grow with every token; its offsets never change).
SPOOL_RELEASE = 4 << 20
#: API statuses of "too many requests now" (rate limited, overloaded): reported to admission,
#: which pauses new starts for everyone, and the agent's claude is held until it may go on.
RATE_LIMIT_STATUSES = frozenset({429, 529})
#: The watchdog allows claude at least this long (seconds) for its first line: a start under
#: load (its init event) can take seconds, and that is no stall.
IDLE_START = 30.0
#: While claude is held after a rate-limit retry: how often admission is asked (seconds).
PARK_POLL = 0.2
#: Longest wait before a retry (seconds).
RETRY_CAP = 60.0
#: What a retry that continues the session tells the model ({status}: the API error status).
RETRY_PROMPT = (
    "Your previous attempt at this task stopped on a transient API error ({status}). "
    "Continue the task from where it stopped: the conversation so far is above; do not "
    "redo work that is already done."
)


#: In the run directory: messages for a print-mode agent (``orch send``), one file each, until
#: the supervisor hands them to claude; ``closed`` in it once the agent takes no more.
INBOX_DIR = "inbox"
INBOX_CLOSED = "closed"
INBOX_LOCK = "inbox.lock"


@contextlib.contextmanager
def _inbox_locked(run_dir: str | Path) -> Any:
    """Hold the run's inbox lock (``flock``): a message is either in before the supervisor
    looks for the last time, or refused."""
    import fcntl

    fd = os.open(os.path.join(run_dir, INBOX_LOCK), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def post_message(run_dir: str | Path, text: str) -> str | None:
    """Put ``text`` into a print-mode agent's inbox; None when it is in (the agent answers it
    as its next user turn, once its current turn ends), else why not (the end of a sentence
    that starts with the agent's name)."""
    inbox = Path(run_dir, INBOX_DIR)
    if not inbox.is_dir():
        return "takes no messages (it was started without stream-json input)"
    with _inbox_locked(run_dir):
        if (inbox / INBOX_CLOSED).exists():
            return "has finished its work; resume it instead: orch resume NAME TASK"
        name = f"{time.time_ns():020d}-{os.getpid()}.txt"
        tmp = inbox / f".{name}.tmp"
        tmp.write_bytes(text.encode("utf-8"))
        os.replace(tmp, inbox / name)
    return None


def take_messages(run_dir: str | Path, *, close: bool) -> list[str]:
    """The messages waiting in the run's inbox, oldest first, removed from it; with ``close``
    and none waiting, the inbox is closed (later posts are refused)."""
    inbox = Path(run_dir, INBOX_DIR)
    if not inbox.is_dir():
        return []
    with _inbox_locked(run_dir):
        files = sorted(p for p in inbox.iterdir() if p.suffix == ".txt" and p.name[0] != ".")
        texts = []
        for path in files:
            texts.append(path.read_bytes().decode("utf-8", "replace"))
            path.unlink()
        if close and not files:
            (inbox / INBOX_CLOSED).touch()
    return texts


def user_turn(text: str) -> bytes:
    """One user turn for claude's ``--input-format stream-json`` stdin (a JSON line)."""
    message = {"type": "user", "message": {"role": "user", "content": text}}
    return json.dumps(message).encode("utf-8") + b"\n"


class Feeder:
    """Writes user turns to claude's stdin from a thread of its own (a large prompt must not
    stall the reading of claude's output), in order; :meth:`close` closes stdin after them."""

    def __init__(self, pipe: Any) -> None:
        import queue

        self.pipe = pipe
        self.queue: queue.Queue[bytes | None] = queue.Queue()
        self.closed = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def put(self, data: bytes) -> None:
        if not self.closed:
            self.queue.put(data)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.queue.put(None)

    def _run(self) -> None:
        try:
            while (data := self.queue.get()) is not None:
                self.pipe.write(data)
                self.pipe.flush()
        except (OSError, ValueError):  # claude is gone: nothing more to say to it
            pass
        finally:
            with contextlib.suppress(OSError, ValueError):
                self.pipe.close()


def retry_delay(base: float, previous: float, cap: float = RETRY_CAP) -> float:
    """Seconds to wait before the next whole-run retry: "decorrelated jitter",
    ``min(cap, uniform(base, 3 * previous))`` with ``previous`` = 0 (then ``base``) before the
    first retry. Each agent draws its own delays, so agents that failed together (an
    overloaded API) do not retry in the same second, and no retry comes sooner than ``base``.
    Source: Marc Brooker, "Exponential Backoff And Jitter", AWS Architecture Blog, 2015.
    """
    import random

    return min(cap, random.uniform(base, 3 * max(previous, base)))


# -- reporting ----------------------------------------------------------------------------------


class DbReporter:
    """Writes into the local SQLite store (the normal case)."""

    def __init__(self, spec: dict[str, Any]) -> None:
        from orch_plugins.store import Store

        # create=False: a state dir removed while the agent ran must not be resurrected empty.
        self.store = Store(Path(spec["state_dir"]), create=False)
        self.run_id = int(spec["run_id"])
        #: This process recorded the run's end, and with it claimed its orch_agent_ended.
        self.claimed = False
        self.handed_over = False
        #: The end could not be recorded in the store and was left in the end file instead.
        self.left_end = False
        self.end_file = Path(spec["run_dir"], END_FILE)

    def check_in(self) -> bool:
        """Before anything starts: whether the run is still to be run (see
        :meth:`orch_plugins.store.Store.check_in`); False: it ended meanwhile, start nothing."""
        pid = os.getpid()
        return self.store.check_in(self.run_id, pid, proc_start_time(pid))

    def update(self, **fields: Any) -> None:
        self.store.update(self.run_id, **fields)

    def reserve(self) -> None:
        """Set aside the room the run's end needs (:data:`END_FILE`) while there is some."""
        with contextlib.suppress(OSError), open(self.end_file, "wb") as fh:
            fh.write(b" " * END_FILE_SIZE)

    def finish(self, status: str, **fields: Any) -> None:
        # The end and the claim of its orch_agent_ended event in one statement: the event is
        # fired exactly once, by the process after_end starts, which never opens the store
        # (and which is not started when no plugin listened as the run started).
        if self.left_end:
            return  # the first verdict stands, as in the store
        try:
            if self.store.finish(self.run_id, status, claim_end=True, **fields):
                self.claimed = self.store.end_claimed(self.run_id)
        except Exception as exc:  # the store cannot take it now (sqlite3: a full disk)
            if not leave_end(self.end_file, status, fields):
                raise
            self.left_end = True
            warn(f"the run's end went to {self.end_file}: the store refused it ({exc!r})")

    def cancel_requested(self) -> bool:
        return bool(self.store.get_run(self.run_id)["cancel_requested"])

    def rate_limited(self, delay: float, status: int) -> bool:
        """Report a 429/529 retry (the shared pause, the effective limit); True: the agent's
        claude is to be held until :meth:`may_go_on`."""
        self.store.rate_limited(self.run_id, delay, status)
        return True

    def may_go_on(self) -> bool:
        return self.store.may_go_on(self.run_id)

    def pause_left(self) -> float:
        return self.store.pause_left()

    def after_end(self) -> None:
        """Once the run's end is recorded: start the process that loads the plugins (this one
        never does) when it has work, queued agents to start or this run's end to announce.
        Announcing needs no store: the run's status object is handed over in a file."""
        from orch_plugins.store import public

        if self.left_end:
            return  # the next status read records the end (and starts queued agents)
        queued = bool(self.store.count("queued"))
        announce = self.claimed and not self.handed_over
        if not (queued or announce):
            return
        self.handed_over = True
        news = Path(self.store.state_dir, EVENTS_DIR, f"ended-{self.run_id}.json")
        try:
            if announce:
                news.parent.mkdir(exist_ok=True)
                write_atomic(news, json.dumps(public(self.store.get_run(self.run_id))))
            pump_queue(
                str(self.store.state_dir) if queued else None, str(news) if announce else None
            )
        except OSError:
            if announce:  # not handed over after all: a later status read announces it
                self.store.update(self.run_id, end_announced=0)

    def close(self) -> None:
        """Done with the store: what follows (stopping leftovers) may take a while."""
        self.store.close()


class FileReporter:
    """Writes ``<run_dir>/state.json`` atomically: for hosts without the store (remote).

    The file is written at once, with this process's pid, so a reader tells "started" from
    "died before reporting"; a ``cancel_requested`` file beside it stands for the store's flag.
    """

    def __init__(self, spec: dict[str, Any]) -> None:
        self.run_dir = Path(spec["run_dir"])
        self.path = self.run_dir / "state.json"
        self.state: dict[str, Any] = {"status": "running", "pid": os.getpid()}
        self._flush()

    def _flush(self) -> None:
        write_atomic(self.path, json.dumps(self.state))

    def check_in(self) -> bool:
        return not self.cancel_requested()

    def reserve(self) -> None:
        pass  # state.json is rewritten whole: nothing to set aside

    def update(self, **fields: Any) -> None:
        self.state.update(fields)
        self._flush()

    def finish(self, status: str, **fields: Any) -> None:
        self.state.update(fields, status=status, ended_at=time.time())
        self._flush()

    def cancel_requested(self) -> bool:
        return (self.run_dir / "cancel_requested").exists()

    def rate_limited(self, delay: float, status: int) -> bool:
        """A host without the store shares no pause: its claude retries on its own."""
        self.update(api_retries=int(self.state.get("api_retries") or 0) + 1)
        return False

    def may_go_on(self) -> bool:
        return True

    def pause_left(self) -> float:
        return 0.0

    def after_end(self) -> None:
        pass  # the local orch pumps and announces when it collects this run's end

    def close(self) -> None:
        pass


# -- live text and claude's stdout file ---------------------------------------------------------


class LiveText:
    """The text of the message claude is writing now, in ``<run_dir>/live.txt``, for
    ``orch logs -f``: the message's id on the first line, then its text so far.

    Replaced (atomically) when a message starts, appended at most every
    :data:`LIVE_INTERVAL` while text arrives, removed when the run ends: it never holds more than
    one message, however long the run. The deltas themselves are not kept anywhere."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.pending: list[str] = []
        self.last = 0.0
        self.active = False

    def start(self, message_id: str) -> None:
        with contextlib.suppress(OSError):  # a full disk: orch logs -f shows less, that is all
            write_atomic(self.path, " ".join(message_id.split()) + "\n")
        self.pending = []
        self.active = True
        self.last = time.monotonic()

    def add(self, text: str) -> None:
        self.pending.append(text)
        if time.monotonic() - self.last >= LIVE_INTERVAL:
            self.flush()

    def flush(self) -> None:
        if not (self.active and self.pending):
            return
        data = "".join(self.pending).encode("utf-8", "replace")
        self.pending = []
        self.last = time.monotonic()
        with contextlib.suppress(OSError), open(self.path, "ab") as fh:
            fh.write(data)

    def clear(self) -> None:
        self.pending = []
        self.active = False
        with contextlib.suppress(OSError):
            self.path.unlink()


_fallocate: Any = None


def _exit_fd(pid: int) -> int | None:
    """A pidfd of the child ``pid`` (readable once it exits; Linux 5.3), or None."""
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):
        return None


def _nap(exited: int | None, seconds: float) -> None:
    """Sleep ``seconds``, or less when the pidfd ``exited`` says the process ended: the run is
    recorded the moment claude exits, not up to a poll interval later."""
    if exited is None:
        time.sleep(seconds)
        return
    import select

    try:
        select.select([exited], [], [], seconds)
    except (OSError, ValueError):
        time.sleep(seconds)


def release_space(fd: int, upto: int, released: int) -> int:
    """Give back the disk blocks of bytes ``released..upto`` of a file that was read
    (``fallocate`` PUNCH_HOLE | KEEP_SIZE: offsets and size stay, the bytes read back as zeros).
    Best effort: where the platform or file system cannot, nothing happens. Returns the new
    ``released`` mark."""
    global _fallocate
    if _fallocate is None:
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            func = libc.fallocate
            func.argtypes = (ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64)
            _fallocate = func
        except (OSError, AttributeError, ImportError):
            _fallocate = False
    if _fallocate and upto > released and _fallocate(fd, 0x01 | 0x02, released, upto - released):
        _fallocate = False  # EOPNOTSUPP and the like: stop trying
    return upto if _fallocate else released


# -- the supervisor -----------------------------------------------------------------------------


class Supervisor:
    """One agent's run: its claude, its records, its containment.

    ``batch``: the :class:`Batch` this run is supervised in (one process for the runs of one
    launch, each in a thread of its own), or None for a process of its own (a tmux pane, a
    remote host, an interactive agent). In a batch the process-wide parts (subreaper, the
    orphan reaper, signal handlers, the lock held while children start) are the batch's, and
    the agent's processes are found from its own claude, marker and cgroup, never from the
    supervising process's tree (which holds every agent of the batch).
    """

    def __init__(
        self,
        spec: dict[str, Any],
        reporter: Any,
        *,
        display: bool = False,
        batch: Batch | None = None,
    ) -> None:
        self.spec = spec
        self.batch = batch
        self.rep = reporter
        #: Also print human-readable progress to stdout (a tmux pane); off once the pane is gone.
        self.display = display
        self.started_at = time.time()  # a date (transcript entries since then)
        self.started_mono = time.monotonic()  # durations
        self.run_dir = Path(spec["run_dir"])
        self.proc: subprocess.Popen[bytes] | None = None
        self.stop_reason: str | None = None  # "cancelled" | "timed_out" | "stalled"
        #: The watchdog: seconds without a line from claude before the run is stopped.
        self.idle_timeout = float(spec["idle_timeout"]) if spec.get("idle_timeout") else None
        self.last_line = time.monotonic()
        #: Whether this attempt's claude has printed anything yet (see :data:`IDLE_START`).
        self.heard = False
        #: claude is held (SIGSTOP) after a rate-limit retry until admission lets it go on.
        self.parked = False
        self.next_park_poll = 0.0
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.session_id: str | None = None
        #: The session this run forked (``ORCH_FORK_OF``): never taken for the run's own.
        self.fork_of = (spec.get("env") or {}).get("ORCH_FORK_OF") or None
        self.result: dict[str, Any] | None = None
        self.turns = 0
        self.tool_calls = 0
        self.last_flush = -PROGRESS_INTERVAL  # monotonic
        self.flush_lock = threading.Lock()
        self.flush_timer: threading.Timer | None = None
        self.stderr_tail = ""
        #: The raw log while an attempt runs; when claude's result event came (monotonic).
        self.log: Any = None
        self.result_at: float | None = None
        #: A claude still running when its run was recorded: stopped by :meth:`stop_leftovers`.
        self.lingering: subprocess.Popen[bytes] | None = None
        self.live = LiveText(self.run_dir / "live.txt")
        #: Leave what the agent started running when the run ends (role or --keep-children).
        self.keep_children = bool(spec.get("keep_children"))
        env = spec.get("env") or {}
        token = env.get(procs.RUN_TOKEN_VAR)
        #: The environment entries every process of this run carries (None: an old spec).
        self.marker = procs.run_marker(spec["run_id"], token) if token else None
        self.cgroup_name = procs.cgroup_name(spec["run_id"], token) if token else None
        self.cgroup: str | None = None
        #: Held while a child is started, so the orphan reaper never collects a child whose
        #: Popen object is not assigned yet (one lock for the whole batch: it has one reaper).
        self.spawn_lock = batch.spawn_lock if batch is not None else threading.Lock()
        #: claude's stdin with ``--input-format stream-json`` (None: the prompt file is stdin).
        self.feeder: Feeder | None = None
        #: Messages were handed to claude after its last result: another result is due.
        self.more = False
        #: The first of the run's files that could not be written (a full disk), or None.
        self.disk_error: str | None = None

    # Containment: everything the agent starts stays findable (see orch_plugins.procs).
    def contain(self) -> None:
        """Become a subreaper, reap orphans as they die, and make the run's cgroup where the
        machine allows one (``containment = "tree"`` in the spec skips the cgroup). In a batch
        the first two are the batch's (:meth:`Batch.contain`)."""
        if self.batch is None:
            procs.become_subreaper()
            with contextlib.suppress(ValueError):  # not the main thread (tests)
                signal.signal(signal.SIGCHLD, self._on_child)
        if self.cgroup_name and self.spec.get("containment", "auto") != "tree":
            self.cgroup = procs.make_cgroup(self.cgroup_name)

    def save_work(self) -> dict[str, Any]:
        """:func:`save_work` for this run, with the orphan reaper held off: it would collect
        git's exit status before ``subprocess.run`` does (git diff --quiet then "succeeds")."""
        with self.spawn_lock:
            return save_work(self.spec)

    def prepare_worktree(self) -> tuple[dict[str, Any], str | None]:
        """:func:`prepare_worktree` for this run, the orphan reaper held off (see above)."""
        with self.spawn_lock:
            return prepare_worktree(self.spec)

    def place_transcript(self) -> str | None:
        """Put the transcript of the session this run resumes or forks where its claude will
        look (:func:`place_transcript`), noting in the run's log what was done; the reason the
        run cannot start when the session's transcript is nowhere to be had."""
        try:
            done = place_transcript(self.spec, self.child_env())
        except TranscriptError as exc:
            return str(exc)
        except OSError as exc:
            return f"cannot put the session's transcript where Claude Code looks: {exc}"
        if done.get("copy_problem"):
            self.log_event(
                {
                    "type": "orch",
                    "subtype": "transcript_copy_unusable",
                    "message": f"{done['copy_problem']}; resuming from this machine's transcript",
                }
            )
        if done.get("placed"):
            self.log_event(
                {"type": "orch", "subtype": "transcript_placed", "source": done["placed"]}
            )
        return None

    def keep_transcript(self, session_id: str | None, source: str | None = None) -> None:
        """Keep a copy of the session's transcript in the run's directory (spec
        ``keep_transcript``, on by default): see :func:`keep_transcript`. Never raises: a
        copy that cannot be made (a full disk, no transcript) is noted in the run's log and
        on stderr, and the run is recorded as it ended."""
        if not session_id or not self.spec.get("keep_transcript", True):
            return
        try:
            keep_transcript(session_id, self.spec["cwd"], self.run_dir, self.child_env(), source)
        except Exception as exc:
            message = f"the session's transcript was not kept with the run: {exc}"
            warn(message)  # never print: stderr may be a tmux pane that is gone (EIO)
            with contextlib.suppress(Exception):
                self.log_event(
                    {"type": "orch", "subtype": "transcript_not_kept", "message": message}
                )

    def _on_child(self, _signum: int, _frame: Any) -> None:
        if self.spawn_lock.acquire(blocking=False):
            try:
                procs.reap_orphans({p.pid for p in (self.proc, self.lingering) if p is not None})
            finally:
                self.spawn_lock.release()

    def spawn(self, argv: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        """Start claude (in the run's cgroup when there is one) and keep its Popen."""
        join = None
        if self.cgroup:
            with contextlib.suppress(OSError):  # the group is gone: the tree still holds it
                join = procs.CgroupJoin(self.cgroup)
        try:
            with self.spawn_lock:
                self.proc = subprocess.Popen(argv, preexec_fn=join, **kwargs)
        finally:
            if join is not None:
                join.close()
        return self.proc

    def children(self) -> set[int]:
        """The pids of this run's claude processes that a ``Popen`` still waits for."""
        return {p.pid for p in (self.proc, self.lingering) if p is not None}

    def agent_processes(self) -> dict[int, int]:
        """``{pid: start_time}`` of every process the agent started that still runs: the tree
        below this process (below this run's claude in a batch, whose process supervises
        other agents too), the run's marker and its cgroup."""
        if self.batch is None:
            return procs.agent_processes(os.getpid(), marker=self.marker, cgroup=self.cgroup)
        found = procs.agent_processes(marker=self.marker, cgroup=self.cgroup)
        for pid in self.children():
            start = proc_start_time(pid)
            if start is not None and pid_alive(pid, start):
                found[pid] = start
                found.update(procs.agent_processes(pid))
        return found

    def terminate_agent(self, grace: float | None = None) -> None:
        """Stop claude and everything the agent started: SIGTERM, SIGKILL after ``grace``
        seconds (default: the spec's ``kill_grace``). With ``keep_children``, claude only."""
        grace = float(self.spec.get("kill_grace", 5.0)) if grace is None else grace
        self.unpark()  # a held claude takes no SIGTERM until it is continued
        if self.keep_children:
            proc = self.proc
            start = procs.proc_start_time(proc.pid) if proc is not None else None
            if proc is not None and start is not None:
                procs.terminate(
                    lambda: {proc.pid: start} if procs.pid_alive(proc.pid, start) else {}, grace
                )
            return
        procs.terminate(self.agent_processes, grace)
        if self.cgroup:
            procs.cgroup_kill(self.cgroup)

    def release(self) -> None:
        """At the very end: stop what the agent left behind (unless kept), then remove the
        run's cgroup once it is empty. Never raises."""
        try:
            if not self.keep_children:
                self.terminate_agent()
            if self.cgroup:
                procs.remove_cgroup(self.cgroup, wait=0.0 if self.keep_children else 5.0)
            if self.batch is None:
                procs.reap_orphans()
            else:
                self.batch.reap()  # never a zombie another run's Popen still waits for
        except Exception as exc:  # the run is recorded already; say why, do not fail it
            warn(f"cleanup failed: {exc!r}")

    # Stopping: called from a signal handler or the timeout timer; never blocks the caller.
    def stop(self, reason: str) -> None:
        if reason == "timed_out" and self.result_final():
            return  # the run ended in time; a lingering claude is stopped after result_grace
        with self.lock:
            if self.stop_reason:
                return
            self.stop_reason = reason
        self.stopping.set()
        threading.Thread(target=self._kill_child, daemon=True).start()

    def _kill_child(self) -> None:
        if self.proc is not None:
            self.terminate_agent()

    def on_signal(self, signum: int, _frame: Any) -> None:
        if signum == signal.SIGHUP and self.display:
            # The tmux window or server went away: the pane was only a view, the agent goes on.
            self.display = False
            return
        self.stop("cancelled")

    # Display (tmux): progress lines for a person watching the pane; never fails the agent.
    def show(self, lines: list[str]) -> None:
        if not self.display or not lines:
            return
        try:
            sys.stdout.write("".join(line + "\n" for line in lines))
            sys.stdout.flush()
        except (OSError, ValueError):  # EIO once the pane's terminal is gone
            self.display = False

    def show_event(self, event: dict[str, Any]) -> None:
        if self.display:
            self.show(_describe(event))

    def show_start(self) -> None:
        if not self.display:
            return
        spec = self.spec
        task = _first_line(_read_text(spec["prompt_path"], 4096))
        self.show(
            [
                f"== orch agent {spec['name']} (run {spec['run_id']}) ==",
                f"task: {task[:150]}",
                "Ctrl-C here cancels the agent; closing the window only closes this view.",
                "",
            ]
        )

    def show_end(self, status: str, fields: dict[str, Any]) -> None:
        cost = fields.get("cost_usd")
        secs = (fields.get("duration_ms") or 0) / 1000
        detail = f" after {secs:.1f} s" + (f", {_money(cost)}" if isinstance(cost, float) else "")
        lines = [f"== {status}{detail} =="]
        if fields.get("error"):
            lines.append(f"error: {fields['error']}")
        if Path(self.spec["output_path"]).exists():
            lines.append(f"output: {self.spec['output_path']}")
        self.show(["", *lines])

    def note_claude(self, proc: subprocess.Popen[bytes]) -> None:
        """Record which process is this run's claude (pid and start time), so a later resume
        can tell whether it still runs."""
        self.rep.update(claude_pid=proc.pid, claude_start=proc_start_time(proc.pid))

    def stop_previous_claudes(self) -> None:
        """Stop any claude an earlier run of this session left running (a supervisor killed
        with -9, a claude that outlived its run), so two never write one session; only a
        process that is provably that claude (pid and start time) is signalled."""
        grace = float(self.spec.get("kill_grace", 5.0))
        for prev in self.spec.get("previous_claudes") or ():
            pid, start = prev.get("pid"), prev.get("start_time")
            if not pid or start is None or proc_start_time(pid) != start:
                continue
            if not pid_alive(pid, start):
                continue
            run_id = prev.get("run_id")
            self.log_event(
                {
                    "type": "orch",
                    "subtype": "stopped_previous_claude",
                    "pid": pid,
                    "run_id": run_id,
                    "message": f"stopped claude (pid {pid}) left running by run {run_id} "
                    "of this session",
                }
            )
            terminate_tree(pid, grace, start_time=start)
            deadline = time.monotonic() + grace + 2.0
            while pid_alive(pid, start) and time.monotonic() < deadline:
                time.sleep(0.05)

    def run(self) -> int:
        spec = self.spec
        self.show_start()
        self.stop_previous_claudes()
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
        delay = 0.0
        argv, prompt_path = spec["argv"], spec["prompt_path"]
        resuming = False
        if spec.get("input_turns"):
            with contextlib.suppress(OSError):
                (self.run_dir / INBOX_DIR).mkdir(exist_ok=True)
        while True:
            attempt += 1
            self.rep.update(attempt=attempt)
            rc = self.run_once(argv, prompt_path)
            if resuming and self.resume_refused(rc) and not self.stop_reason:
                # The session could not be continued (no transcript where claude looks):
                # this attempt starts afresh instead.
                self.log_event({"type": "orch", "subtype": "retry_fresh", "attempt": attempt})
                argv, prompt_path, resuming = spec["argv"], spec["prompt_path"], False
                self.result = None
                rc = self.run_once(argv, prompt_path)
            if self.stop_reason or attempt > retries or not self.transient():
                break
            delay = retry_delay(backoff, delay)
            status = (self.result or {}).get("api_error_status")
            if status in RATE_LIMIT_STATUSES:  # Claude Code gave up on a rate limit itself
                with contextlib.suppress(Exception):
                    self.rep.rate_limited(delay, int(status))
            # A whole-run retry waits out the pause every agent shares, and for its turn.
            delay = max(delay, self.rep.pause_left())
            # Continue the session Claude Code recorded, so the work done so far is kept.
            sid = self.session_id if spec.get("retry_argv") else None
            self.log_event(
                {
                    "type": "orch",
                    "subtype": "retry",
                    "attempt": attempt + 1,
                    "max_attempts": retries + 1,
                    "delay_s": round(delay, 3),
                    "api_error_status": status,
                    "resume_session": sid,
                }
            )
            if sid:
                resuming = True
                argv = [sid if a == SESSION_ID_SLOT else a for a in spec["retry_argv"]]
                prompt_path = str(self.run_dir / "retry-prompt.txt")
                write_atomic(Path(prompt_path), RETRY_PROMPT.format(status=status))
            if self.stopping.wait(delay):
                break
            if status in RATE_LIMIT_STATUSES and not self.wait_turn():
                break
        if timer:
            timer.cancel()
        self.close_inbox()
        self.finish(rc, attempt, time.monotonic() - start)
        return 0

    def close_inbox(self) -> None:
        """The run is ending: refuse later messages; note the ones that never reached claude."""
        try:
            left = take_messages(self.run_dir, close=True)
        except OSError:
            return
        for text in left:
            self.log_event({"type": "orch", "subtype": "message_undelivered", "text": text[:300]})

    def resume_refused(self, rc: int | None) -> bool:
        """A continuing attempt that ended before any turn without an API error: claude did
        not take up the session (``No conversation found``)."""
        res = self.result or {}
        if not res:
            return rc not in (0, None)
        return (
            bool(res.get("is_error"))
            and not res.get("api_error_status")
            and not res.get("num_turns")
        )

    def transient(self) -> bool:
        res = self.result or {}
        status = res.get("api_error_status")
        return (
            bool(res.get("is_error"))
            and isinstance(status, int)
            and (status in TRANSIENT_STATUSES or status >= 500)
        )

    def result_final(self) -> bool:
        """Claude Code's result event is in, no retry follows it and no message handed over
        after it awaits its answer: it decides the outcome."""
        return self.result is not None and not self.transient() and not self.more

    def log_event(self, event: dict[str, Any]) -> None:
        try:
            if self.log is not None:
                self.log.flush()
            with open(self.spec["log_path"], "ab") as log:
                log.write(json.dumps(event).encode() + b"\n")
        except OSError as exc:
            self.note_disk_error("the run's log", exc)
        self.show_event(event)

    def write_log(self, raw: bytes, *, flush: bool = False) -> None:
        """Keep a line of claude's in the run's log; a log that cannot be written (a full
        disk) is noted, and the run goes on without it."""
        if self.log is None:
            return
        try:
            self.log.write(raw)
            if flush:
                self.log.flush()
        except OSError as exc:
            self.note_disk_error("the run's log", exc)

    def note_disk_error(self, what: str, exc: OSError) -> None:
        """Remember the first file of the run that could not be written (said in the run's
        error when it does not complete, or completes without its output)."""
        if self.disk_error is None:
            self.disk_error = f"could not write {what}: {exc.strerror or exc}"

    def record(self, **fields: Any) -> None:
        """Record progress (not the end): a store that cannot take it now (a full disk,
        locked too long) costs the progress, never the run."""
        try:
            self.rep.update(**fields)
        except Exception as exc:
            warn(f"cannot record progress: {exc!r}")

    def child_env(self) -> dict[str, str]:
        """This process's environment, plus the spec's variables (the run's marker among
        them), minus its unset names and the mark of orch's own detached processes."""
        env = dict(os.environ)
        env.pop(procs.DETACHED_VAR, None)
        env.update(self.spec.get("env") or {})
        for key in self.spec.get("unset_env") or ():
            env.pop(key, None)
        return env

    def run_once(self, argv: list[str] | None = None, prompt_path: str | None = None) -> int | None:
        """One claude process, ``argv`` (default the spec's) with ``prompt_path`` (default the
        spec's) on stdin: its exit code, or None when it did not start or was left lingering
        after its result (see :meth:`follow`).

        Claude's stdout is a regular file, never a pipe: Claude Code 2.1.197 can exit before a
        large write into a pipe has drained, which cuts the final ``result`` line of a large
        answer (about 1 MB alone, 300 KB under load). A file takes every byte at once, whoever
        reads it and however slowly."""
        spec = self.spec
        env = self.child_env()
        self.result = None
        if self.stopping.is_set():
            return None
        self.result_at = None
        self.more = False
        self.live.clear()
        argv = argv or spec["argv"]
        # claude reads stream-json turns on stdin (the core gave it --input-format stream-json).
        turns = bool(spec.get("input_turns"))
        spool = self.run_dir / "stdout.jsonl"
        out_fd = os.open(spool, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o600)
        try:
            with (
                open(prompt_path or spec["prompt_path"], "rb") as stdin,
                open(self.run_dir / "stderr.log", "ab") as stderr,
            ):
                self.spawn(
                    argv,
                    stdin=subprocess.PIPE if turns else stdin,
                    stdout=out_fd,
                    stderr=stderr,
                    cwd=spec["cwd"],
                    env=env,
                    close_fds=True,
                )
                prompt = stdin.read() if turns else b""
        except OSError as exc:
            self.result = {"is_error": True, "result": f"cannot start claude: {exc}"}
            return None
        finally:
            os.close(out_fd)
        assert self.proc is not None  # spawn set it
        procs.fault("supervisor-spawned")  # claude started, not yet recorded
        self.last_line, self.heard = time.monotonic(), False  # the watchdog's clock starts
        if turns:
            # The first user turn: the prompt file's text (it stays the record of what was
            # sent). stdin stays open for messages until a result finds none waiting.
            self.feeder = Feeder(self.proc.stdin)
            self.feeder.put(user_turn(prompt.decode("utf-8", "replace")))
        self.note_claude(self.proc)
        if self.stopping.is_set():  # a stop that raced with the start
            self._kill_child()
        try:
            with open(spec["log_path"], "ab") as self.log:
                rc = self.follow(spool)
        finally:
            self.log = None
            self.live.flush()
            if self.feeder is not None:
                self.feeder.close()
                self.feeder = None
        if rc is not None or self.lingering is None:
            with contextlib.suppress(OSError):
                spool.unlink()
        self.flush_progress(force=True)
        return rc

    def follow(self, spool: Path) -> int | None:
        """Read claude's stdout file as it grows, complete lines only, until claude exits (then
        to its end). Once a final result is in, claude gets :data:`RECORD_WAIT` to exit; if it
        is still there then it is left in :attr:`lingering` and None returned, so the run is
        recorded at once. A result that will be retried waits out ``result_grace`` here."""
        assert self.proc is not None
        proc = self.proc
        grace = float(self.spec.get("result_grace", RESULT_GRACE))
        fd = os.open(spool, os.O_RDWR)  # for release_space; nothing is written through it
        exited = _exit_fd(proc.pid)  # readable once claude exits: the nap ends at once
        parts: list[bytes] = []  # an incomplete line, in pieces (a large one comes in many)
        released = 0
        done = 0  # bytes read
        delay = TAIL_POLL[0]
        try:
            while True:
                chunk = os.read(fd, READ_SIZE)
                if chunk:
                    self.last_line = time.monotonic()
                    self.heard = True
                    done += len(chunk)
                    parts = self.take(parts, chunk)
                    if done - released >= SPOOL_RELEASE:
                        released = release_space(fd, done - done % 4096, released)
                    delay = TAIL_POLL[0]
                    continue
                rc = proc.poll()
                if rc is not None:
                    while chunk := os.read(fd, READ_SIZE):  # written just before it exited
                        parts = self.take(parts, chunk)
                    if parts:  # a last line without its newline
                        self.take(parts, b"\n")
                    return rc
                self.live.flush()
                self.watch()
                if self.result_at is not None:
                    waited = time.monotonic() - self.result_at
                    if self.result_final() and waited >= min(RECORD_WAIT, grace):
                        self.lingering = proc
                        self.log_event(
                            {
                                "type": "orch",
                                "subtype": "lingering",
                                "message": f"claude still runs {waited:.1f} s after its result: "
                                f"recorded from the result; stopped after {grace:g} s",
                            }
                        )
                        return None
                    if waited >= grace:
                        self.stop_tree(proc)
                        continue
                _nap(exited, delay)
                delay = min(delay * 2, TAIL_POLL[1])
        finally:
            os.close(fd)
            if exited is not None:
                os.close(exited)

    def take(self, parts: list[bytes], chunk: bytes) -> list[bytes]:
        """Hand every complete line of ``parts + chunk`` to :meth:`on_line`; return the rest."""
        end = chunk.rfind(b"\n")
        if end < 0:
            parts.append(chunk)
            return parts
        data = b"".join([*parts, chunk[:end]]) if parts else chunk[:end]
        for line in data.split(b"\n"):
            self.on_line(line + b"\n")
        return [chunk[end + 1 :]] if end + 1 < len(chunk) else []

    def stop_tree(self, proc: subprocess.Popen[bytes]) -> int:
        """Stop what is left of a claude that printed its result but did not exit."""
        if proc.poll() is None:
            terminate_tree(proc.pid, float(self.spec.get("kill_grace", 5.0)))
        return proc.wait()

    def stop_leftovers(self) -> None:
        """After the run was recorded: give a lingering claude the rest of ``result_grace`` to
        exit, then stop its process tree; record its exit code."""
        proc = self.lingering
        if proc is None:
            return
        grace = float(self.spec.get("result_grace", RESULT_GRACE))
        left = grace - (time.monotonic() - (self.result_at or 0.0))
        try:
            rc = proc.wait(timeout=max(0.0, left))
        except subprocess.TimeoutExpired:
            rc = self.stop_tree(proc)
            with contextlib.suppress(OSError):
                self.log_event(
                    {
                        "type": "orch",
                        "subtype": "stopped_after_result",
                        "message": f"stopped what was left of claude {grace:g} s after its "
                        f"result (exit code {rc})",
                    }
                )
        self.lingering = None
        with contextlib.suppress(OSError):
            (self.run_dir / "stdout.jsonl").unlink()
        with contextlib.suppress(Exception):  # the record is already final; this is a detail
            self.rep.update(exit_code=rc)

    def on_line(self, raw: bytes) -> None:
        """One line of claude's stdout: kept in the raw log (a partial-message delta is not:
        its text goes to ``live.txt``), then recorded."""
        try:
            event = json.loads(raw)
        except ValueError:
            event = None
        if not isinstance(event, dict):
            if raw.strip():
                self.write_log(raw)
            return
        kind = event.get("type")
        if kind == "stream_event":
            self.on_partial(event.get("event"))
            self.flush_progress()
            return
        if kind == "assistant":
            self.live.flush()  # the text it streamed is complete in live.txt before this event
        self.write_log(raw, flush=True)
        sid = event.get("session_id")
        if isinstance(sid, str) and sid != self.session_id and sid != self.fork_of:
            self.session_id = sid
            self.record(session_id=sid, last_activity=time.time())
        if kind == "assistant":
            procs.fault("supervisor-streaming")  # an event of claude's is in the log
            self.turns += 1
            content = (event.get("message") or {}).get("content") or []
            self.tool_calls += sum(
                1
                for block in content
                if isinstance(block, dict) and block.get("type") == "tool_use"
            )
        elif kind == "result":
            self.result = event
            self.result_at = time.monotonic()
            self.more = False
            if self.feeder is not None:
                self.next_turn()
        elif kind == "system" and event.get("subtype") == "api_retry":
            self.on_api_retry(event)
        self.show_event(event)
        self.flush_progress()

    def on_api_retry(self, event: dict[str, Any]) -> None:
        """Claude Code will retry a failed API call: a 429 or 529 is reported to admission (a
        pause every agent shares, a lower effective limit) and claude is held (SIGSTOP) until
        admission lets its retry go (:meth:`watch`), so agents do not retry into the storm
        each on its own schedule."""
        status = event.get("error_status")
        if status not in RATE_LIMIT_STATUSES or self.proc is None:
            return
        delay = event.get("retry_delay_ms")
        delay_s = float(delay) / 1000 if isinstance(delay, (int, float)) else 1.0
        try:
            hold = self.rep.rate_limited(delay_s, int(status))
        except Exception as exc:  # the store is busy or gone: claude retries on its own
            warn(f"cannot report a rate limit: {exc!r}")
            return
        if hold and self.proc.poll() is None and not self.stopping.is_set():
            with contextlib.suppress(OSError):
                os.kill(self.proc.pid, signal.SIGSTOP)
                self.parked = True
                self.next_park_poll = time.monotonic() + min(delay_s, PARK_POLL)

    def wait_turn(self) -> bool:
        """Before a whole-run retry: wait until admission lets this run's requests go on
        (:meth:`DbReporter.may_go_on`); False when the run is stopped meanwhile."""
        while True:
            try:
                if self.rep.may_go_on():
                    return True
            except Exception:
                return True  # never hold a retry on a store error
            if self.stopping.wait(PARK_POLL):
                return False

    def unpark(self) -> None:
        """Let a held claude go on (SIGCONT); its retry, already due, goes out at once."""
        if not self.parked:
            return
        self.parked = False
        self.last_line = time.monotonic()  # held time is not idle time
        if self.proc is not None:
            with contextlib.suppress(OSError):
                os.kill(self.proc.pid, signal.SIGCONT)

    def watch(self) -> None:
        """While claude prints nothing: let a held claude go on once admission allows, and
        stop a claude silent for ``idle_timeout`` seconds (the watchdog: ``stalled``)."""
        now = time.monotonic()
        if self.parked:
            if now >= self.next_park_poll:
                self.next_park_poll = now + PARK_POLL
                try:
                    go = self.rep.may_go_on()
                except Exception:
                    go = True  # never hold claude on a store error
                if go:
                    self.unpark()
            return
        if self.idle_timeout is None or self.result_at is not None:
            return
        limit = self.idle_timeout if self.heard else max(self.idle_timeout, IDLE_START)
        if now - self.last_line >= limit:
            self.log_event(
                {
                    "type": "orch",
                    "subtype": "stalled",
                    "message": f"no event from claude for {self.idle_timeout:g} s: stopping it",
                }
            )
            self.stop("stalled")

    def next_turn(self) -> None:
        """A result came with claude's stdin open: hand it the messages that wait in the
        inbox as its next user turn (several become one), or close its stdin (it then exits)
        and the inbox when none waits. Counting results cannot tell (Claude Code may answer
        two queued turns with one result), so messages are only written between turns."""
        assert self.feeder is not None
        if self.transient() or self.stopping.is_set():
            self.feeder.close()  # a retry, a cancel or a timeout decides what comes next
            return
        try:
            texts = take_messages(self.run_dir, close=True)
        except OSError:
            texts = []
        if not texts:
            self.feeder.close()
            return
        self.feeder.put(user_turn("\n\n".join(texts)))
        self.more = True
        self.result_at = None
        self.log_event({"type": "orch", "subtype": "message_delivered", "count": len(texts)})

    def on_partial(self, event: Any) -> None:
        """A ``stream_event`` (``--include-partial-messages``): the raw API event."""
        if not isinstance(event, dict):
            return
        kind = event.get("type")
        if kind == "message_start":
            message = event.get("message")
            mid = message.get("id") if isinstance(message, dict) else None
            self.live.start(str(mid or f"message-{time.time()}"))
        elif kind == "content_block_delta":
            delta = event.get("delta")
            if isinstance(delta, dict) and delta.get("type") == "text_delta":
                self.live.add(str(delta.get("text", "")))

    def flush_progress(self, force: bool = False) -> None:
        """Record turns and tool calls at most every PROGRESS_INTERVAL; what a throttled call
        skipped is written by a trailing timer, so a long tool call never leaves stale counts."""
        with self.flush_lock:
            now = time.monotonic()  # an interval: a wall-clock jump must not stretch it
            wait = self.last_flush + PROGRESS_INTERVAL - now
            if not force and wait > 0:
                if self.flush_timer is None:
                    self.flush_timer = threading.Timer(wait, self._trailing_flush)
                    self.flush_timer.daemon = True
                    self.flush_timer.start()
                return
            self.last_flush = now
            self.record(num_turns=self.turns, tool_calls=self.tool_calls, last_activity=time.time())

    def _trailing_flush(self) -> None:
        with self.flush_lock:
            self.flush_timer = None
        self.flush_progress(force=True)

    def finish(self, rc: int | None, attempts: int, elapsed: float) -> None:
        with self.flush_lock:
            if self.flush_timer is not None:
                self.flush_timer.cancel()
        res = self.result or {}
        text = res.get("result")
        fields: dict[str, Any] = {"exit_code": rc, "tool_calls": self.tool_calls}
        fields.update(result_fields(res, fork_of=self.fork_of))
        fields["num_turns"] = res.get("num_turns", self.turns)
        fields["duration_ms"] = res.get("duration_ms", int(elapsed * 1000))
        if isinstance(text, str):
            try:
                write_atomic(Path(self.spec["output_path"]), text)
            except OSError as exc:
                self.note_disk_error("the output file", exc)
        self.live.clear()
        if res and not res.get("is_error") and not (self.more and rc not in (0, None)):
            # Claude Code's result decides, whatever came after it: a claude that lingered
            # and was stopped, a cancel or a timeout that arrived once the work was done.
            status, error = "completed", None
        elif self.stop_reason == "cancelled" or (
            self.stop_reason is None and rc is not None and rc < 0 and self.rep.cancel_requested()
        ):
            status, error = "cancelled", "cancelled"
        elif self.stop_reason == "timed_out":
            status, error = "timed_out", f"timed out after {self.spec.get('timeout')} s"
        elif self.stop_reason == "stalled":
            status = "stalled"
            error = f"stalled: no event from claude for {self.idle_timeout:g} s; stopped"
        else:
            status, error = "failed", self.describe_failure(rc, res, attempts)
        saved = Path(self.spec["output_path"]).exists()
        if self.disk_error and (status != "completed" or not saved):
            error = f"{error}; {self.disk_error}" if error else self.disk_error
        fields["error"] = error
        fields.update(self.save_work())  # before the end is news: the work is on its branch
        # Before the end is news too: a remote run's files come home once it reads as ended.
        self.keep_transcript(fields.get("session_id") or self.session_id)
        procs.fault("supervisor-result")  # the output is written, the end not yet recorded
        self.rep.finish(status, **fields)
        self.show_end(status, fields)

    def describe_failure(self, rc: int | None, res: dict[str, Any], attempts: int) -> str:
        if res.get("api_error_status"):
            tries = f" after {attempts} attempt{'s' * (attempts > 1)}"
            return f"API error {res['api_error_status']}{tries}: {_first_line(res.get('result'))}"
        if res.get("is_error"):
            # A failure before the first turn (a resume whose transcript is gone: "No
            # conversation found with session ID: …") has no result text, only ``errors``.
            errors = res.get("errors")
            said = _first_line(res.get("result")) or (
                _first_line(str(errors[0])) if isinstance(errors, list) and errors else ""
            )
            return said or f"claude reported an error ({res.get('subtype')})"
        tail = _last_line(self.run_dir / "stderr.log")
        if not tail and disk_full(self.run_dir):
            tail = "the run directory's file system is full"
        if rc is None:
            return _first_line(res.get("result")) or "claude did not start"
        if rc == 0 and not res:
            return "claude exited with code 0 without a result" + (f": {tail}" if tail else "")
        return f"claude exited with code {rc}" + (f": {tail}" if tail else "")


class InteractiveSupervisor(Supervisor):
    """Runs ``claude`` without ``-p`` on the pane's terminal, the task as its first prompt.

    There is no event stream to read, so Claude Code's own hooks report, passed with
    ``--settings`` so no install is needed: ``SessionStart`` runs :mod:`orch_plugins.claude_hooks`,
    which attaches the session id to the run; ``Stop`` runs it too (the session's record) and
    hands its payload to this process in ``<run_dir>/stop.json``. The first ``Stop`` completes
    the run, its ``last_assistant_message`` the output (the transcript may not hold it yet
    when the hook fires); claude stays open for the person, and later turns refresh the
    output. A sub-agent's stop (``agent_id``) is ignored, and so is a Stop while a sub-agent of
    the session still works (:func:`subagents_running`); the run keeps the first session it
    reported (see :meth:`check_turn`). Needs the local store (DbReporter).
    """

    def __init__(self, spec: dict[str, Any], reporter: Any) -> None:
        super().__init__(spec, reporter)
        self.store = reporter.store
        self.run_id = int(spec["run_id"])
        self.completed = False
        self.stop_file = self.run_dir / STOP_FILE
        self.last_stop: int | None = None
        self.recount_at: float | None = None
        self.transcript: str | None = None
        self.timer: threading.Timer | None = None

    def on_signal(self, signum: int, _frame: Any) -> None:
        if signum == signal.SIGINT:
            return  # a Ctrl-C typed in the pane is for claude, not for the run
        self.stop("hangup" if signum == signal.SIGHUP else "cancelled")

    def claude_argv(self) -> list[str]:
        """claude's whole command line, as the core built it (:func:`orch_plugins.claude.
        interactive_argv`): the hooks that report to this process, and the task."""
        return list(self.spec["argv"])

    def run(self) -> int:
        spec = self.spec
        self.stop_previous_claudes()
        if spec.get("timeout"):
            self.timer = threading.Timer(float(spec["timeout"]), self.stop, args=("timed_out",))
            self.timer.daemon = True
            self.timer.start()
        self.rep.update(attempt=1)
        env = self.child_env()
        env["ORCH_INTERACTIVE"] = "1"
        try:
            # stdin, stdout and stderr stay the pane's terminal: the person can take over.
            proc = self.spawn(self.claude_argv(), cwd=spec["cwd"], env=env)
        except OSError as exc:
            self.rep.finish("failed", error=f"cannot start claude: {exc}")
            return 0
        self.note_claude(proc)
        if self.stopping.is_set():
            self._kill_child()
        while (rc := proc.poll()) is None:
            self.check_turn()
            if self.recount_at and time.monotonic() >= self.recount_at:
                self.recount_at = None
                self.rep.update(**self.counts())
                if self.completed:  # the turn's lines may reach the transcript after its Stop
                    self.keep_transcript(self.session_id, self.transcript)
            time.sleep(INTERACTIVE_POLL)
        if self.timer:
            self.timer.cancel()
        self.check_turn()  # a Stop just before claude quit
        self.end(rc)
        return 0

    def check_turn(self) -> None:
        """Has a turn ended (the Stop hook wrote a new ``stop.json``)?"""
        try:
            mtime = os.stat(self.stop_file).st_mtime_ns
        except OSError:
            return
        if mtime == self.last_stop:
            return
        self.last_stop = mtime
        try:
            payload = json.loads(self.stop_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            payload = {}
        payload = payload if isinstance(payload, dict) else {}
        if payload.get("agent_id") or payload.get("hook_event_name") == "SubagentStop":
            return  # a sub-agent (Task tool) stopped: the session's turn goes on
        if subagents_running(payload):
            # Claude Code 2.1.332 runs a Task sub-agent in the background: the session's turn
            # stops while it works, and its result comes back as another turn, whose Stop counts.
            return
        sid = payload.get("session_id")
        # The run keeps the first session it reported: a /clear or a /resume typed in the pane
        # starts or opens another session, which must not become this run's (nor move here).
        if isinstance(sid, str) and self.store.claim_session(
            self.run_id, sid, fork_of=self.fork_of
        ):
            self.session_id = sid
            if isinstance(payload.get("transcript_path"), str):
                self.transcript = payload["transcript_path"]
        self.turn_ended(payload.get("last_assistant_message"))

    def elapsed_ms(self) -> int:
        """Milliseconds since this run started (monotonic: a wall-clock jump changes nothing)."""
        return int((time.monotonic() - self.started_mono) * 1000)

    def counts(self) -> dict[str, Any]:
        """Turns, tool calls and usage since the start, from the session transcript."""
        _, turns, tools, usage = read_transcript(self.transcript, self.started_at)
        return {
            "num_turns": turns,
            "tool_calls": tools,
            "usage": json.dumps(usage) if usage else None,
        }

    def turn_ended(self, text: Any) -> None:
        now = time.time()
        if not isinstance(text, str):  # a Claude Code without last_assistant_message
            text = read_transcript(self.transcript, self.started_at)[0]
        if text is not None:
            write_atomic(Path(self.spec["output_path"]), text)
        fields: dict[str, Any] = {"last_activity": now}
        fields.update(self.counts())
        # The transcript may lag the hook by a moment: count again shortly.
        self.recount_at = time.monotonic() + 1.0
        if self.completed:
            self.rep.update(**fields)  # the person asked more: keep the output current
            return
        if self.stop_reason:
            return
        self.completed = True
        if self.timer:
            self.timer.cancel()  # the task is done; the person may stay as long as they like
        fields.update(self.save_work())
        self.keep_transcript(self.session_id, self.transcript)
        self.rep.finish("completed", error=None, duration_ms=self.elapsed_ms(), **fields)
        self.rep.after_end()

    def end(self, rc: int | None) -> None:
        if self.completed:
            # What the person did in the pane after the task's turn is kept too.
            self.keep_transcript(self.session_id, self.transcript)
            self.rep.update(exit_code=rc, **self.save_work())
            return
        reason = self.stop_reason
        if reason == "cancelled":
            status, error = "cancelled", "cancelled"
        elif reason == "timed_out":
            status, error = "timed_out", f"timed out after {self.spec.get('timeout')} s"
        elif reason == "hangup":
            status = "lost"
            error = "its tmux pane closed (window killed or tmux server stopped) mid-task"
        else:
            status = "failed"
            error = f"interactive claude exited with code {rc} before its first turn ended"
            said = self.last_words() if rc else ""
            if said:
                error += f": {said}"
        self.keep_transcript(self.session_id, self.transcript)
        self.rep.finish(
            status,
            exit_code=rc,
            error=error,
            duration_ms=self.elapsed_ms(),
            **self.save_work(),
        )

    def last_words(self) -> str:
        """What claude said last on its terminal, for the error of a failed start.

        Claude Code prints such failures on the terminal, some on stdout ("No conversation
        found with session ID: …"), some on stderr ("error: unknown option …"); both are in
        the tmux pane this process runs in, whose text is kept in ``<run_dir>/screen.txt``.
        Returns the last line that is not blank or box drawing, or "" outside tmux.
        """
        text = capture_own_pane()
        if not text:
            return ""
        with contextlib.suppress(OSError):
            write_atomic(self.run_dir / "screen.txt", text)
        for line in reversed(text.splitlines()):
            line = "".join(c for c in line if not "\u2500" <= c <= "\u257f").strip()
            if any(c.isalnum() for c in line):
                return line[:300]
        return ""


def capture_own_pane() -> str:
    """The text of the tmux pane this process runs in, history included; "" outside tmux.

    The tmux binary is the one running the pane (this process's parent, the tmux server),
    else ``tmux`` on PATH; ``$TMUX`` names its server.
    """
    pane = os.environ.get("TMUX_PANE")
    if not pane or not os.environ.get("TMUX"):
        return ""
    tmux = "tmux"
    with contextlib.suppress(OSError):
        parent = os.readlink(f"/proc/{os.getppid()}/exe")
        if os.path.basename(parent).startswith("tmux"):
            tmux = parent
    try:
        proc = subprocess.run(
            [tmux, "capture-pane", "-p", "-J", "-S", "-", "-t", pane],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return proc.stdout.decode("utf-8", "replace").rstrip() if proc.returncode == 0 else ""


def subagents_running(payload: dict[str, Any]) -> bool:
    """Whether a Stop payload lists a sub-agent of the session still at work
    (``background_tasks`` entries of type ``subagent``, running or pending; Claude Code 2.1.332
    sends them, 2.1.197 an empty list). Background shell commands do not count: a dev server
    the agent left running must not keep its run from completing."""
    tasks = payload.get("background_tasks")
    if not isinstance(tasks, list):
        return False
    return any(
        isinstance(t, dict)
        and t.get("type") == "subagent"
        and t.get("status") in ("running", "pending")
        for t in tasks
    )


def read_transcript(path: str | None, since: float) -> tuple[str | None, int, int, dict[str, int]]:
    """From a Claude Code transcript: the last assistant text, and the turns, tool calls and
    token usage of the assistant messages written since ``since`` (epoch seconds)."""
    from datetime import datetime

    text: str | None = None
    seen: set[str] = set()
    tools = 0
    usage: dict[str, int] = {}
    if not path:
        return None, 0, 0, usage
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            lines = fh.readlines()
    except OSError:
        return None, 0, 0, usage
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if not isinstance(entry, dict) or entry.get("type") != "assistant":
            continue
        msg = entry.get("message")
        if not isinstance(msg, dict):
            continue
        content = msg.get("content")
        if not isinstance(content, list):
            continue
        blocks = [b for b in content if isinstance(b, dict)]
        texts = [str(b.get("text", "")) for b in blocks if b.get("type") == "text"]
        if any(t.strip() for t in texts):
            text = "".join(texts)
        try:
            stamp = str(entry.get("timestamp", "")).replace("Z", "+00:00")
            when = datetime.fromisoformat(stamp).timestamp()
        except ValueError:
            when = since
        if when < since - 1:
            continue  # an earlier run's turn (a resumed session's transcript holds them all)
        tools += sum(1 for b in blocks if b.get("type") == "tool_use")
        mid = str(msg.get("id") or len(seen))
        if mid in seen:  # one message is written as one entry per content block
            continue
        seen.add(mid)
        for key, value in (msg.get("usage") or {}).items():
            if isinstance(value, int) and key.endswith("_tokens"):
                usage[key] = usage.get(key, 0) + value
    return text, len(seen), tools, usage


def result_fields(res: dict[str, Any], *, fork_of: str | None = None) -> dict[str, Any]:
    """The run's columns that Claude Code's ``result`` event gives: ``num_turns``,
    ``cost_usd`` (US dollars), ``duration_ms``, ``usage`` (JSON text), the token columns and
    ``models`` (:func:`result_tokens`), and ``session_id`` unless it is ``fork_of`` (the
    session a fork was made from)."""
    fields: dict[str, Any] = {
        "num_turns": res.get("num_turns"),
        "cost_usd": res.get("total_cost_usd"),
        "duration_ms": res.get("duration_ms"),
        "usage": json.dumps(res["usage"]) if isinstance(res.get("usage"), dict) else None,
    }
    fields.update(result_tokens(res))
    if res.get("session_id") and res["session_id"] != fork_of:
        fields["session_id"] = res["session_id"]
    return fields


def logged_result(log_path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The last ``result`` event of claude's in a run's log (``events.jsonl``), or None: what
    a run whose supervisor died after the result came in still has to tell. A line cut by the
    kill is skipped."""
    found = None
    try:
        with open(log_path, "rb") as fh:
            for line in fh:
                if b'"result"' not in line:
                    continue
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                if isinstance(event, dict) and event.get("type") == "result":
                    found = event
    except OSError:
        return None
    return found


def result_tokens(res: dict[str, Any]) -> dict[str, Any]:
    """The token columns and ``models`` of a run from Claude Code's ``result`` event: per model
    from ``modelUsage`` (``{model: {cost_usd, input_tokens, output_tokens, cache_read_tokens,
    cache_creation_tokens}}``, as JSON text) and summed over them; without ``modelUsage``, the
    totals from ``usage``. Empty when the event has neither."""
    names = (
        ("input_tokens", "inputTokens", "input_tokens"),
        ("output_tokens", "outputTokens", "output_tokens"),
        ("cache_read_tokens", "cacheReadInputTokens", "cache_read_input_tokens"),
        ("cache_creation_tokens", "cacheCreationInputTokens", "cache_creation_input_tokens"),
    )
    models: dict[str, dict[str, Any]] = {}
    for model, use in (res.get("modelUsage") or {}).items():
        if not isinstance(use, dict):
            continue
        entry: dict[str, Any] = {"cost_usd": use.get("costUSD")}
        for column, key, _ in names:
            entry[column] = use.get(key) if isinstance(use.get(key), int) else 0
        models[str(model)] = entry
    out: dict[str, Any] = {}
    if models:
        for column, _, _ in names:
            out[column] = sum(m[column] for m in models.values())
        out["models"] = json.dumps(models)
        return out
    usage = res.get("usage")
    if isinstance(usage, dict):
        for column, _, key in names:
            if isinstance(usage.get(key), int):
                out[column] = usage[key]
    return out


def _describe(event: dict[str, Any]) -> list[str]:
    """Progress lines for the pane: orch_plugins.progress when importable (it is, locally)."""
    global _describe_impl
    if _describe_impl is None:
        try:
            from orch_plugins.progress import describe as impl
        except ImportError:
            impl = _describe_minimal
        _describe_impl = impl
    try:
        return _describe_impl(event)
    except Exception:  # a malformed event must not stop the agent
        return []


def _money(usd: float) -> str:
    """orch_plugins.progress.money when importable (the display is a local tmux pane)."""
    try:
        from orch_plugins.progress import money
    except ImportError:
        return f"${usd:.4f}"
    return money(usd)


def _describe_minimal(event: dict[str, Any]) -> list[str]:
    if event.get("type") == "result":
        return [f"[result] {_first_line(event.get('result'))}"]
    return [f"[{event.get('type')}]"] if event.get("type") in ("assistant", "user") else []


_describe_impl: Any = None


def _read_text(path: str, limit: int | None) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return fh.read(-1 if limit is None else limit)
    except OSError:
        return ""


def load_env_file(path: str) -> None:
    """Take the launcher's environment from ``path`` (then delete it: it may hold secrets).

    A tmux window starts with the tmux *server's* environment; the backend hands the
    launcher's over in a private file rather than on a command line any user could read.
    The pane's own terminal variables are kept.
    """
    with open(path, encoding="utf-8") as fh:
        env = json.load(fh)
    with contextlib.suppress(OSError):
        os.unlink(path)
    keep = {k: os.environ[k] for k in PANE_ENV if k in os.environ}
    os.environ.clear()
    os.environ.update({str(k): str(v) for k, v in env.items()})
    os.environ.update(keep)


def leave_end(path: Path, status: str, fields: dict[str, Any]) -> bool:
    """Write a run's end (``status`` and the run's columns ``fields``) over the room set aside
    in ``path``, in place; False when it is not there or the end does not fit."""
    record = {"status": status, **fields}
    if isinstance(record.get("error"), str):
        record["error"] = record["error"][:1000]
    data = json.dumps(record).encode("utf-8")
    try:
        if len(data) > END_FILE_SIZE or os.path.getsize(path) < END_FILE_SIZE:
            return False
        with open(path, "r+b") as fh:
            fh.write(data.ljust(END_FILE_SIZE))
    except OSError:
        return False
    return True


def read_left_end(run_dir: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The end a supervisor left in its run directory (:func:`leave_end`), or None."""
    try:
        with open(os.path.join(run_dir, END_FILE), "rb") as fh:
            data = fh.read(END_FILE_SIZE).strip()
        record = json.loads(data) if data else None
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and isinstance(record.get("status"), str) else None


def warn(message: str) -> None:
    """A line for the supervisor's log (its stderr); never raises (a full disk)."""
    with contextlib.suppress(OSError, ValueError):
        print(f"orch supervisor: {message}", file=sys.stderr, flush=True)


def disk_full(path: str | os.PathLike[str], room: int = 64 << 10) -> bool:
    """Whether the file system holding ``path`` has less than ``room`` bytes left for us."""
    try:
        st = os.statvfs(path)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < room


def write_atomic(path: Path, text: str) -> None:
    """Write to a temporary name and rename: a reader (``orch output``, a status read over
    ssh) never sees half a file. (The supervisor cannot use the store's helper: it runs alone
    on remote hosts.)"""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):  # a full disk: no half file left behind
            tmp.unlink()
        raise


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


def pump_queue(state_dir: str | None, ended: str | None = None) -> None:
    """In a detached process that loads the plugins: let the next queued agents start (with
    ``state_dir``) and fire ``orch_agent_ended`` for the run in the file ``ended``. Raises
    ``OSError`` when that process cannot be started."""
    if state_dir:
        argv = ["-m", "orch_plugins.admission", state_dir]
        argv += ["--announce", ended] if ended else []
    else:  # nothing to start: the announcement alone, without the store
        argv = ["-m", "orch_plugins.events", str(ended)]
    # Not -S: the queue may hold agents of third-party backends, and plugins listen to events,
    # found through site-packages.
    with procs.detached() as kw:  # what it starts belongs to no agent of this run
        subprocess.Popen(
            [sys.executable, *argv],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            close_fds=True,
            **kw,
        )


# -- the agent's git worktree (``orch launch --worktree``) --------------------------------------
#
# Here, not in a module of its own, because this file is what reaches a remote host: the
# worktree of an agent over ssh is made, and its work committed, on that host. The core
# (orch_plugins.worktrees) calls the same functions for local agents. Git always runs with an
# argument list, never through a shell; text for git (a commit message) goes on its stdin.

#: Every git call for an agent's worktree: the repository's hooks do not run (orch's commits
#: are bookkeeping: a failing pre-commit hook must not leave the agent's work uncommitted, and a
#: post-commit hook must not run agent-unrelated code at run end), nothing is signed (a key
#: prompt would hang), no pager, no terminal prompt.
GIT_OPTIONS = ("-c", "core.hooksPath=/dev/null", "-c", "commit.gpgsign=false", "--no-pager")
#: The committer of orch's commits in a repository that has no ``user.name``/``user.email``.
FALLBACK_IDENTITY = (("user.name", "orch"), ("user.email", "orch@localhost"))
#: Variables that would point git at another repository than the one asked for.
_GIT_ENV_DROP = ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_COMMON_DIR", "GIT_PREFIX")


class GitError(Exception):
    """A git command that failed: the command (without git's own options) and git's message."""

    def __init__(self, args: list[str], returncode: int, stderr: str) -> None:
        said = " ".join(line.strip() for line in stderr.strip().splitlines()[-3:])
        super().__init__(f"git {' '.join(args[:3])} failed ({returncode}): {said or '-'}")
        self.returncode = returncode
        self.stderr = stderr


def git(
    cwd: str | os.PathLike[str],
    *args: str,
    stdin: str | None = None,
    check: bool = True,
    env: dict[str, str] | None = None,
    timeout: float = 600,
) -> subprocess.CompletedProcess[str]:
    """Run ``git -C cwd ARGS`` (argument list, no shell); :class:`GitError` when it fails and
    ``check``. ``stdin``: text for git's standard input (a commit message with ``-F -``)."""
    full_env = {k: v for k, v in os.environ.items() if k not in _GIT_ENV_DROP}
    full_env.update(GIT_TERMINAL_PROMPT="0", **(env or {}))
    proc = subprocess.run(
        ["git", *GIT_OPTIONS, "-C", os.fspath(cwd), *args],
        input=stdin,
        capture_output=True,
        text=True,
        encoding="utf-8",
        errors="replace",
        env=full_env,
        timeout=timeout,
    )
    if check and proc.returncode != 0:
        raise GitError(list(args), proc.returncode, proc.stderr)
    return proc


def identity_options(cwd: str | os.PathLike[str]) -> list[str]:
    """``-c user.name=orch``/``-c user.email=orch@localhost`` for what the repository's config
    lacks (a fresh container, a CI host), so orch's commit never fails on "Please tell me who
    you are"; nothing when the user's own identity is set."""
    out: list[str] = []
    for key, value in FALLBACK_IDENTITY:
        if git(cwd, "config", "--get", key, check=False).returncode != 0:
            out += ["-c", f"{key}={value}"]
    return out


def make_worktree(repo: str, path: str, branch: str, base: str) -> str:
    """``git worktree add -b BRANCH PATH BASE`` in ``repo``; returns the base commit's id.
    :class:`GitError` when ``base`` is not a commit there, the branch exists, or git fails."""
    if base.startswith("-"):
        raise GitError(["rev-parse", base], 128, f"{base!r} is not a revision")
    found = git(repo, "rev-parse", "--verify", "--quiet", f"{base}^{{commit}}", check=False)
    if found.returncode != 0:
        raise GitError(["rev-parse", base], 128, f"{base!r} is not a commit in {repo}")
    sha = found.stdout.strip()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    git(repo, "worktree", "add", "--quiet", "-b", branch, "--", path, sha)
    return sha


def copy_into_worktree(repo: str, path: str, patterns: list[str]) -> list[str]:
    """Copy files a fresh checkout lacks (``[worktree] copy``: ``.env``, ``config/*.local``)
    from the main checkout ``repo`` into the worktree ``path``, at the same relative place;
    glob patterns relative to the repository's top; absent ones are skipped. Returns the
    relative paths copied."""
    import glob
    import shutil

    copied = []
    for pattern in patterns:
        for src in sorted(glob.glob(os.path.join(repo, pattern))):
            rel = os.path.relpath(src, repo)
            if rel.startswith(os.pardir) or os.path.isabs(rel):
                continue
            dst = os.path.join(path, rel)
            if os.path.lexists(dst):
                continue  # the checkout has it: never overwritten
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            if os.path.isdir(src):
                shutil.copytree(src, dst, symlinks=True, dirs_exist_ok=True)
            else:
                shutil.copy2(src, dst, follow_symlinks=False)
            copied.append(rel)
    return copied


def commit_work(path: str, message: str, keep_out: list[str] | tuple[str, ...] = ()) -> bool:
    """Commit whatever is uncommitted in the worktree ``path`` (``git add -A``, then a commit
    with ``message`` read from stdin); False when there was nothing to commit. Files the
    repository ignores stay out, as they would for a person, and so do paths matching
    ``keep_out`` (the ``[worktree] copy`` patterns: a copied ``.env`` is never committed)."""
    excluded = [f":(exclude,glob){pattern}" for pattern in keep_out]
    git(path, "add", "-A", "--", ".", *excluded)
    if git(path, "diff", "--cached", "--quiet", check=False).returncode == 0:
        return False
    git(path, *identity_options(path), "commit", "--quiet", "--no-verify", "-F", "-", stdin=message)
    return True


def change_summary(
    path: str, base: str, keep_out: list[str] | tuple[str, ...] = ()
) -> dict[str, Any]:
    """What the branch checked out at ``path`` changed against ``base`` (a commit):
    ``{"files", "insertions", "deletions", "commits", "head", "dirty"}`` (counts from ``git
    diff --numstat``, binary files count as changed with 0 lines; ``dirty``: uncommitted
    changes left in the worktree, paths matching ``keep_out`` not counted)."""
    head = git(path, "rev-parse", "HEAD").stdout.strip()
    commits = int(git(path, "rev-list", "--count", f"{base}..{head}").stdout.strip() or 0)
    files = insertions = deletions = 0
    tokens = iter(git(path, "diff", "--numstat", "-z", base, head).stdout.split("\0"))
    for token in tokens:
        parts = token.split("\t", 2)
        if len(parts) != 3:
            continue
        files += 1
        insertions += int(parts[0]) if parts[0].isdigit() else 0  # "-": a binary file
        deletions += int(parts[1]) if parts[1].isdigit() else 0
        if not parts[2]:  # a rename: its two paths follow
            next(tokens, None)
            next(tokens, None)
    return {
        "files": files,
        "insertions": insertions,
        "deletions": deletions,
        "commits": commits,
        "head": head,
        "dirty": uncommitted(path, keep_out),
    }


def uncommitted(path: str, keep_out: list[str] | tuple[str, ...] = ()) -> bool:
    """Whether the worktree at ``path`` holds changes not committed (untracked files too),
    leaving out paths matching ``keep_out`` (files ``[worktree] copy`` put there)."""
    excluded = [f":(exclude,glob){pattern}" for pattern in keep_out]
    status = git(path, "status", "--porcelain", "--untracked-files=all", "--", ".", *excluded)
    return bool(status.stdout.strip())


def transcript_key(cwd: str) -> str:
    """The directory name Claude Code keeps a project's transcripts under in
    ``~/.claude/projects``: the working directory with every character that is not a letter
    or a digit replaced by ``-`` (checked with Claude Code 2.1.197)."""
    return "".join(c if c.isascii() and c.isalnum() else "-" for c in cwd)


# -- the session's transcript, kept with the run and put back where a resume looks ---------------
#
# Claude Code keeps a session's transcript in ``<config dir>/projects/<key of cwd>/<id>.jsonl``
# on the machine that ran it and resumes only from there. A run's supervisor keeps a gzip copy
# in the run's directory when it ends (:func:`keep_transcript`); a resume or fork that starts
# on another machine or in another directory gets that copy (spec ``resume_transcript``) and
# puts it where Claude Code looks before claude starts (:func:`place_transcript`).

#: The copy's name in a run's directory (gzip of the session's ``.jsonl``).
TRANSCRIPT_COPY = "transcript.jsonl.gz"
#: gzip level of the copy. Measured on a 20 MB transcript (tool results of source files, one
#: uuid per entry): level 1 gives 6.8 MB in 0.21 s (~100 MB/s), level 6 5.5 MB in 0.72 s; a
#: 10 KB transcript of a short task packs to ~4 KB. A run's end should not wait for level 6.
TRANSCRIPT_LEVEL = 1


def claude_projects(env: Mapping[str, str] | None = None) -> Path:
    """Where Claude Code keeps transcripts for a process with environment ``env`` (default
    this one's): ``$CLAUDE_CONFIG_DIR/projects``, else ``$HOME/.claude/projects`` (both checked
    with Claude Code 2.1.197)."""
    env = os.environ if env is None else env
    config = env.get("CLAUDE_CONFIG_DIR")
    if config:
        return Path(os.path.expanduser(config)) / "projects"
    return Path(env.get("HOME") or os.path.expanduser("~")) / ".claude" / "projects"


def _size_of(path: Path) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return -1


def _session_name(session_id: str) -> bool:
    """Whether ``session_id`` can name a transcript file (a UUID does; nothing that would
    reach outside its directory or match other files as a glob)."""
    return bool(session_id) and all(c.isascii() and (c.isalnum() or c in "-_") for c in session_id)


def find_transcripts(session_id: str, env: Mapping[str, str] | None = None) -> list[Path]:
    """Every transcript of ``session_id`` Claude Code holds on this machine (one per directory
    the session was resumed or forked from), largest first."""
    if not _session_name(session_id):
        return []
    found = claude_projects(env).glob(f"*/{session_id}.jsonl")
    return sorted(found, key=_size_of, reverse=True)


def keep_transcript(
    session_id: str,
    cwd: str,
    run_dir: str | Path,
    env: Mapping[str, str] | None = None,
    source: str | None = None,
) -> int:
    """Copy the transcript of ``session_id`` (``source``, else the one under ``cwd``'s key,
    else the largest this machine has) into ``run_dir``/:data:`TRANSCRIPT_COPY`, gzipped,
    streamed in 1 MiB pieces (never whole in memory), written under a temporary name and
    renamed. Returns the copy's size in bytes. Raises ``FileNotFoundError`` when there is no
    transcript, ``OSError`` when the copy cannot be written (a full disk: nothing half-written
    is left)."""
    import gzip
    import shutil

    if not _session_name(session_id):
        raise ValueError(f"{session_id!r} is no session id")
    path = Path(source) if source and os.path.isfile(source) else None
    if path is None:
        own = claude_projects(env) / transcript_key(cwd) / f"{session_id}.jsonl"
        found = [own] if own.is_file() else find_transcripts(session_id, env)
        if not found:
            raise FileNotFoundError(f"no transcript of session {session_id} in {own.parent.parent}")
        path = found[0]
    target = Path(run_dir) / TRANSCRIPT_COPY
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        with (
            open(path, "rb") as src,
            open(tmp, "wb") as raw,
            gzip.GzipFile(
                filename="", mode="wb", fileobj=raw, compresslevel=TRANSCRIPT_LEVEL, mtime=0
            ) as packed,
        ):
            shutil.copyfileobj(src, packed, 1 << 20)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return os.stat(target).st_size


class TranscriptError(Exception):
    """A transcript copy that cannot be used: missing, not gzip, cut short, or not JSON lines."""


def _unpack_copy(copy: Path, tmp: Path) -> int:
    """Write the transcript in ``copy`` (gzip, or plain ``.jsonl``) to ``tmp``, checking it on
    the way: a gzip stream whole and intact (its CRC), and every complete line a JSON object.
    Returns the transcript's size; :class:`TranscriptError` says what is wrong."""
    import gzip
    import zlib

    size = 0
    try:
        opener: Any = gzip.open if copy.name.endswith(".gz") else open
        with opener(copy, "rb") as src, open(tmp, "wb") as dst:
            for number, line in enumerate(src, 1):
                if line.endswith(b"\n") and line.strip():
                    try:
                        entry = json.loads(line)
                    except ValueError:
                        entry = None
                    if not isinstance(entry, dict):
                        raise TranscriptError(f"line {number} is not a JSON object")
                dst.write(line)
                size += len(line)
    except FileNotFoundError:
        raise TranscriptError("it is missing") from None
    except (OSError, EOFError, zlib.error) as exc:
        if isinstance(exc, OSError) and not isinstance(exc, gzip.BadGzipFile) and exc.errno:
            raise  # a read or write that failed (disk full): not the copy's fault
        raise TranscriptError(f"it is damaged ({exc})") from None
    if size == 0:
        raise TranscriptError("it is empty")
    return size


def _copy_size(copy: Path) -> int:
    """The size of the transcript in ``copy`` without unpacking it: a gzip file's trailer
    holds it (ISIZE, modulo 4 GiB; a copy is one gzip member), a plain one is its size; -1 when
    it cannot be read (then the copy is unpacked, and its problem reported)."""
    try:
        with open(copy, "rb") as fh:
            if not copy.name.endswith(".gz"):
                return os.fstat(fh.fileno()).st_size
            if fh.read(2) != b"\x1f\x8b":
                return -1
            fh.seek(-4, os.SEEK_END)
            return int.from_bytes(fh.read(4), "little")
    except OSError:
        return -1


def place_transcript(spec: dict[str, Any], env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Before claude resumes or forks session ``spec["resume_session"]`` in ``spec["cwd"]``: put
    the session's transcript where Claude Code looks (``<projects>/<key of cwd>/<id>.jsonl``).

    The candidates are the copy the spec names (``resume_transcript``, relative to the run's
    directory, or absolute) and every transcript of the session on this machine; the largest
    wins (a transcript only grows, so the largest holds the most turns), and the one already
    in place is kept on a tie. Returns what happened, for the run's log: ``{"placed": from
    where}`` or ``{}`` (nothing to do, or nothing found: claude then says "No conversation
    found"), with ``"copy_problem"`` when the copy could not be used. Raises
    :class:`TranscriptError` when the copy is unusable and the machine has no transcript of
    the session either: the run fails with that reason instead of starting without its
    context; ``OSError`` when the transcript cannot be written (a full disk)."""
    import shutil

    sid = spec.get("resume_session")
    if not sid:
        return {}
    if not _session_name(sid):
        raise TranscriptError(f"cannot resume session {sid!r}: that is no session id")
    projects = claude_projects(env)
    target = projects / transcript_key(spec["cwd"]) / f"{sid}.jsonl"
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    # (size, rank, path, what): on equal sizes the transcript in place wins, then this machine's.
    found = [(_size_of(p), 1 if p == target else 0, p, str(p)) for p in find_transcripts(sid, env)]
    out: dict[str, Any] = {}
    named = spec.get("resume_transcript")
    largest = max((c[0] for c in found), default=-1)
    try:
        if named and 0 <= _copy_size(Path(spec["run_dir"], named)) <= largest:
            named = None  # this machine's transcript holds as much: no need to unpack the copy
        if named:
            copy = Path(spec["run_dir"], named)
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                found.append((_unpack_copy(copy, tmp), -1, tmp, str(copy)))
            except TranscriptError as exc:
                out["copy_problem"] = f"the transcript copy {copy} cannot be used: {exc}"
        if not found:
            if out:
                raise TranscriptError(
                    f"cannot resume session {sid}: {out['copy_problem']}, and Claude Code has "
                    f"no transcript of it on this machine (under {projects})"
                )
            return out
        _size, _rank, best, what = max(found, key=lambda c: c[:2])
        if best == target:
            return out
        if best != tmp:  # another directory's transcript on this machine
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(best, tmp)
        os.replace(tmp, target)
        out["placed"] = what
        return out
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


def prepare_worktree(spec: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    """Before claude starts: make the run's worktree when the spec asks for one that is not
    there yet (a remote host: the backend cannot make it from afar) and copy the configured
    files in (a fork's source transcript is put in place by :func:`place_transcript`). Returns
    (store fields to record, an error that fails the run or None). A worktree the spec names
    that is gone (discarded, removed by hand) fails the run: the agent never works elsewhere
    unnoticed."""
    wt = spec.get("worktree")
    if not wt:
        return {}, None
    fields: dict[str, Any] = {}
    path = wt["path"]
    try:
        if not os.path.isdir(path):
            if not wt.get("create"):
                return {}, f"the agent's worktree {path} is gone (orch discard removed it?)"
            wt["base"] = make_worktree(wt["repo"], path, wt["branch"], wt["base"])
            copy_into_worktree(wt["repo"], path, list(wt.get("copy") or []))
            fields.update(worktree=path, branch=wt["branch"], base=wt["base"])
            if wt.get("base_branch"):
                fields["base_branch"] = wt["base_branch"]
    except (GitError, OSError, subprocess.SubprocessError) as exc:
        return fields, f"cannot make the agent's worktree: {exc}"
    return fields, None


def save_work(spec: dict[str, Any]) -> dict[str, Any]:
    """At a run's end: commit what the agent left uncommitted in its worktree on its branch
    (``orch: NAME run N: <first line of the task>``) and return ``{"changes": JSON text}`` (see
    :func:`change_summary`; ``{"error": ...}`` inside when git failed). ``{}`` without a
    worktree. Never raises: the run's end is recorded whatever git does."""
    wt = spec.get("worktree")
    if not wt or not os.path.isdir(wt.get("path") or ""):
        return {}
    message = f"orch: {spec['name']} run {spec['run_id']}: {wt.get('task_line') or 'work'}\n"
    summary: dict[str, Any]
    try:
        commit_work(wt["path"], message, list(wt.get("copy") or []))
        summary = change_summary(wt["path"], wt["base"], list(wt.get("copy") or []))
    except (GitError, OSError, ValueError, subprocess.SubprocessError) as exc:
        summary = {"error": f"could not commit the agent's work: {exc}"}
    summary["branch"] = wt["branch"]
    return {"changes": json.dumps(summary)}


#: In a run directory: written (empty) when the run's supervision ends, whatever the run's
#: end: a run still ``running`` in the store once it is there lost its supervisor (a batch
#: thread that died without recording), though the batch's process lives on.
SUPERVISION_ENDED = "supervisor.end"
#: In a run directory: the cancel of one run of a batch (:func:`request_cancel`).
CANCEL_FILE = "cancel_requested"
#: Sent to a batch's process after a run's :data:`CANCEL_FILE` is written: it then looks for
#: such files. SIGURG: ignored by default, so one that comes before the handler is set up
#: (the process is still starting) loses nothing (the run looks for the file before claude
#: starts), where SIGUSR1 would end the whole batch.
CANCEL_SIGNAL = signal.SIGURG
#: How often a batch's main thread reaps orphans and looks for cancels (seconds).
BATCH_TICK = 0.5
#: Open descriptors one run of a batch may hold (six measured, with room to spare).
FILES_PER_RUN = 8


def request_cancel(run_dir: str | Path) -> None:
    """Ask the batch that supervises the run in ``run_dir`` to cancel it (then signal the
    batch with :data:`CANCEL_SIGNAL`)."""
    Path(run_dir, CANCEL_FILE).touch()


def batch_run_alive(pid: int | None, start_time: int | None, run_dir: str) -> bool:
    """Whether a run of a batch is supervised: the batch's process ``(pid, start_time)`` runs
    and the run's thread has not ended (no :data:`SUPERVISION_ENDED` in ``run_dir``)."""
    return pid_alive(pid, start_time) and not os.path.exists(
        os.path.join(run_dir, SUPERVISION_ENDED)
    )


def is_batch(pid: int) -> bool:
    """Whether the process ``pid`` is a batch supervisor (``supervisor.py --batch``)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return b"\0--batch\0" in fh.read()
    except OSError:
        return False


def _ended_last(run_dir: str) -> bool:
    """The run's supervision ended, as the last of its batch."""
    try:
        return Path(run_dir, SUPERVISION_ENDED).read_text().startswith("last")
    except OSError:
        return False


def cancel_batch_run(
    pid: int | None,
    start_time: int | None,
    run_dir: str,
    grace: float,
    *,
    run_id: int | str = "",
    token: str | None = None,
    keep_children: bool = False,
) -> None:
    """Cancel the run in ``run_dir`` of the batch ``(pid, start_time)`` and no other: leave its
    :data:`CANCEL_FILE`, signal the batch (:data:`CANCEL_SIGNAL`, again every half second: a
    batch still starting ignores it) and wait ``grace`` + 2 s for the run's thread to stop
    claude and record ``cancelled`` (and, for the batch's last run, for the process to exit);
    then stop what is left of the run (its marker and cgroup, :func:`orch_plugins.procs.
    stop_run`), also when the batch was gone or stuck."""
    alive = bool(pid) and batch_run_alive(pid, start_time, run_dir)
    if alive:
        try:
            request_cancel(run_dir)
        except OSError:
            alive = False
    if alive and pid:
        deadline = time.monotonic() + grace + 2.0
        next_signal = 0.0
        while batch_run_alive(pid, start_time, run_dir) and time.monotonic() < deadline:
            if time.monotonic() >= next_signal:
                procs.send(pid, start_time, CANCEL_SIGNAL)
                next_signal = time.monotonic() + 0.5
            time.sleep(0.05)
        while _ended_last(run_dir) and pid_alive(pid, start_time) and time.monotonic() < deadline:
            time.sleep(0.02)
        if keep_children and not batch_run_alive(pid, start_time, run_dir):
            return  # it stopped claude and kept the rest, as asked
    # The batch's pid is the session of every claude it started: a safe group unless another
    # process took the pid (see procs.stop_run).
    reused = bool(pid) and pid_alive(pid, None) and not pid_alive(pid, start_time)
    procs.stop_run(run_id, token, 0.5, group=None if reused else pid, keep_children=keep_children)


def make_supervisor(
    spec: dict[str, Any], *, display: bool = False, batch: Batch | None = None
) -> Supervisor | None:
    """The reporter and supervisor a spec asks for (the store or a state file; print mode or
    interactive), checked in; None when the run ended before this process got going
    (cancelled, or found abandoned because the process starting it died): nothing may run
    for it now."""
    options = spec.get("options", {})
    reporter = FileReporter(spec) if options.get("report") == "file" else DbReporter(spec)
    if not reporter.check_in():
        reporter.close()
        return None
    reporter.reserve()
    procs.fault("supervisor-start")  # checked in, nothing started
    if options.get("interactive"):
        return InteractiveSupervisor(spec, reporter)
    return Supervisor(spec, reporter, display=display, batch=batch)


def supervise(sup: Supervisor) -> None:
    """Run one agent to its end under ``sup`` (already contained): prepare its worktree, run
    claude, record the end (a crash of the supervisor's own code is recorded as ``failed``,
    never left ``running``), announce it, then stop what the agent left running."""
    reporter, spec = sup.rep, sup.spec
    try:
        fields, problem = sup.prepare_worktree()
        if fields:
            reporter.update(**fields)
        problem = problem or sup.place_transcript()
        if problem:
            # A resume that could not start is still a run of its session: the agent stays
            # resumable once the cause is fixed. (A fork has no session of its own yet.)
            sid = spec.get("resume_session") if not sup.fork_of else None
            reporter.finish("failed", error=problem, **({"session_id": sid} if sid else {}))
        else:
            sup.run()
    except BaseException as exc:  # record the crash rather than leave the agent "running"
        try:
            reporter.finish("failed", error=f"supervisor error: {exc!r}", **sup.save_work())
            reporter.after_end()
        finally:
            sup.release()
            raise
    procs.fault("supervisor-recorded")  # the end is recorded, not yet announced
    reporter.after_end()  # the run is recorded: its slot is free, its end is news
    sup.stop_leftovers()
    reporter.close()
    sup.release()  # then stop what the agent left running


class Batch:
    """Supervises the runs of one launch in one process, a thread per run.

    ``orch parallel`` of 50 agents starts one Python process instead of 50 (each interpreter
    holds ~12 MB and costs ~40 ms of CPU to start). What the runs share, and only this: the
    process (a crash of the interpreter itself, or a kill -9 of it, ends the supervision of
    all its runs: each shows ``lost`` at the next status read, which stops its processes),
    the subreaper (an orphan that left its claude's tree is found by the run's marker and
    cgroup; one that shed both is stopped when the batch's last run ends), the lock held
    while a child starts, and the signal handlers. Everything else stays per run: its claude,
    its cgroup and marker, its store connection, its timers, its files, and an exception in
    one run's code is recorded as that run's failure and ends no other.
    """

    def __init__(self, total: int) -> None:
        #: How many specs this batch was started with (each is added, or failed to be).
        self.total = total
        self.added = 0
        self.swept = False
        self.spawn_lock = threading.Lock()
        self.sups: list[Supervisor] = []
        self.threads: list[threading.Thread] = []
        #: Runs whose supervision has not ended yet (under :attr:`count_lock`).
        self.live = 0
        self.count_lock = threading.Lock()
        #: A child died and its zombie may still wait to be collected.
        self.reap_due = False

    def contain(self) -> None:
        """Become the subreaper of every run's processes; reap orphans as they die; take the
        signals (SIGTERM, SIGINT, SIGHUP cancel every run; :data:`CANCEL_SIGNAL` the runs
        whose :data:`CANCEL_FILE` is there)."""
        procs.become_subreaper()
        self.enough_files()
        signal.signal(signal.SIGCHLD, self.on_child)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, self.on_signal)
        signal.signal(CANCEL_SIGNAL, lambda _s, _f: self.check_cancels())

    def enough_files(self) -> None:
        """Raise this process's soft limit of open files (up to the hard one) when the batch
        needs more: each run holds ~6 descriptors (its store connection and WAL, claude's
        output file and stdin, the event log, a pidfd), so 200 runs pass the usual 1024."""
        try:
            import resource

            soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
            need = FILES_PER_RUN * self.total + 64
            if soft != resource.RLIM_INFINITY and soft < need:
                top = need if hard == resource.RLIM_INFINITY else min(hard, need)
                resource.setrlimit(resource.RLIMIT_NOFILE, (top, hard))
        except (ImportError, ValueError, OSError) as exc:
            warn(f"cannot raise the open-files limit: {exc!r}")

    def on_child(self, _signum: int, _frame: Any) -> None:
        self.reap_due = True
        self.reap(blocking=False)

    def on_signal(self, _signum: int, _frame: Any) -> None:
        for sup in list(self.sups):
            sup.stop("cancelled")

    def check_cancels(self) -> None:
        for sup in list(self.sups):
            if not sup.stopping.is_set() and (sup.run_dir / CANCEL_FILE).exists():
                sup.stop("cancelled")

    def reap(self, blocking: bool = True) -> None:
        """Collect dead orphans, never a child a run's ``Popen`` still waits for."""
        if not self.spawn_lock.acquire(blocking=blocking):
            return  # a child is being started: the next tick reaps
        try:
            self.reap_due = False
            keep: set[int] = set()
            for sup in list(self.sups):
                keep |= sup.children()
            procs.reap_orphans(keep)
        finally:
            self.spawn_lock.release()

    def add(self, spec_path: str) -> None:
        """Start supervising the run of ``spec_path`` in a thread of its own."""
        run_dir = os.path.dirname(os.path.abspath(spec_path))
        try:
            with open(spec_path, encoding="utf-8") as fh:
                spec = json.load(fh)
            sup = make_supervisor(spec, batch=self)
            if sup is not None:
                sup.contain()
        except Exception as exc:  # no reporter: the run shows lost at the next status read
            warn(f"cannot supervise {spec_path}: {exc!r}")
            sup = None
        if sup is None:  # or it ended before it could start: nothing runs for it
            _supervision_ended(run_dir)
            with self.count_lock:
                self.added += 1
            return
        self.sups.append(sup)
        with self.count_lock:
            self.live += 1
            self.added += 1
        thread = threading.Thread(target=self._run, args=(sup,), name=f"run-{spec['run_id']}")
        self.threads.append(thread)
        thread.start()

    def _run(self, sup: Supervisor) -> None:
        last = False
        try:
            if (sup.run_dir / CANCEL_FILE).exists():  # cancelled before this batch listened
                sup.stop("cancelled")
            supervise(sup)
        except BaseException as exc:
            warn(f"run {sup.spec['run_id']}: {exc!r}")
        finally:
            with self.count_lock:
                self.live -= 1
                last = self.live == 0 and self.added == self.total
                self.swept = self.swept or last
            if last:
                self.sweep()  # before the end mark: after it, the process only exits
            _supervision_ended(str(sup.run_dir), last=last)

    def wait(self) -> None:
        """Until every run has ended: reap and look for cancels every :data:`BATCH_TICK`
        (signals are handled here, in the main thread)."""
        for thread in self.threads:
            while thread.is_alive():
                thread.join(BATCH_TICK)
                if self.reap_due:
                    self.reap()
                self.check_cancels()
        if not self.swept:  # no run's thread was the last (the last spec failed to load)
            self.sweep()

    def sweep(self) -> None:
        """The last run ended: stop what is left below this process (orphans no run's marker
        or cgroup held), except what a run that keeps its children left."""
        kept = [sup.marker for sup in self.sups if sup.keep_children and sup.marker]
        if kept:
            return  # what is below may be theirs: left running, as they asked
        try:
            procs.terminate(lambda: procs.agent_processes(os.getpid()), 1.0)
            procs.reap_orphans()
        except Exception as exc:
            warn(f"final sweep failed: {exc!r}")


def _supervision_ended(run_dir: str, *, last: bool = False) -> None:
    """Leave :data:`SUPERVISION_ENDED` in the run directory; ``last``: it says ``last`` (the
    batch's process exits now: a cancel waits for that too)."""
    with contextlib.suppress(OSError):
        write_atomic(Path(run_dir, SUPERVISION_ENDED), "last\n" if last else "")


def main_batch(spec_paths: list[str]) -> int:
    """``supervisor --batch SPEC.json...``: every run in one process (:class:`Batch`)."""
    batch = Batch(len(spec_paths))
    batch.contain()
    for path in spec_paths:
        batch.add(path)
    batch.wait()
    return 0


def main(argv: list[str] | None = None) -> int:
    """``supervisor [--display] [--env FILE] SPEC.json`` or ``supervisor --batch SPEC.json...``.

    ``--display`` prints progress for a person (tmux pane); ``--env`` loads the launcher's
    environment from FILE. A spec with ``options.interactive`` runs claude interactively.
    ``--batch``: the runs of several specs in this one process (:class:`Batch`).
    """
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["--batch"]:
        return main_batch(args[1:])
    display = "--display" in args
    if display:
        args.remove("--display")
    env_file = None
    if "--env" in args and args.index("--env") + 1 < len(args):
        i = args.index("--env")
        env_file = args[i + 1]
        del args[i : i + 2]
    if len(args) != 1:
        print("usage: supervisor [--display] [--env FILE] SPEC.json", file=sys.stderr)
        return 2
    if env_file:
        load_env_file(env_file)
    with open(args[0], encoding="utf-8") as fh:
        spec = json.load(fh)
    sup = make_supervisor(spec, display=display)
    if sup is None:
        return 0
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, sup.on_signal)
    sup.contain()
    supervise(sup)
    return 0


if __name__ == "__main__":
    # Run by file path (``python -S .../orch_plugins/supervisor.py``): import the package from the
    # directory that holds it, not from this file's own directory.
    _here = os.path.dirname(os.path.abspath(__file__))
    if sys.path and os.path.abspath(sys.path[0] or ".") == _here:
        sys.path[0] = os.path.dirname(_here)
    sys.exit(main())

"""Claude Code hook events: record sessions, tell the orchestrator which agents finished.

Run by the shim ``claude/hooks/orch_hook.py`` as ``PYTHON -I -S orch_hook.py EVENT [PKG_DIR]``
on every SessionStart, UserPromptSubmit, Stop and SessionEnd of a Claude Code session, so:

* standard library plus :mod:`orch_plugins.store` only, and the store is imported only when
  something is to be written or read; the "nothing to do" paths use ``os`` alone;
* an internal error never reaches the session: it is appended to ``hooks.log`` (in the state
  directory, else the user log directory) and the hook exits 0.

Where state lives: where ``orch`` itself keeps it, by the one rule of :mod:`orch_plugins.paths`
(``ORCH_STATE_DIR``, set for agents and by ``orch start``, else the nearest ``.orchestrate/``
at or above the session's project directory, the home directory excluded). Hooks never create
a state directory: ``orch install --project`` creates it, and so does any ``orch`` command. A
user-level install therefore records sessions only in projects that use orch-plugins.

What each event does:

SessionStart
    Records the session (id, cwd, source, transcript path, time). Inside an agent
    (``ORCH_RUN_ID`` set by the launcher) the id is also attached to that run, see
    :func:`_claim`. It appends the interpreter's ``bin`` directory to ``PATH`` through
    ``CLAUDE_ENV_FILE`` when ``orch`` lives there, so the slash commands find ``orch`` without
    relying on the user's PATH. A resumed session (``source: resume``) outside an agent is left
    to UserPromptSubmit: with ``--fork-session`` Claude Code 2.1.197 reports the parent's id at
    SessionStart, not the fork's.
UserPromptSubmit
    In any session, first keeps the arguments of an ``/orchestrate:COMMAND`` prompt exactly as
    typed for ``orch slash`` (:func:`save_command_args`; the only write outside the state
    directory, to the user state directory). Inside an agent: records the session and
    attaches it to the run (:func:`_claim`). Then adds a short notice of the agents that
    ended since the session's previous notice (name, status, one-line result, output path) for
    the model, and one line on screen for the person (``systemMessage``: names and statuses):
    in an agent, of the agents it launched; elsewhere, of those it launched and those no
    session launched; outside agents also of the board posts since its previous prompt
    (:func:`collect_board`); nothing when nothing is new. The quick "nothing new" checks
    compare the mtime and size of ``<state_dir>/ended`` and ``<state_dir>/board`` (appended
    to when a run ends, when a post is made) with the values remembered in
    ``<state_dir>/hooks/<session>.seen`` and ``.board``, so they cost a stat and a small read.
Stop, SessionEnd
    Record the end of a turn / of the session. A sub-agent's stop (a payload with ``agent_id``,
    or ``SubagentStop``) is not the end of the session's turn and is ignored. Inside an agent,
    Stop also clears its "waiting for a person" mark.
Notification (interactive agents only: :func:`orch_plugins.claude.hook_settings`)
    The agent's session waits for a person (a permission prompt, idle input): its run is
    marked waiting, with Claude Code's message, shown by ``orch status`` and in the
    orchestrator's next notice (the ``ended`` marker is appended to, so the notice looks).
PostToolUse
    Inside an agent: the agent went on (a tool ran, so a permission was granted): the waiting
    mark is cleared. So is it at the agent's UserPromptSubmit (the person typed).

Which run a session belongs to (:func:`_claim`): only the run the hook's own environment names
(``ORCH_RUN_ID``), and only if that run has no session id yet or it is this one; never the
session a fork was made from (``ORCH_FORK_OF``). So a ``startup``, ``compact``, ``clear``,
``fork`` or ``resume`` start, or a prompt, of some other session seen in an agent's
environment (a ``claude`` one of its tools started, ``/clear``, a fork's report of its parent)
never moves an id from one run to another.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (~10 ms a hook)
if TYPE_CHECKING:
    from typing import IO, TypeGuard

    from orch_plugins.model import Run
    from orch_plugins.store import Store

#: File in the state directory that the store appends a line to (after the commit) whenever a
#: run reaches a final status: its size and mtime change with every end, even two ends within
#: one timestamp tick.
ENDED_MARKER = "ended"
#: Likewise appended to once per board post.
BOARD_MARKER = "board"
#: Per-session notice bookkeeping, inside the state directory.
SEEN_DIR = "hooks"
LOG_NAME = "hooks.log"
#: At most this many agents are listed in one notice; the rest are counted.
NOTICE_MAX = 12
RESULT_CHARS = 160
#: The slash commands whose arguments the hook keeps for ``orch slash`` (``/orchestrate GOAL``,
#: ``:status`` and ``:roles`` hand none to orch).
SLASH_PREFIX = "/orchestrate:"
SLASH_COMMANDS = frozenset({"launch", "parallel", "resume", "cancel", "output"})
#: Saved arguments are forgotten after this many seconds.
SLASH_KEEP = 7 * 86400.0
#: At most this many agents are named in the on-screen line.
SCREEN_NAMES = 5


# -- small helpers (os only) ----------------------------------------------------------------


def state_dir() -> str | None:
    """The state directory this session belongs to, or None when there is none: the rule of
    :mod:`orch_plugins.paths`, the one ``orch`` follows, without creating anything."""
    from orch_plugins.paths import existing_state_dir

    return existing_state_dir()


def _valid_session_id(sid: object) -> TypeGuard[str]:
    """Session ids end up in file names: accept only what Claude Code issues (uuid-like)."""
    return (
        isinstance(sid, str) and 0 < len(sid) <= 100 and all(c.isalnum() or c in "-_" for c in sid)
    )


def _run_id() -> int | None:
    value = os.environ.get("ORCH_RUN_ID")
    return int(value) if value else None


def _fork_of() -> str | None:
    """The session this agent was forked from; "" for an agent that is no fork; None when the
    launcher did not say (an older orch: then a fork cannot be told from a resume)."""
    return os.environ.get("ORCH_FORK_OF")


def _subagent(payload: dict) -> bool:
    """A payload about one of the session's sub-agents (Task tool), not the session itself."""
    return bool(payload.get("agent_id")) or payload.get("hook_event_name") == "SubagentStop"


class _Event:
    """One hook call: its stdin, read once; parsed only when needed."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.raw = b""
        self._payload: dict | None = None

    def read(self) -> None:
        # Always drain stdin, so Claude Code never writes into a closed pipe.
        self.raw = sys.stdin.buffer.read() if sys.stdin is not None else b""

    @property
    def payload(self) -> dict:
        if self._payload is None:
            import json

            data = json.loads(self.raw or b"{}")
            self._payload = data if isinstance(data, dict) else {}
        return self._payload

    @property
    def session_id(self) -> str:
        sid = self.payload.get("session_id") or os.environ.get("CLAUDE_CODE_SESSION_ID")
        if not _valid_session_id(sid):
            raise ValueError(f"hook input has no usable session_id: {sid!r}")
        return sid


def _open_store(sd: str) -> Store:
    """The store, imported only by the paths that write or read it."""
    from pathlib import Path

    from orch_plugins.store import Store

    return Store(Path(sd))


# -- SessionStart -----------------------------------------------------------------------------


def export_orch_path() -> None:
    """Make ``orch`` (next to this interpreter) reachable from the session's Bash commands.

    Appended, not prepended: the interpreter's directory also holds ``python``, and the user's
    own ``python`` must keep winning.
    """
    env_file = os.environ.get("CLAUDE_ENV_FILE")
    if not env_file:
        return
    bindir = os.path.dirname(sys.executable)
    if not os.path.isfile(os.path.join(bindir, "orch")):
        return
    if bindir in os.environ.get("PATH", "").split(os.pathsep):
        return
    quoted = "'" + bindir.replace("'", "'\\''") + "'"
    with open(env_file, "a", encoding="utf-8") as fh:
        fh.write(f'export PATH="$PATH":{quoted}\n')


def _claim(store: Store, sid: str) -> int | None:
    """The run (``ORCH_RUN_ID``) that session ``sid`` belongs to, attaching it to the run if the
    run has none yet; None outside an agent or when the session is not the run's own."""
    run_id = _run_id()
    if run_id is None:
        return None
    return run_id if store.claim_session(run_id, sid, fork_of=_fork_of()) else None


def _foreign(sid: str) -> bool:
    """The session an agent was forked from, reported by the fork (Claude Code 2.1.197 does at
    SessionStart): an event of this session, not of that one, so nothing is recorded."""
    return _run_id() is not None and bool(_fork_of()) and sid == _fork_of()


def on_session_start(event: _Event) -> None:
    event.read()
    export_orch_path()
    sd = state_dir()
    if sd is None:
        return
    payload = event.payload
    if payload.get("source") == "resume" and (_run_id() is None or _fork_of() is None):
        # Claude Code 2.1.197 reports the *parent's* id here when resuming with
        # --fork-session (the fork's own id first appears at UserPromptSubmit). Without
        # ORCH_FORK_OF a fork cannot be told from a resume, so the session is recorded and
        # attached at its first prompt instead.
        return
    _record_session(sd, event, "SessionStart", source=payload.get("source"))


def _record_session(sd: str, event: _Event, name: str, *, source: str | None = None) -> int | None:
    """Record ``event``'s session (unless it is the one a fork came from), claiming it for this
    agent's run when it runs under orch; returns that run's id (None: no run claimed)."""
    sid = event.session_id
    if _foreign(sid):
        return None
    store = _open_store(sd)
    run_id = _claim(store, sid)
    if run_id is not None and os.environ.get("ORCH_FAULT"):
        from orch_plugins.procs import fault

        fault("hook-session")  # the session claimed for its run, not yet recorded
    store.record_session(
        sid,
        event=name,
        cwd=event.payload.get("cwd"),
        source=source,
        transcript_path=event.payload.get("transcript_path"),
        run_id=run_id,
    )
    return run_id


# -- Stop / SessionEnd ------------------------------------------------------------------------


def _set_waiting(sd: str, what: str | None) -> None:
    """Mark (or clear) the agent's run as waiting for a person; outside an agent, nothing.
    A new mark appends to the ``ended`` marker, so the orchestrator's next prompt looks."""
    run_id = _run_id()
    if run_id is None:
        return
    store = _open_store(sd)
    if store.set_waiting(run_id, what) and what is not None:
        with open(os.path.join(sd, ENDED_MARKER), "a") as fh:
            fh.write("w\n")


def on_notification(event: _Event) -> None:
    event.read()
    sd = state_dir()
    if sd is None or _run_id() is None or _subagent(event.payload):
        return
    message = event.payload.get("message")
    what = " ".join(str(message).split())[:RESULT_CHARS] if message else "a person"
    _set_waiting(sd, what or "a person")


def on_post_tool_use(event: _Event) -> None:
    event.read()
    sd = state_dir()
    if sd is None or _run_id() is None:
        return
    _set_waiting(sd, None)


def _record_end(event: _Event, *, ended: bool) -> None:
    event.read()
    sd = state_dir()
    if sd is None:
        return
    payload = event.payload
    sid = event.session_id
    if _subagent(payload) or _foreign(sid):
        return
    store = _open_store(sd)
    run_id = _claim(store, sid)
    store.record_session(
        sid,
        event=event.name,
        cwd=payload.get("cwd"),
        transcript_path=payload.get("transcript_path"),
        run_id=run_id,
        ended=ended,
    )
    if run_id is not None:
        store.set_waiting(run_id, None)


def on_stop(event: _Event) -> None:
    _record_end(event, ended=False)


def on_session_end(event: _Event) -> None:
    _record_end(event, ended=True)


# -- UserPromptSubmit -------------------------------------------------------------------------


def _marker_state(sd: str, name: str = ENDED_MARKER) -> str | None:
    """``SIZE.MTIME_NS`` of a marker (the ended-runs one, or :data:`BOARD_MARKER`); None when
    the store does not keep one."""
    try:
        st = os.stat(os.path.join(sd, name))
    except FileNotFoundError:
        return None
    return f"{st.st_size}.{st.st_mtime_ns}"


def _seen_mark(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.readline().strip()
    except FileNotFoundError:
        return ""


def on_user_prompt_submit(event: _Event) -> None:
    event.read()
    save_command_args(event)
    sd = state_dir()
    if sd is None:
        return
    agent = _run_id() is not None
    if agent:
        # An agent's prompt (its task, or a message sent to it) is where a forked agent's
        # session id becomes known (see on_session_start); its notice names only the agents
        # it launched itself.
        sid = event.session_id
        if _foreign(sid):
            return
        run_id = _record_session(sd, event, "UserPromptSubmit")
        if run_id is not None:
            _open_store(sd).set_waiting(run_id, None)  # the person typed: the agent goes on
    else:
        env_sid = os.environ.get("CLAUDE_CODE_SESSION_ID")
        sid = env_sid if _valid_session_id(env_sid) else event.session_id
    mark = _marker_state(sd)
    seen_path = os.path.join(sd, SEEN_DIR, f"{sid}.seen")
    if mark is not None and _seen_mark(seen_path) == mark:
        # Nothing ended since this session looked (a stat and a small read): board news only.
        screen: list[str] = []
        context: list[str] = []
        if not agent:
            _add_board(sd, sid, screen, context)
        _emit(screen, context)
        return
    store = _open_store(sd)  # first: a store this release cannot read is left without a trace
    os.makedirs(os.path.dirname(seen_path), exist_ok=True)
    # The seen file doubles as the session's lock (two installs of the hooks fire at once):
    # rewritten in place, never replaced, so every waiter locks the same inode; held until the
    # notice is out and marked delivered.
    with open(seen_path, "a+", encoding="utf-8") as seen:
        _lock(seen)
        _settle_pending(store, sd, sid, event)
        fresh, base, upto = collect_notice(store, sid, event, own_only=agent)
        waiting = (
            []
            if agent
            else [r for r in store.waiting_runs() if r.get("launched_by") in (None, sid)]
        )
        screen = []
        context = []
        nonce = os.urandom(6).hex() if fresh else None
        if fresh or waiting:
            screen.append(format_screen_note(fresh, waiting))
            context.append(format_notice(fresh, waiting, nonce))
        if not agent:
            _add_board(sd, sid, screen, context)
        from orch_plugins.procs import fault

        if nonce is not None:
            _write_pending(sd, sid, upto, nonce)
            fault("hook-notice-pending")  # set aside, not yet printed
        _emit(screen, context)
        if nonce is not None:
            _note_printed(sd, sid)
            fault("hook-notice-sent")  # printed, not yet marked delivered
        if upto > base:
            store.mark_notified(sid, upto)
        if nonce is not None:
            _unlink(_pending_path(sd, sid))
        seen.seek(0)
        seen.truncate()
        seen.write(f"{'' if mark is None else mark}\n")


def _add_board(sd: str, sid: str, screen: list[str], context: list[str]) -> None:
    posts = collect_board(sd, sid)
    if posts:
        screen.append(format_board_screen(posts))
        context.append(format_board(posts))


def _emit(screen: list[str], context: list[str]) -> None:
    """Print the hook's answer to Claude Code: the line on screen, the notice for the model."""
    if not context:
        return
    import json

    out = {
        # On screen, for the person; the full notice below is for the model only.
        "systemMessage": "; ".join(screen),
        "hookSpecificOutput": {
            "hookEventName": "UserPromptSubmit",
            "additionalContext": "\n\n".join(context),
        },
    }
    sys.stdout.write(json.dumps(out, ensure_ascii=False))
    sys.stdout.flush()


def _pending_path(sd: str, sid: str) -> str:
    return os.path.join(sd, SEEN_DIR, f"{sid}.pending")


def _write_pending(sd: str, sid: str, upto: int, nonce: str) -> None:
    """Before a notice is printed: what it covers (ends up to ``upto``) and its tag
    (``nonce``), so the next prompt can tell whether a hook killed meanwhile delivered it."""
    path = _pending_path(sd, sid)
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(f"{upto} {nonce}\n")
    os.replace(tmp, path)


def _note_printed(sd: str, sid: str) -> None:
    """The notice set aside is printed: Claude Code uses it (also if this hook is killed
    now, checked with 2.1.197)."""
    with open(_pending_path(sd, sid), "a", encoding="utf-8") as fh:
        fh.write("printed\n")


def _settle_pending(store: Store, sd: str, sid: str, event: _Event) -> None:
    """A notice an earlier hook of this session set aside but did not mark delivered (it was
    killed): delivered when it was printed (Claude Code uses the output of a hook killed
    after printing: in this very prompt when that hook was another install's, running at
    once), or when its tag is in the session's transcript (Claude Code records a hook's
    additionalContext there: a hook killed between printing and noting it); else it is not
    marked, and the same ends come again."""
    path = _pending_path(sd, sid)
    try:
        with open(path, encoding="utf-8") as fh:
            head, _, rest = fh.read().partition("\n")
        upto_text, _, nonce = head.strip().partition(" ")
        upto = int(upto_text)
    except (OSError, ValueError):
        return
    transcript = event.payload.get("transcript_path")
    if "printed" in rest or (
        nonce and isinstance(transcript, str) and _holds(transcript, nonce.encode())
    ):
        store.mark_notified(sid, upto)
    _unlink(path)


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:  # (contextlib would be one import more on every hook)
        return


def _holds(path: str, needle: bytes) -> bool:
    """Whether the file at ``path`` contains ``needle`` (False when unreadable or empty)."""
    import mmap

    try:
        with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            return mm.find(needle) >= 0
    except (OSError, ValueError):
        return False


def collect_board(sd: str, sid: str) -> list[dict]:
    """The board posts (store rows, oldest first) this session has not been told of, not its
    own; ``[]`` at once (a stat) when no post came since it last looked. Before its first
    look, posts from before the session's first sighting are not news."""
    mark = _marker_state(sd, BOARD_MARKER)
    if mark is None:
        return []
    path = os.path.join(sd, SEEN_DIR, f"{sid}.board")
    try:
        with open(path, encoding="utf-8") as fh:
            seen_mark, _, last = fh.read().partition("\n")
        last_id: int | None = int(last.strip() or 0)
    except (OSError, ValueError):
        seen_mark, last_id = "", None
    if seen_mark.strip() == mark:
        return []
    import time

    store = _open_store(sd)
    session = store.session(sid)
    since = time.time() if session is None else session["first_seen"]
    posts = store.board(since=last_id or 0)
    top = max([last_id or 0, *(p["post_id"] for p in posts)])
    fresh = [
        p
        for p in posts
        if (last_id is not None or p["posted_at"] > since) and p["session_id"] != sid
    ]
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(f"{mark}\n{top}\n")
    os.replace(tmp, path)
    return fresh


def format_board(posts: list[dict]) -> str:
    """The board part of the orchestrator's notice: one line per new post."""
    n = len(posts)
    lines = [f"orch: {n} new board post{'s' * (n != 1)} since your previous prompt:"]
    for post in posts[:NOTICE_MAX]:
        lines.append(f"- #{post['post_id']} {post['author']}: {_one_line(post['text'])}")
    if n > NOTICE_MAX:
        lines.append(f"- … and {n - NOTICE_MAX} more")
    first = posts[0]["post_id"] - 1
    lines.append(f"Read them in full with `orch board read --since {first}`.")
    return "\n".join(lines)


def format_board_screen(posts: list[dict]) -> str:
    n = len(posts)
    return f"orch: {n} new board post{'s' * (n != 1)} (orch board read)"


def save_command_args(event: _Event) -> None:
    """Keep the arguments of an ``/orchestrate:COMMAND`` prompt exactly as typed, for ``orch
    slash COMMAND`` to read: the slash commands never have Claude copy them into a shell
    command (see :mod:`orch_plugins.slash`).

    Written to ``<user state dir>/slash/<session id>.<command>`` (mode 0600), under the id in
    the hook's payload and the one the session's Bash commands see, when they differ. Costs
    a substring test for any other prompt.
    """
    if SLASH_PREFIX.encode() not in event.raw:
        return
    prompt = event.payload.get("prompt")
    if not isinstance(prompt, str):
        return
    command, args = _split_command(prompt)
    if command is None:
        return
    ids = {event.payload.get("session_id"), os.environ.get("CLAUDE_CODE_SESSION_ID")}
    folder = slash_dir()
    os.makedirs(folder, mode=0o700, exist_ok=True)
    data = args.encode("utf-8", "surrogatepass")
    for sid in ids:
        if _valid_session_id(sid):
            path = os.path.join(folder, f"{sid}.{command}")
            tmp = f"{path}.{os.getpid()}.tmp"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, path)
    _prune(folder)


def _split_command(prompt: str) -> tuple[str | None, str]:
    """``("launch", "a -v is broken")`` for ``"/orchestrate:launch a -v is broken"``;
    ``(None, "")`` for any other prompt. The arguments are everything after the whitespace
    that ends the command's name, untouched."""
    text = prompt.lstrip()
    if not text.startswith(SLASH_PREFIX):
        return None, ""
    end = len(SLASH_PREFIX)
    while end < len(text) and not text[end].isspace():
        end += 1
    command = text[len(SLASH_PREFIX) : end]
    if command not in SLASH_COMMANDS:
        return None, ""
    return command, text[end + 1 :] if end < len(text) else ""


def _prune(folder: str) -> None:
    """Forget saved arguments older than :data:`SLASH_KEEP` seconds."""
    import time

    limit = time.time() - SLASH_KEEP
    for entry in os.scandir(folder):
        try:
            if entry.stat().st_mtime < limit:
                os.unlink(entry.path)
        except OSError:
            continue


def _lock(fh: IO[str]) -> None:
    """Serialise two notice hooks of one session (a project and a plugin install both firing)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: best effort without a lock
        return
    fcntl.flock(fh.fileno(), fcntl.LOCK_EX)


def collect_notice(
    store: Store, sid: str, event: _Event | None = None, *, own_only: bool = False
) -> tuple[list[Run], int, int]:
    """The runs whose end was recorded after session ``sid`` was last told (store records, in
    the order their ends were recorded; ``[]`` when none): those this session launched, and
    (unless ``own_only``, an agent's session) those launched from no session at all. Returns
    them with the session's mark (``notified_seq``) and the mark that telling them moves it
    to. Marks follow the order in which ends were committed (``end_seq``), never the wall
    clock, so no end is skipped or told twice however the clock moves; ends recorded before
    the session was first seen are not news. Call with the session's lock held."""
    session = store.session(sid)
    if session is None:
        payload = event.payload if event is not None else {}
        store.record_session(
            sid,
            event="UserPromptSubmit",
            cwd=payload.get("cwd"),
            transcript_path=payload.get("transcript_path"),
        )
        session = store.session(sid) or {}
    base = int(session.get("notified_seq") or 0)
    ended = store.ended_after(base)
    upto = max([base, *(int(r["end_seq"] or 0) for r in ended)])
    # Agents launched by another Claude Code session are that session's news; ones launched
    # from a plain terminal are everyone's.
    owners = (sid,) if own_only else (None, sid)
    return [r for r in ended if r.get("launched_by") in owners], base, upto


def _one_line(text: str | None) -> str:
    for line in (text or "").splitlines():
        line = " ".join(line.split())
        if line:
            return line if len(line) <= RESULT_CHARS else line[: RESULT_CHARS - 1] + "…"
    return ""


def _result_line(run: Run) -> str:
    if run["status"] != "completed":
        return _one_line(run.get("error")) or "no error recorded"
    try:
        with open(run["output_path"], encoding="utf-8", errors="replace") as fh:
            head = fh.read(4096)
    except OSError:
        return "no output file"
    return _one_line(head) or "empty output"


def _worktree_note(run: Run) -> str:
    """``; branch orch/x: 2 files +10 -3, 1 commit (orch diff x, orch merge x)`` for an agent
    with a worktree (its change summary, as its supervisor recorded it); "" without one."""
    if not run.get("branch"):
        return ""
    from orch_plugins.store import decode_changes

    changes = decode_changes(run.get("changes")) or {}
    if changes.get("error"):
        return f"; branch {run['branch']}: {_one_line(str(changes['error']))}"
    if "files" not in changes:
        return f"; branch {run['branch']}"
    files, commits = changes["files"], changes.get("commits", 0)
    text = (
        f"; branch {run['branch']}: {files} file{'s' * (files != 1)} "
        f"+{changes.get('insertions', 0)} -{changes.get('deletions', 0)}, "
        f"{commits} commit{'s' * (commits != 1)}"
    )
    if not files:
        return text + " (no changes)"
    return text + f" (orch diff {run['name']}, orch merge {run['name']})"


def _cost(run: Run) -> str:
    """``, $0.096`` (the run's cost, as ``orch status`` shows it), or "" when none recorded."""
    cost = run.get("cost_usd")
    if not isinstance(cost, (int, float)):
        return ""
    from orch_plugins.progress import money  # only when there is news: the slow path

    return f", {money(cost)}"


def format_notice(
    runs: list[Run], waiting: list[Run] | None = None, nonce: str | None = None
) -> str:
    """The text added to the orchestrator's prompt: one line per ended agent (with its cost),
    then one per agent waiting for a person (what for); ``nonce`` tags the notice (see
    :func:`_settle_pending`)."""
    waiting = waiting or []
    if not runs and not waiting:
        return ""
    lines = []
    n = len(runs)
    if runs:
        lines.append(f"orch: {n} agent{'s' * (n != 1)} ended since your previous prompt:")
    for run in runs[:NOTICE_MAX]:
        lines.append(
            f"- {run['name']}: {run['status']}{_cost(run)} — {_result_line(run)} "
            f"(output: {run['output_path']})" + _worktree_note(run)
        )
    if n > NOTICE_MAX:
        lines.append(f"- … and {n - NOTICE_MAX} more (orch status)")
    if waiting:
        lines.append("orch: agents waiting for a person (in their tmux windows):")
        lines += [f"- {r['name']}: waiting for {r['waiting_for']}" for r in waiting[:NOTICE_MAX]]
    tail = "Read a full result with `orch output NAME`; see all agents with `orch status`."
    lines.append(f"{tail} (notice {nonce})" if nonce else tail)
    return "\n".join(lines)


def format_screen_note(runs: list[Run], waiting: list[Run] | None = None) -> str:
    """The one line shown to the person (the hook's ``systemMessage``): who ended, how, and
    who waits for them.

    ``orch: 2 agents ended: parser completed, perf failed; waiting for you: fixer (orch
    status)``; at most :data:`SCREEN_NAMES` names each, the rest counted.
    """
    parts = []
    n = len(runs)
    if runs:
        shown = [f"{run['name']} {run['status']}" for run in runs[:SCREEN_NAMES]]
        if n > SCREEN_NAMES:
            shown.append(f"{n - SCREEN_NAMES} more")
        parts.append(f"{n} agent{'s' * (n != 1)} ended: {', '.join(shown)}")
    if waiting:
        names = [r["name"] for r in waiting[:SCREEN_NAMES]]
        if len(waiting) > SCREEN_NAMES:
            names.append(f"{len(waiting) - SCREEN_NAMES} more")
        parts.append(f"waiting for you: {', '.join(names)}")
    return f"orch: {'; '.join(parts)} (orch status)"


# -- entry point ------------------------------------------------------------------------------

HANDLERS = {
    "SessionStart": on_session_start,
    "UserPromptSubmit": on_user_prompt_submit,
    "Stop": on_stop,
    "SessionEnd": on_session_end,
    "Notification": on_notification,
    "PostToolUse": on_post_tool_use,
}


def log_path() -> str:
    """``<state_dir>/hooks.log``, else the user log directory (XDG state home on Linux)."""
    try:
        sd = state_dir()
    except Exception:
        sd = None
    if sd:
        return os.path.join(sd, LOG_NAME)
    return os.path.join(user_log_dir(), LOG_NAME)


def user_state_dir() -> str:
    """platformdirs' ``user_state_dir("orch-plugins")``, recomputed without importing it."""
    if sys.platform == "darwin":
        return os.path.expanduser("~/Library/Application Support/orch-plugins")
    if os.name == "nt":
        base = os.environ.get("LOCALAPPDATA") or os.path.expanduser("~\\AppData\\Local")
        return os.path.join(base, "orch-plugins", "orch-plugins")
    base = os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state")
    return os.path.join(base, "orch-plugins")


def slash_dir() -> str:
    """Where :func:`save_command_args` keeps slash-command arguments, per session."""
    return os.path.join(user_state_dir(), "slash")


def user_log_dir() -> str:
    """platformdirs' ``user_log_dir("orch-plugins")``, recomputed without importing it."""
    if sys.platform == "darwin":
        return os.path.expanduser("~/Library/Logs/orch-plugins")
    if os.name == "nt":
        base = os.environ.get("LOCALAPPDATA") or os.path.expanduser("~\\AppData\\Local")
        return os.path.join(base, "orch-plugins", "orch-plugins", "Logs")
    base = os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state")
    return os.path.join(base, "orch-plugins", "log")


def log_error(event: str, exc: BaseException) -> None:
    """Append one line (and the traceback, indented) to the hook log; never raise."""
    try:
        import time
        import traceback

        path = log_path()
        os.makedirs(os.path.dirname(path), exist_ok=True)
        when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(f"{when} {event or '?'} pid={os.getpid()} {type(exc).__name__}: {exc}\n")
            fh.write("".join(f"    {line}\n" for line in tb.rstrip().splitlines()))
    except BaseException:
        pass


def main(argv: list[str] | None = None) -> int:
    """``orch_hook.py EVENT``: handle one event; always exit 0."""
    args = sys.argv[1:] if argv is None else argv
    name = args[0] if args else ""
    try:
        handler = HANDLERS.get(name)
        if handler is None:
            raise ValueError(f"unknown hook event {name!r} (expected one of {', '.join(HANDLERS)})")
        handler(_Event(name))
    except BaseException as exc:  # a hook must never break the session
        log_error(name, exc)
    return 0


if __name__ == "__main__":
    sys.exit(main())

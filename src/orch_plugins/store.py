"""The state store: every agent run, every known Claude Code session, in one SQLite file.

Many processes write at once (supervisors, hooks, CLI calls) and any of them may be killed at any
moment, so the store is SQLite in WAL mode with a busy timeout and short ``BEGIN IMMEDIATE``
transactions. Large text (outputs, event logs) lives in files in the run's directory; the record
holds their paths. A store that SQLite cannot read is reported, never rewritten.

Standard library only: hooks and supervisors import this module on every event.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sqlite3
import time
from collections.abc import Iterable, Iterator
from datetime import datetime, timezone
from pathlib import Path

from orch_plugins.errors import OrchError

# Not ``from typing import TYPE_CHECKING``: importing typing costs ~2.5 ms at start-up, paid by
# every agent and every hook.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, cast

    from orch_plugins.model import Handle, JSONObject, Run
else:

    def cast(_type: object, value: object) -> object:
        return value


SCHEMA_VERSION = 7
DB_NAME = "state.db"
#: Appended to once per run that ends, after the commit: hooks compare its size and mtime, so
#: "nothing ended since the last prompt" costs a stat instead of opening the store.
ENDED_MARKER = "ended"
#: Appended to once per board post, after the commit: the orchestrator's hook compares its size
#: and mtime, so "no new post since the last prompt" costs a stat.
BOARD_MARKER = "board"

QUEUED, RUNNING = "queued", "running"
COMPLETED, FAILED, CANCELLED, TIMED_OUT, LOST, STALLED = (
    "completed",
    "failed",
    "cancelled",
    "timed_out",
    "lost",
    "stalled",
)
ACTIVE = (QUEUED, RUNNING)
#: Prefix of the ``error`` note of a run its backend started into a queue of its own (a Ray
#: job waiting for a node with a free slot): recorded ``running`` (it holds its place and is
#: cancelled through its backend), shown ``queued`` (:func:`shown_status`).
BACKEND_QUEUED = "queued: "
#: ``end_announced`` of a run whose start no plugin listening to ``orch_agent_ended`` saw: its
#: end is not announced (0: not yet announced, 1: claimed by the process that fires it).
END_UNHEARD = 2
FINAL = (COMPLETED, FAILED, CANCELLED, TIMED_OUT, LOST, STALLED)
#: Keys of admission's own handles (:func:`orch_plugins.admission.is_placeholder`): a run
#: waiting for room, or being started, whose backend has not returned a handle yet.
PLACEHOLDER_KEYS = ("deferred", "placing", "starting")
STATUSES = ACTIVE + FINAL

#: The public fields of an agent, in the order ``orch status --json`` prints them.
STATUS_FIELDS = (
    "name",
    "status",
    "task",
    "role",
    "backend",
    "session_id",
    "started_at",
    "ended_at",
    "exit_code",
    "cost_usd",
    "num_turns",
    "output_path",
    "error",
    "run_id",
    "created_at",
    "model",
    "cwd",
    "attempt",
    "retries",
    "timeout",
    "tool_calls",
    "last_activity",
    "duration_ms",
    "usage",
    "log_path",
    "parent",
    "launched_by",
    "archived",
    "claude_pid",
    "worktree",
    "branch",
    "base",
    "base_branch",
    "changes",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_creation_tokens",
    "models",
    "max_budget_usd",
    "idle_timeout",
    "api_retries",
    "waiting_for",
    "waiting_since",
    "parent_run",
    "depth",
)
#: The token columns of a run (and of the cost ledger), summed from Claude Code's result event.
TOKEN_FIELDS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_creation_tokens")
_TIME_FIELDS = ("created_at", "started_at", "ended_at", "last_activity", "waiting_since")

NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")

#: Columns added after schema 1, in order: ``_migrate`` adds the ones an older store lacks, as
#: (name, declaration, statement run once when the column is added, or None).
_ADDED_COLUMNS: tuple[tuple[str, str, str | None], ...] = (
    ("claude_pid", "INTEGER", None),
    ("claude_start", "INTEGER", None),
    # orch_agent_ended is claimed once per run (1 = claimed). Runs that ended before the event
    # existed are not announced when an older store is opened.
    (
        "end_announced",
        "INTEGER NOT NULL DEFAULT 0",
        f"UPDATE runs SET end_announced=1 WHERE status IN ({', '.join(map(repr, FINAL))})",
    ),
    # The agent's git worktree (orch launch --worktree): its path (on the run's host), branch,
    # base commit, the branch it was based on, and the change summary as JSON text.
    ("worktree", "TEXT", None),
    ("branch", "TEXT", None),
    ("base", "TEXT", None),
    ("base_branch", "TEXT", None),
    ("changes", "TEXT", None),
    # The cost ledger (schema 5): tokens and models from Claude Code's result event.
    ("input_tokens", "INTEGER", None),
    ("output_tokens", "INTEGER", None),
    ("cache_read_tokens", "INTEGER", None),
    ("cache_creation_tokens", "INTEGER", None),
    ("models", "TEXT", None),
    ("max_budget_usd", "REAL", None),
    # The watchdog, rate limits, a person awaited (schema 5).
    ("idle_timeout", "REAL", None),
    ("api_retries", "INTEGER NOT NULL DEFAULT 0", None),
    ("rate_limited_at", "REAL", None),
    ("parked", "INTEGER NOT NULL DEFAULT 0", None),
    ("waiting_for", "TEXT", None),
    ("waiting_since", "REAL", None),
    # The run of the agent that launched this one (None: launched by a person or the
    # orchestrator), and how deep in that tree the run is (1: launched by no agent).
    ("parent_run", "INTEGER", None),
    ("depth", "INTEGER NOT NULL DEFAULT 1", None),
    # The order in which ends were recorded (schema 7), for notices: commit order, not the
    # wall clock (numbered for the runs that ended before, by their end times, on migration).
    ("end_seq", "INTEGER", None),
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    status TEXT NOT NULL,
    task TEXT NOT NULL,
    role TEXT,
    backend TEXT NOT NULL,
    model TEXT,
    cwd TEXT NOT NULL,
    timeout REAL,
    retries INTEGER NOT NULL DEFAULT 0,
    attempt INTEGER NOT NULL DEFAULT 0,
    max_parallel INTEGER NOT NULL DEFAULT 8,
    session_id TEXT,
    parent TEXT,
    launched_by TEXT,
    created_at REAL NOT NULL,
    started_at REAL,
    ended_at REAL,
    last_activity REAL,
    exit_code INTEGER,
    cost_usd REAL,
    num_turns INTEGER,
    tool_calls INTEGER NOT NULL DEFAULT 0,
    duration_ms INTEGER,
    usage TEXT,
    error TEXT,
    run_dir TEXT NOT NULL,
    output_path TEXT NOT NULL,
    log_path TEXT NOT NULL,
    handle TEXT,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    archived INTEGER NOT NULL DEFAULT 0,
    claude_pid INTEGER,
    claude_start INTEGER,
    end_announced INTEGER NOT NULL DEFAULT 0,
    worktree TEXT,
    branch TEXT,
    base TEXT,
    base_branch TEXT,
    changes TEXT,
    input_tokens INTEGER,
    output_tokens INTEGER,
    cache_read_tokens INTEGER,
    cache_creation_tokens INTEGER,
    models TEXT,
    max_budget_usd REAL,
    idle_timeout REAL,
    api_retries INTEGER NOT NULL DEFAULT 0,
    rate_limited_at REAL,
    parked INTEGER NOT NULL DEFAULT 0,
    waiting_for TEXT,
    waiting_since REAL,
    parent_run INTEGER,
    depth INTEGER NOT NULL DEFAULT 1,
    end_seq INTEGER
);
CREATE INDEX IF NOT EXISTS runs_name ON runs(name, run_id);
CREATE INDEX IF NOT EXISTS runs_status ON runs(status);
CREATE TABLE IF NOT EXISTS sessions (
    session_id TEXT PRIMARY KEY,
    cwd TEXT,
    source TEXT,
    transcript_path TEXT,
    run_id INTEGER,
    first_seen REAL NOT NULL,
    last_event TEXT,
    last_event_at REAL,
    ended_at REAL,
    notified_at REAL,
    notified_seq INTEGER
);
CREATE TABLE IF NOT EXISTS costs (
    run_id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    role TEXT,
    model TEXT,
    models TEXT,
    parent TEXT,
    backend TEXT,
    created_at REAL,
    ended_at REAL,
    cost_usd REAL,
    input_tokens INTEGER,
    output_tokens INTEGER,
    cache_read_tokens INTEGER,
    cache_creation_tokens INTEGER
);
CREATE TABLE IF NOT EXISTS admission (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    paused_until REAL,
    pause_status INTEGER,
    pause_by TEXT,
    effective_limit INTEGER,
    lowered_at REAL
);
CREATE TABLE IF NOT EXISTS board (
    post_id INTEGER PRIMARY KEY AUTOINCREMENT,
    author TEXT NOT NULL,
    run_id INTEGER,
    session_id TEXT,
    text TEXT NOT NULL,
    posted_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS messages (
    message_id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id INTEGER NOT NULL,
    sender TEXT NOT NULL,
    text TEXT NOT NULL,
    sent_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_run ON messages(run_id, message_id);
"""
#: The cost ledger's columns, copied from a run's record when its end is recorded: the money
#: stays counted (``orch cost --all``, the project budget) after ``orch clear`` forgets the run.
COST_COLUMNS = (
    "run_id",
    "name",
    "role",
    "model",
    "models",
    "parent",
    "backend",
    "created_at",
    "ended_at",
    "cost_usd",
    *TOKEN_FIELDS,
)
#: API statuses that mean "too many requests now" (rate limited, overloaded): admission pauses.
RATE_LIMIT_STATUSES = (429, 529)


def validate_name(name: str) -> str:
    """Refuse names that could not be a file name, a tmux window or a shell word unquoted."""
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        shown = name if len(name) <= 40 else name[:40] + "…"
        raise OrchError(
            f"invalid agent name {shown!r}: use 1-64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return name


def iso(ts: float | None) -> str | None:
    """Render an epoch time the way every JSON output shows it (UTC, ISO 8601)."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, tz=timezone.utc).isoformat(timespec="seconds")


def find_project_dir(start: Path | None = None) -> Path:
    """The project an ``orch`` call belongs to (:func:`orch_plugins.paths.project_dir`)."""
    from orch_plugins import paths  # where used: a hook imports the store for writing only

    return Path(paths.project_dir(start))


def default_state_dir(start: Path | None = None) -> Path:
    """The state directory (:func:`orch_plugins.paths.state_dir`): ``ORCH_STATE_DIR`` if set,
    else ``<project>/.orchestrate``."""
    from orch_plugins import paths

    return Path(paths.state_dir(start))


def atomic_write(path: Path, data: str | bytes) -> None:
    """Write to a temporary name and rename, so a reader never sees half a file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data if isinstance(data, bytes) else data.encode("utf-8"))
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):  # a full disk: no half file left behind
            tmp.unlink()
        raise


def damaged_message(db_path: str | os.PathLike[str], exc: object) -> str:
    """The one line for a state store SQLite cannot read (``exc``: an ``sqlite3.DatabaseError``,
    met on opening it or later where damage past its header is reached, or what a check found)."""
    return (
        f"state store {db_path} is corrupt or unreadable ({exc}); it was left untouched: "
        "move it aside to start afresh"
    )


class Store:
    """One connection per process to ``<state_dir>/state.db``."""

    def __init__(self, state_dir: Path, *, create: bool = True) -> None:
        self.state_dir = Path(state_dir)
        self.db_path = self.state_dir / DB_NAME
        self._ended_pending = False
        if not self.db_path.exists():
            if not create:
                raise OrchError(f"no state store at {self.db_path}")
            self._make_dir()
        try:
            self.conn = sqlite3.connect(
                self.db_path, timeout=30, isolation_level=None, check_same_thread=False
            )
            self.conn.row_factory = sqlite3.Row
            # Before anything that writes (WAL mode rewrites the header of a store in another
            # journal mode): a newer release's store is refused untouched.
            self._refuse_newer()
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=NORMAL")
            self._migrate()
        except sqlite3.DatabaseError as exc:
            raise OrchError(damaged_message(self.db_path, exc)) from None

    def integrity(self) -> list[str]:
        """SQLite's own check of the file (``PRAGMA quick_check``, reads every page once):
        ``[]`` for a sound store, else up to five problems as SQLite words them."""
        try:
            found = [row[0] for row in self.conn.execute("PRAGMA quick_check(5)")]
        except sqlite3.DatabaseError as exc:
            return [str(exc)]
        return [] if found == ["ok"] else found

    @classmethod
    def open(cls, state_dir: Path | None = None, *, create: bool = True) -> Store:
        return cls(state_dir or default_state_dir(), create=create)

    def _make_dir(self) -> None:
        try:
            self.state_dir.mkdir(parents=True, exist_ok=True)
            (self.state_dir / "runs").mkdir(exist_ok=True)
            (self.state_dir / ENDED_MARKER).touch()
            gitignore = self.state_dir / ".gitignore"
            if not gitignore.exists():
                gitignore.write_text("# orch-plugins state: not for version control\n*\n")
        except OSError as exc:
            raise OrchError(f"cannot create state directory {self.state_dir}: {exc}") from None

    def _refuse_newer(self) -> None:
        version = self.conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            self.conn.close()
            raise OrchError(
                f"state store {self.db_path} was written by a newer orch-plugins "
                f"(schema {version}; this one reads up to {SCHEMA_VERSION}); upgrade "
                "orch-plugins (the store was left untouched)"
            )

    def _migrate(self) -> None:
        version = self.conn.execute("PRAGMA user_version").fetchone()[0]
        if version == SCHEMA_VERSION:
            return
        self._refuse_newer()  # written by a newer one since this connection opened
        with self.transaction():
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    self.conn.execute(statement)
            have = {row[1] for row in self.conn.execute("PRAGMA table_info(runs)")}
            for column, declaration, backfill in _ADDED_COLUMNS:
                if column not in have:
                    self.conn.execute(f"ALTER TABLE runs ADD COLUMN {column} {declaration}")
                    if backfill:
                        self.conn.execute(backfill)
            if "end_seq" not in have:
                self._number_old_ends()
            self.conn.execute("CREATE INDEX IF NOT EXISTS runs_end_seq ON runs(end_seq)")
            # Only the few runs not yet announced: "is there an end to announce?" stays cheap.
            self.conn.execute(
                "CREATE INDEX IF NOT EXISTS runs_unannounced ON runs(ended_at) "
                "WHERE end_announced=0"
            )
            self.conn.execute("CREATE INDEX IF NOT EXISTS runs_parent ON runs(parent_run)")
            self.conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    def _number_old_ends(self) -> None:
        """Migration to schema 7: number the ends recorded before (by end time), and start
        each known session's notices after the ends it was already told of (its
        ``notified_at``, else its first sighting)."""
        marks = ", ".join("?" for _ in FINAL)
        ends = self.conn.execute(
            f"SELECT run_id, ended_at FROM runs WHERE status IN ({marks}) "
            "ORDER BY ended_at, run_id",
            FINAL,
        ).fetchall()
        self.conn.executemany(
            "UPDATE runs SET end_seq=? WHERE run_id=?",
            [(seq, row[0]) for seq, row in enumerate(ends, 1)],
        )
        cols = {row[1] for row in self.conn.execute("PRAGMA table_info(sessions)")}
        if "notified_seq" not in cols:
            self.conn.execute("ALTER TABLE sessions ADD COLUMN notified_seq INTEGER")
        import bisect

        times = [row[1] or 0.0 for row in ends]
        for sid, seen, told in self.conn.execute(
            "SELECT session_id, first_seen, notified_at FROM sessions"
        ).fetchall():
            upto = bisect.bisect_right(times, told or seen or 0.0)
            self.conn.execute("UPDATE sessions SET notified_seq=? WHERE session_id=?", (upto, sid))

    def close(self) -> None:
        self.conn.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction that takes the lock up front, so check-then-insert is atomic."""
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            self._ended_pending = False
            raise
        else:
            self.conn.execute("COMMIT")
            if self._ended_pending:
                self._note_ended()

    # -- runs -------------------------------------------------------------------------------

    def run_dir_for(self, run_id: int, name: str) -> Path:
        return self.state_dir / "runs" / f"{run_id}-{name}"

    def insert_run(self, **fields: Any) -> Run:
        """Insert a queued run; call inside :meth:`transaction`. Paths are derived from its id.

        ``fields`` are columns of the ``runs`` table (see :class:`orch_plugins.model.Run`)."""
        fields.setdefault("status", QUEUED)
        if "handle" in fields:
            fields["handle"] = encode_handle(fields["handle"])
        fields.setdefault("created_at", time.time())
        fields.update(run_dir="", output_path="", log_path="")
        cols = ", ".join(fields)
        marks = ", ".join("?" for _ in fields)
        cur = self.conn.execute(f"INSERT INTO runs ({cols}) VALUES ({marks})", [*fields.values()])
        run_id = cur.lastrowid
        assert run_id is not None
        run_dir = self.run_dir_for(run_id, fields["name"])
        self.conn.execute(
            "UPDATE runs SET run_dir=?, output_path=?, log_path=? WHERE run_id=?",
            (str(run_dir), str(run_dir / "output.md"), str(run_dir / "events.jsonl"), run_id),
        )
        return self.get_run(run_id)

    def get_run(self, run_id: int) -> Run:
        row = self.conn.execute("SELECT * FROM runs WHERE run_id=?", (run_id,)).fetchone()
        if row is None:
            raise OrchError(f"no run with id {run_id}")
        return _run(row)

    def latest(self, name: str) -> Run | None:
        """The newest run of an agent name (archived runs included)."""
        row = self.conn.execute(
            "SELECT * FROM runs WHERE name=? ORDER BY run_id DESC LIMIT 1", (name,)
        ).fetchone()
        return _run(row) if row else None

    def require(self, name: str) -> Run:
        validate_name(name)
        run = self.latest(name)
        if run is None:
            raise OrchError(f"no agent named {name!r} (see 'orch status --all')")
        return run

    def active_run(self, name: str) -> Run | None:
        row = self.conn.execute(
            "SELECT * FROM runs WHERE name=? AND status IN (?, ?) ORDER BY run_id DESC LIMIT 1",
            (name, *ACTIVE),
        ).fetchone()
        return _run(row) if row else None

    def runs(
        self,
        names: Iterable[str] | None = None,
        *,
        include_archived: bool = False,
        latest_only: bool = True,
        statuses: Iterable[str] | None = None,
    ) -> list[Run]:
        """Runs oldest first; by default only each name's newest run, archived ones left out."""
        where, args = [], []
        if not include_archived:
            where.append("archived=0")
        names = list(names or [])
        if names:
            where.append(f"name IN ({', '.join('?' for _ in names)})")
            args.extend(names)
        statuses = list(statuses or [])
        if statuses:
            where.append(f"status IN ({', '.join('?' for _ in statuses)})")
            args.extend(statuses)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        if latest_only:
            sql = (
                f"SELECT * FROM runs WHERE run_id IN (SELECT MAX(run_id) FROM runs {clause} "
                "GROUP BY name) ORDER BY run_id"
            )
        else:
            sql = f"SELECT * FROM runs {clause} ORDER BY run_id"
        return [_run(r) for r in self.conn.execute(sql, args)]

    def status_json(self, *, include_archived: bool = False, latest_only: bool = True) -> str:
        """What ``json.dumps([public(r) for r in self.runs(...)])`` gives for the same runs
        (one JSON array, oldest first), rendered by SQLite itself: ``orch status --json`` of
        10,000 runs without a Python object per run. The values equal :func:`public`'s (see
        :func:`_status_sql`); the text differs in spacing, and a fraction is printed with 15
        significant digits (SQLite's JSON) instead of Python's 17."""
        where = "" if include_archived else "WHERE archived=0"
        if latest_only:
            rows = f"SELECT MAX(run_id) FROM runs {where} GROUP BY name"
            sql = f"SELECT {_status_sql()} FROM runs WHERE run_id IN ({rows}) ORDER BY run_id"
        else:
            sql = f"SELECT {_status_sql()} FROM runs {where} ORDER BY run_id"
        return "[" + ", ".join(row[0] for row in self.conn.execute(sql)) + "]"

    def count_active(self) -> int:
        """How many runs are queued or running (the live agents ``max_agents`` caps)."""
        marks = ", ".join("?" for _ in ACTIVE)
        row = self.conn.execute(f"SELECT COUNT(*) FROM runs WHERE status IN ({marks})", ACTIVE)
        return int(row.fetchone()[0])

    def descendants(self, run_ids: Iterable[int]) -> list[Run]:
        """Every run launched, directly or not, by the runs ``run_ids`` (through
        ``parent_run``), oldest first; the runs themselves are not included."""
        ids = list(run_ids)
        if not ids:
            return []
        marks = ", ".join("?" for _ in ids)
        sql = (
            "WITH RECURSIVE tree(id) AS (SELECT run_id FROM runs WHERE parent_run IN "
            f"({marks}) UNION SELECT r.run_id FROM runs r JOIN tree t ON r.parent_run = t.id) "
            "SELECT * FROM runs WHERE run_id IN (SELECT id FROM tree) ORDER BY run_id"
        )
        return [_run(r) for r in self.conn.execute(sql, ids)]

    def count(self, status: str) -> int:
        return self.conn.execute("SELECT COUNT(*) FROM runs WHERE status=?", (status,)).fetchone()[
            0
        ]

    def update(self, run_id: int, **fields: object) -> None:
        """Set columns of a run (a ``handle`` is given as the :data:`Handle` itself)."""
        if not fields:
            return
        if "handle" in fields:
            fields["handle"] = encode_handle(fields["handle"])
        sets = ", ".join(f"{k}=?" for k in fields)
        self.conn.execute(f"UPDATE runs SET {sets} WHERE run_id=?", [*fields.values(), run_id])

    def finish(
        self,
        run_id: int,
        status: str,
        *,
        only_from: tuple[str, ...] = ACTIVE,
        claim_end: bool = False,
        if_handle: object = ...,
        **fields: object,
    ) -> bool:
        """Record a run's ending once: the first writer wins (a supervisor finishing while a
        cancel or a liveness check also decides is a normal race). ``claim_end``: claim the
        run's ``orch_agent_ended`` in the same statement, unless nobody listens to it
        (:data:`END_UNHEARD`; :meth:`end_claimed` tells which). ``if_handle`` (a handle, or
        None): only while the run's handle is still that one (a status read that found a
        starting run abandoned must not end it once its supervisor has checked in)."""
        assert status in FINAL, status
        fields.setdefault("ended_at", time.time())
        if "handle" in fields:
            fields["handle"] = encode_handle(fields["handle"])
        sets = ", ".join(f"{k}=?" for k in ("status", *fields))
        # Numbered in the statement that records the end: in commit order.
        sets += ", end_seq=(SELECT COALESCE(MAX(end_seq), 0) + 1 FROM runs)"
        if claim_end:
            sets += ", end_announced=CASE end_announced WHEN 0 THEN 1 ELSE end_announced END"
        marks = ", ".join("?" for _ in only_from)
        where, extra = f"run_id=? AND status IN ({marks})", []
        if if_handle is not ...:
            where += " AND handle IS ?"
            extra.append(encode_handle(if_handle))
        cur = self.conn.execute(
            f"UPDATE runs SET {sets} WHERE {where}",
            [status, *fields.values(), run_id, *only_from, *extra],
        )
        if cur.rowcount != 1:
            return False
        self._after_end(run_id, status)
        self._ended_pending = True
        if not self.conn.in_transaction:
            self._note_ended()
        return True

    def check_in(self, run_id: int, pid: int, start_time: int | None) -> bool:
        """A supervisor starting: whether its run is still to be run (``running``: it was not
        cancelled, or found abandoned, meanwhile). While the run's handle is still admission's
        placeholder (:data:`PLACEHOLDER_KEYS`: the process starting it may die before it
        records the real one), ``"supervisor": [pid, start_time]`` is added to it, so a
        status read follows this process instead of taking the run as abandoned. One
        transaction: a status read ending the run comes wholly before or after it."""
        with self.transaction():
            row = self.conn.execute(
                "SELECT status, handle FROM runs WHERE run_id=?", (run_id,)
            ).fetchone()
            if row is None or row["status"] != RUNNING:
                return False
            handle = decode_handle(row["handle"])
            if handle is None or any(key in handle for key in PLACEHOLDER_KEYS):
                handle = {**(handle or {"starting": True}), "supervisor": [pid, start_time]}
                self.conn.execute(
                    "UPDATE runs SET handle=? WHERE run_id=?", (encode_handle(handle), run_id)
                )
        return True

    def _after_end(self, run_id: int, status: str) -> None:
        """A run's end is recorded: copy what it cost into the ledger, and a run that completed
        without being rate-limited since the effective limit was last lowered raises it by one
        (up to its ``max_parallel``: then the limit is lifted)."""
        row = self.conn.execute("SELECT * FROM runs WHERE run_id=?", (run_id,)).fetchone()
        if row is None:
            return
        if row["cost_usd"] is not None or row["input_tokens"] is not None:
            cols = ", ".join(COST_COLUMNS)
            self.conn.execute(
                f"INSERT OR REPLACE INTO costs ({cols}) SELECT {cols} FROM runs WHERE run_id=?",
                (run_id,),
            )
        if status != COMPLETED or row["started_at"] is None:
            return
        state = self.admission_state()
        limit, lowered = state.get("effective_limit"), state.get("lowered_at") or 0.0
        if limit is None or (row["rate_limited_at"] or 0.0) >= lowered:
            return
        raised = None if limit + 1 >= row["max_parallel"] else limit + 1
        self.conn.execute("UPDATE admission SET effective_limit=? WHERE id=1", (raised,))

    def _note_ended(self) -> None:
        # Appended, not touched: two ends within one mtime tick must still change the file.
        self._ended_pending = False
        with contextlib.suppress(OSError), open(self.state_dir / ENDED_MARKER, "a") as fh:
            fh.write("x\n")

    # -- the end-of-run event ----------------------------------------------------------------

    def _unannounced_where(self, ended_before: float | None) -> tuple[str, list[object]]:
        marks = ", ".join("?" for _ in FINAL)
        where = f"end_announced=0 AND status IN ({marks})"
        args: list[object] = list(FINAL)
        if ended_before is not None:
            where += " AND ended_at < ?"
            args.append(ended_before)
        return where, args

    def mark_unheard(self, run_id: int) -> None:
        """No plugin listens to ``orch_agent_ended`` as the run starts: its end will not be
        announced (:data:`END_UNHEARD`), and its supervisor starts no process for it. A run
        that has already ended keeps its state."""
        self.conn.execute(
            "UPDATE runs SET end_announced=? WHERE run_id=? AND end_announced=0 AND status=?",
            (END_UNHEARD, run_id, RUNNING),
        )

    def end_claimed(self, run_id: int) -> bool:
        """Whether the run's ``orch_agent_ended`` is claimed (by whoever recorded its end)."""
        row = self.conn.execute(
            "SELECT end_announced FROM runs WHERE run_id=?", (run_id,)
        ).fetchone()
        return row is not None and row[0] == 1

    def unannounced(self, *, ended_before: float | None = None) -> bool:
        """Whether a run reached a final status and its ``orch_agent_ended`` event is not yet
        claimed (only runs that ended before ``ended_before``, epoch seconds, when given).
        One indexed read; no transaction."""
        where, args = self._unannounced_where(ended_before)
        row = self.conn.execute(f"SELECT 1 FROM runs WHERE {where} LIMIT 1", args).fetchone()
        return row is not None

    def claim_ended(self, *, ended_before: float | None = None) -> list[Run]:
        """Claim the ``orch_agent_ended`` event of every ended run not yet claimed (only those
        that ended before ``ended_before``, epoch seconds, when given), oldest end first.

        The read and the marking happen in one ``BEGIN IMMEDIATE`` transaction, so each run
        is returned to exactly one caller, across every process, ever: the caller then fires
        the event. A caller killed between the claim and the call loses that event."""
        where, args = self._unannounced_where(ended_before)
        with self.transaction():
            rows = self.conn.execute(
                f"SELECT * FROM runs WHERE {where} ORDER BY ended_at, run_id", args
            ).fetchall()
            if rows:
                ids = [row["run_id"] for row in rows]
                marks = ", ".join("?" for _ in ids)
                self.conn.execute(f"UPDATE runs SET end_announced=1 WHERE run_id IN ({marks})", ids)
        return [_run(row) for row in rows]

    # -- rate limits: the pause and the effective limit every admission shares ------------------

    def admission_state(self) -> dict[str, Any]:
        """``{paused_until, pause_status, pause_by, effective_limit, lowered_at}``: when new
        starts may go on (epoch seconds; None or past: not paused), the API status and agent
        that paused them, the effective parallel limit (None: each run's ``max_parallel``) and
        when it was last lowered. Empty values when nothing was ever rate-limited."""
        row = self.conn.execute("SELECT * FROM admission WHERE id=1").fetchone()
        if row is None:
            return dict.fromkeys(
                ("paused_until", "pause_status", "pause_by", "effective_limit", "lowered_at")
            )
        state = dict(row)
        del state["id"]
        return state

    def rate_limited(self, run_id: int, delay: float, status: int) -> float:
        """Run ``run_id`` met API status ``status`` (429, 529) and Claude Code retries after
        ``delay`` seconds: pause new starts until then (a longer pause already set stays), and
        when no pause was in effect (a new episode, not one more report of the same one) halve
        the effective limit, never below 1. The run is marked rate-limited and parked (see
        :meth:`may_go_on`). Returns the time the pause ends (epoch seconds)."""
        now = time.time()
        with self.transaction():
            row = self.conn.execute(
                "SELECT max_parallel FROM runs WHERE run_id=?", (run_id,)
            ).fetchone()
            cap = row[0] if row else 1
            state = self.admission_state()
            ongoing = pause_left(state, now) > 0
            until = max(now + max(0.0, delay), state["paused_until"] or 0.0 if ongoing else 0.0)
            limit, lowered = state["effective_limit"], state["lowered_at"]
            if not ongoing:
                running = self.count(RUNNING)
                limit = max(1, min(limit or cap, max(running, 1)) // 2)
                lowered = now
            self.conn.execute(
                "INSERT INTO admission (id, paused_until, pause_status, pause_by, "
                "effective_limit, lowered_at) VALUES (1, ?, ?, ?, ?, ?) ON CONFLICT(id) DO "
                "UPDATE SET paused_until=excluded.paused_until, pause_status=excluded.pause_status,"
                " pause_by=excluded.pause_by, effective_limit=excluded.effective_limit, "
                "lowered_at=excluded.lowered_at",
                (until, status, self._name_of(run_id), limit, lowered),
            )
            self.conn.execute(
                "UPDATE runs SET api_retries=api_retries+1, rate_limited_at=?, parked=1 "
                "WHERE run_id=?",
                (now, run_id),
            )
        return until

    def set_waiting(self, run_id: int, what: str | None) -> bool:
        """Mark a run as waiting for a person (``what``: Claude Code's message), or clear the
        mark (None). Only a change is written; returns whether there was one."""
        if what is None:
            cur = self.conn.execute(
                "UPDATE runs SET waiting_for=NULL, waiting_since=NULL WHERE run_id=? "
                "AND waiting_for IS NOT NULL",
                (run_id,),
            )
        else:
            cur = self.conn.execute(
                "UPDATE runs SET waiting_for=?, waiting_since=? WHERE run_id=? "
                "AND (waiting_for IS NULL OR waiting_for != ?)",
                (what, time.time(), run_id, what),
            )
        return cur.rowcount == 1

    def waiting_runs(self) -> list[Run]:
        """Running agents that wait for a person, longest waiting first."""
        return [
            _run(r)
            for r in self.conn.execute(
                "SELECT * FROM runs WHERE status=? AND waiting_for IS NOT NULL "
                "ORDER BY waiting_since",
                (RUNNING,),
            )
        ]

    def _name_of(self, run_id: int) -> str | None:
        row = self.conn.execute("SELECT name FROM runs WHERE run_id=?", (run_id,)).fetchone()
        return row[0] if row else None

    def may_go_on(self, run_id: int) -> bool:
        """Whether a parked run (rate-limited, its claude held) may send its retry now: the
        pause has passed and fewer than the effective limit of running agents are unparked.
        Marks it unparked when so (one transaction: two never take the last place)."""
        with self.transaction():
            state = self.admission_state()
            if pause_left(state, time.time()) > 0:
                return False
            limit = state["effective_limit"]
            if limit is not None:
                going = self.conn.execute(
                    "SELECT COUNT(*) FROM runs WHERE status=? AND parked=0 AND run_id!=?",
                    (RUNNING, run_id),
                ).fetchone()[0]
                if going >= limit:
                    return False
            self.conn.execute("UPDATE runs SET parked=0 WHERE run_id=?", (run_id,))
        return True

    def pause_left(self) -> float:
        """Seconds until new starts (and whole-run retries) may go on; 0 when not paused."""
        return pause_left(self.admission_state(), time.time())

    # -- the cost ledger ----------------------------------------------------------------------

    def costs(
        self,
        names: Iterable[str] = (),
        *,
        since: float | None = None,
        include_gone: bool = False,
    ) -> list[dict[str, Any]]:
        """Ledger rows (:data:`COST_COLUMNS`, ``models`` decoded), oldest end first: of the
        runs ``names`` (default all), ended at or after ``since`` (epoch seconds); by default
        only runs still listed (not archived, not cleared), with ``include_gone`` all."""
        where: list[str] = []
        args: list[object] = []
        names = list(names)
        if names:
            where.append(f"c.name IN ({', '.join('?' for _ in names)})")
            args.extend(names)
        if since is not None:
            where.append("c.ended_at >= ?")
            args.append(since)
        join = ""
        if not include_gone:
            join = "JOIN runs r ON r.run_id = c.run_id"
            where.append("r.archived = 0")
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        cols = ", ".join(f"c.{c}" for c in COST_COLUMNS)
        out = []
        for row in self.conn.execute(
            f"SELECT {cols} FROM costs c {join} {clause} ORDER BY c.ended_at, c.run_id", args
        ):
            item = dict(row)
            item["models"] = decode_models(item["models"])
            out.append(item)
        return out

    def spent(self, since: float | None = None) -> float:
        """US dollars the ledger holds (every run ever recorded, cleared ones too), of runs
        that ended at or after ``since`` (epoch seconds) when given."""
        sql, args = "SELECT COALESCE(SUM(cost_usd), 0) FROM costs", list[object]()
        if since is not None:
            sql += " WHERE ended_at >= ?"
            args.append(since)
        return float(self.conn.execute(sql, args).fetchone()[0])

    def archive(self, run_ids: Iterable[int]) -> int:
        ids = list(run_ids)
        if not ids:
            return 0
        with self.transaction():
            cur = self.conn.execute(
                f"UPDATE runs SET archived=1 WHERE run_id IN ({', '.join('?' for _ in ids)})", ids
            )
        return cur.rowcount

    def delete(self, run_ids: Iterable[int]) -> list[Run]:
        ids = list(run_ids)
        if not ids:
            return []
        marks = ", ".join("?" for _ in ids)
        with self.transaction():
            rows = [
                _run(r)
                for r in self.conn.execute(f"SELECT * FROM runs WHERE run_id IN ({marks})", ids)
            ]
            self.conn.execute(f"DELETE FROM runs WHERE run_id IN ({marks})", ids)
        return rows

    # -- sessions ---------------------------------------------------------------------------

    def claim_session(self, run_id: int, session_id: str, *, fork_of: str | None = None) -> bool:
        """Whether ``session_id`` is the run's own session, attaching it if the run has none yet.

        A run's session id is set once, by the first report (a hook, the supervisor): a later
        session seen in the same environment (``/clear``, ``/resume`` to another session, a
        ``claude`` started by one of the agent's tools) never replaces it, and a fork never
        takes its source's id (``fork_of``: Claude Code 2.1.197 reports the source's id at a
        fork's SessionStart). False for an unknown run.
        """
        if fork_of and session_id == fork_of:
            return False
        with self.transaction():
            row = self.conn.execute(
                "SELECT session_id FROM runs WHERE run_id=?", (run_id,)
            ).fetchone()
            if row is None:
                return False
            if row[0] is None:
                self.conn.execute(
                    "UPDATE runs SET session_id=? WHERE run_id=?", (session_id, run_id)
                )
                return True
            return bool(row[0] == session_id)

    def record_session(
        self,
        session_id: str,
        *,
        event: str,
        cwd: str | None = None,
        source: str | None = None,
        transcript_path: str | None = None,
        run_id: int | None = None,
        ended: bool = False,
    ) -> None:
        now = time.time()
        with self.transaction():
            # A new session's notices start after the ends recorded so far: earlier ends are
            # not news to it.
            self.conn.execute(
                "INSERT INTO sessions (session_id, cwd, source, transcript_path, run_id, "
                "first_seen, last_event, last_event_at, notified_seq) VALUES (?, ?, ?, ?, ?, ?, "
                "?, ?, (SELECT COALESCE(MAX(end_seq), 0) FROM runs)) "
                "ON CONFLICT(session_id) DO UPDATE SET "
                "cwd=COALESCE(excluded.cwd, cwd), source=COALESCE(excluded.source, source), "
                "transcript_path=COALESCE(excluded.transcript_path, transcript_path), "
                "run_id=COALESCE(excluded.run_id, run_id), last_event=excluded.last_event, "
                "last_event_at=excluded.last_event_at",
                (session_id, cwd, source, transcript_path, run_id, now, event, now),
            )
            if ended:
                self.conn.execute(
                    "UPDATE sessions SET ended_at=? WHERE session_id=?", (now, session_id)
                )

    def session_runs(self, session_id: str, limit: int = 50) -> list[Run]:
        """The runs that recorded ``session_id`` as theirs, newest first (resumes of one
        session share it; a fork has its own)."""
        return [
            _run(r)
            for r in self.conn.execute(
                "SELECT * FROM runs WHERE session_id=? ORDER BY run_id DESC LIMIT ?",
                (session_id, limit),
            )
        ]

    def session(self, session_id: str) -> dict[str, Any] | None:
        row = self.conn.execute(
            "SELECT * FROM sessions WHERE session_id=?", (session_id,)
        ).fetchone()
        return dict(row) if row else None

    def ended_after(self, seq: int) -> list[Run]:
        """Runs whose end was recorded after the end numbered ``seq`` (``end_seq``), in the
        order their ends were recorded."""
        return [
            _run(r)
            for r in self.conn.execute(
                "SELECT * FROM runs WHERE end_seq > ? ORDER BY end_seq", (seq,)
            )
        ]

    def mark_notified(self, session_id: str, upto: int) -> None:
        """Remember that a session was told of every end numbered up to ``upto`` (never moved
        back), and when (``notified_at``)."""
        with self.transaction():
            self.conn.execute(
                "UPDATE sessions SET notified_seq=MAX(COALESCE(notified_seq, 0), ?), "
                "notified_at=? WHERE session_id=?",
                (upto, time.time(), session_id),
            )

    # -- the board and messages ---------------------------------------------------------------

    def post(
        self, author: str, text: str, *, run_id: int | None = None, session_id: str | None = None
    ) -> dict[str, Any]:
        """Add a post to the project's board; returns it as :meth:`board` does."""
        with self.transaction():
            cur = self.conn.execute(
                "INSERT INTO board (author, run_id, session_id, text, posted_at) "
                "VALUES (?, ?, ?, ?, ?)",
                (author, run_id, session_id, text, time.time()),
            )
            post_id = cur.lastrowid
        with contextlib.suppress(OSError), open(self.state_dir / BOARD_MARKER, "a") as fh:
            fh.write("x\n")
        return self.board(since=(post_id or 1) - 1, limit=1)[0]

    def board(self, *, since: int = 0, limit: int | None = None) -> list[dict[str, Any]]:
        """Board posts with an id above ``since``, oldest first: ``{post_id, author, run_id,
        session_id, text, posted_at}`` (``posted_at`` in epoch seconds)."""
        sql = "SELECT * FROM board WHERE post_id > ? ORDER BY post_id"
        args: list[object] = [since]
        if limit is not None:
            sql += " LIMIT ?"
            args.append(limit)
        return [dict(r) for r in self.conn.execute(sql, args)]

    def add_message(self, run_id: int, sender: str, text: str) -> dict[str, Any]:
        """Record a message sent to a run; returns ``{message_id, run_id, sender, text,
        sent_at}``."""
        now = time.time()
        with self.transaction():
            cur = self.conn.execute(
                "INSERT INTO messages (run_id, sender, text, sent_at) VALUES (?, ?, ?, ?)",
                (run_id, sender, text, now),
            )
        return {
            "message_id": cur.lastrowid,
            "run_id": run_id,
            "sender": sender,
            "text": text,
            "sent_at": now,
        }

    def messages(self, run_id: int) -> list[dict[str, Any]]:
        """The messages sent to a run, oldest first (as :meth:`add_message` returns them)."""
        return [
            dict(r)
            for r in self.conn.execute(
                "SELECT * FROM messages WHERE run_id=? ORDER BY message_id", (run_id,)
            )
        ]

    def sessions(self) -> list[dict[str, Any]]:
        return [dict(r) for r in self.conn.execute("SELECT * FROM sessions ORDER BY first_seen")]


def pause_left(state: dict[str, Any], now: float) -> float:
    """Seconds left of the rate-limit pause in ``state`` (:meth:`Store.admission_state`) at
    ``now`` (epoch seconds); 0 when none. Never more than the pause was set for since its
    episode began (``paused_until - lowered_at``): a wall clock set back an hour must not hold
    every queued agent an hour (a clock set forward ends the pause early, which only costs a
    retry Claude Code itself still spaces out)."""
    until = state.get("paused_until") or 0.0
    left = until - now
    if left <= 0:
        return 0.0
    began = state.get("lowered_at")
    span = until - began if isinstance(began, (int, float)) else left
    return min(left, max(span, 0.0))


def encode_handle(handle: object) -> str | None:
    """A backend's handle (a :data:`Handle`) as the ``handle`` column holds it (JSON text).
    ``TypeError`` for what JSON cannot hold. A string is taken as JSON already encoded (what
    backends stored before handles were decoded by the store)."""
    if handle is None or isinstance(handle, str):
        return handle
    return json.dumps(handle)  # TypeError (before any write) for what is not JSON


def decode_handle(text: str | None) -> Handle | None:
    """The ``handle`` column as the backend wrote it; None when empty or not a JSON object."""
    if not text:
        return None
    try:
        handle = json.loads(text)
    except ValueError:
        return None
    return handle if isinstance(handle, dict) else None


def decode_changes(text: object) -> dict[str, Any] | None:
    """The ``changes`` column (JSON text, see :func:`orch_plugins.supervisor.save_work`) as an
    object: ``{"files", "insertions", "deletions", "commits", "head", "dirty", "branch"}``
    plus ``merged``/``discarded`` notes; None when absent or unreadable."""
    if not isinstance(text, str) or not text:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def decode_models(text: str | None) -> dict[str, Any]:
    """The ``models`` column: ``{model: {cost_usd, input_tokens, output_tokens,
    cache_read_tokens, cache_creation_tokens}}``; ``{}`` when empty or unreadable."""
    if not text:
        return {}
    try:
        models = json.loads(text)
    except ValueError:
        return {}
    return models if isinstance(models, dict) else {}


def _status_sql() -> str:
    """A ``json_object(...)`` expression over a ``runs`` row with :func:`public`'s fields and
    values: the time fields in ISO 8601 UTC (whole seconds, truncated as :func:`iso` does),
    ``usage`` as the JSON it holds (null when unreadable), ``archived`` a boolean,
    ``changes`` and ``models`` as objects (null when unreadable, or ``models`` empty)."""

    def valid_object(col: str, *, empty_is_null: bool = False) -> str:
        empty = f" AND json({col}) != '{{}}'" if empty_is_null else ""
        return (
            f"CASE WHEN json_valid({col}) THEN CASE WHEN json_type({col}) = 'object'{empty} "
            f"THEN json({col}) END END"
        )

    parts = []
    for key in STATUS_FIELDS:
        if key in _TIME_FIELDS:
            # datetime() then 'T': ~20 % faster than the equivalent strftime() here.
            expr = f"replace(datetime(CAST({key} AS INTEGER), 'unixepoch'), ' ', 'T') || '+00:00'"
        elif key == "usage":
            expr = "CASE WHEN json_valid(usage) THEN json(usage) END"
        elif key == "archived":
            expr = "json(CASE WHEN archived THEN 'true' ELSE 'false' END)"
        elif key == "changes":
            expr = valid_object(key)
        elif key == "models":
            expr = valid_object(key, empty_is_null=True)
        else:
            expr = key
        parts.append(f"'{key}', {expr}")
    return f"json_object({', '.join(parts)})"


def _run(row: sqlite3.Row) -> Run:
    """A ``runs`` row as a :class:`~orch_plugins.model.Run`: the one place a handle is decoded."""
    run = dict(row)
    run["handle"] = decode_handle(run["handle"])
    return cast("Run", run)


def shown_status(run: Run) -> str:
    """The status a person sees: ``queued`` for a run waiting in its backend's own queue
    (:data:`BACKEND_QUEUED`), else the recorded one."""
    status = run["status"]
    error = run.get("error")
    if status == RUNNING and isinstance(error, str) and error.startswith(BACKEND_QUEUED):
        return QUEUED
    return status


def public(run: Run) -> JSONObject:
    """The documented status object of a run (``orch status --json``)."""
    row = cast("dict[str, Any]", run)
    out = {k: row.get(k) for k in STATUS_FIELDS}
    out["status"] = shown_status(run)
    for key in _TIME_FIELDS:
        out[key] = iso(out[key])
    if isinstance(out["usage"], str):
        try:
            out["usage"] = json.loads(out["usage"])
        except ValueError:
            out["usage"] = None
    out["archived"] = bool(out["archived"])
    out["changes"] = decode_changes(out["changes"])
    out["models"] = decode_models(cast("str | None", out["models"])) or None
    return cast("JSONObject", out)

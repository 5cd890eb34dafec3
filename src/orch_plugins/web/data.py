"""What the dashboard shows, read from the store and a run's files: no web library here.

Everything is read from what the CLI reads (the store, ``events.jsonl``, ``output.md``), so the
page and ``orch status`` never disagree. Times are epoch seconds, costs US dollars (Claude
Code's ``total_cost_usd``, as recorded per run).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from orch_plugins.model import ACTIVE, FINAL, QUEUED, RUNNING, Run
from orch_plugins.progress import describe, money
from orch_plugins.store import Store

#: The run columns a row of the agents table shows: a row is sent again when one changes.
ROW_FIELDS = (
    "run_id",
    "name",
    "status",
    "role",
    "backend",
    "started_at",
    "ended_at",
    "created_at",
    "num_turns",
    "cost_usd",
    "last_activity",
    "tool_calls",
    "error",
    "archived",
)
#: The worktree columns (``orch launch --worktree``): shown only where some run has one.
OPTIONAL_FIELDS = ("worktree", "branch", "base", "changes")
#: At most this many timeline lines (the newest) on an agent page.
TIMELINE_MAX = 400


def host_of(run: Run) -> str:
    """Where the agent runs: the ssh host's configured name, else ``local``."""
    handle = run.get("handle") or {}
    host = handle.get("host") if isinstance(handle, dict) else None
    return str(host) if host else "local"


def row_key(run: Run) -> tuple[object, ...]:
    """What the agents table shows of a run: equal keys, equal rows."""
    row: dict[str, object] = dict(run)
    return (
        *(row.get(k) for k in ROW_FIELDS),
        *(row.get(k) for k in OPTIONAL_FIELDS),
        host_of(run),
    )


def changes_of(run: Run) -> dict[str, object]:
    """The run's worktree change summary (the ``changes`` column: files, insertions,
    deletions, commits, dirty, and ``merged``/``discarded`` notes); {} without one."""
    from orch_plugins.store import decode_changes

    return decode_changes(dict(run).get("changes")) or {}


def changes_line(run: Run) -> str:
    """``+12 -3 in 2 files`` (``*``: uncommitted changes), then ``merged``/``discarded``;
    ``-`` without a worktree."""
    if not dict(run).get("branch"):
        return "-"
    ch = changes_of(run)
    parts = []
    if "files" in ch:
        mark = "*" if ch.get("dirty") else ""
        parts.append(
            f"+{ch.get('insertions', 0)} -{ch.get('deletions', 0)} in {ch.get('files')} "
            f"file{'s' if ch.get('files') != 1 else ''}{mark}"
        )
    if ch.get("merged"):
        parts.append("merged")
    if ch.get("discarded"):
        parts.append("discarded")
    return ", ".join(parts) or "no changes recorded yet"


def has_column(runs: Iterable[Run], column: str) -> bool:
    """Whether any run has a value in ``column`` (a column is shown only where data exists)."""
    return any(dict(r).get(column) for r in runs)


def fmt_time(ts: float | None) -> str:
    """An epoch time as local ``HH:MM:SS`` (with the date when not today); ``-`` when None."""
    if not ts:
        return "-"
    t = time.localtime(ts)
    if time.strftime("%Y-%m-%d", t) == time.strftime("%Y-%m-%d"):
        return time.strftime("%H:%M:%S", t)
    return time.strftime("%Y-%m-%d %H:%M", t)


def elapsed(run: Run, now: float | None = None) -> str:
    """How long the run ran (or has run so far): ``42s``, ``3m``, ``2h05m``."""
    start = run.get("started_at") or run.get("created_at")
    end = run.get("ended_at") or (now or time.time())
    secs = max(0.0, end - start) if start else 0.0
    if secs < 120:
        return f"{secs:.0f}s"
    if secs < 7200:
        return f"{secs / 60:.0f}m"
    return f"{int(secs // 3600)}h{int(secs % 3600 // 60):02d}m"


@dataclass
class Admission:
    """The queue and admission state: counts by status, the parallel limit, who waits."""

    running: int = 0
    queued: int = 0
    max_parallel: int = 0
    waiting: list[str] = field(default_factory=list)
    #: Why admission holds queued agents back, when something says so (a budget, a rate-limit
    #: pause); None when agents wait only for a free slot.
    paused: str | None = None


def admission_state(runs: list[Run], max_parallel: int) -> Admission:
    """The admission summary of the listed runs (each name's newest)."""
    state = Admission(max_parallel=max_parallel)
    for run in runs:
        if run["status"] == RUNNING:
            state.running += 1
        elif run["status"] == QUEUED:
            state.queued += 1
            state.waiting.append(run["name"])
    return state


@dataclass
class Costs:
    """Cost totals: overall and per agent name, role and day (local date), in US dollars,
    from every recorded run (archived ones included); tokens from Claude Code's usage."""

    total: float = 0.0
    runs: int = 0
    priced: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    by_agent: dict[str, float] = field(default_factory=dict)
    by_role: dict[str, float] = field(default_factory=dict)
    by_day: dict[str, float] = field(default_factory=dict)

    def chart(self) -> dict[str, dict[str, list[object]]]:
        """The three series as ``{"agent"|"role"|"day": {"labels": [...], "values": [...]}}``;
        agents and roles by cost, largest first (at most 30), days in order."""

        def series(d: dict[str, float], by_cost: bool) -> dict[str, list[object]]:
            items = sorted(d.items(), key=lambda kv: -kv[1]) if by_cost else sorted(d.items())
            items = items[:30] if by_cost else items
            return {"labels": [k for k, _ in items], "values": [round(v, 6) for _, v in items]}

        return {
            "agent": series(self.by_agent, True),
            "role": series(self.by_role, True),
            "day": series(self.by_day, False),
        }


def costs(runs: Iterable[Run]) -> Costs:
    """Add up ``runs`` (see :class:`Costs`); a run without a cost counts as a run only."""
    out = Costs()
    for run in runs:
        out.runs += 1
        cost = run.get("cost_usd")
        if run.get("usage"):
            try:
                usage = json.loads(run["usage"] or "")
                out.input_tokens += int(usage.get("input_tokens") or 0)
                out.output_tokens += int(usage.get("output_tokens") or 0)
            except (ValueError, TypeError, AttributeError):
                pass
        if cost is None:
            continue
        out.priced += 1
        out.total += cost
        out.by_agent[run["name"]] = out.by_agent.get(run["name"], 0.0) + cost
        role = run.get("role") or "(none)"
        out.by_role[role] = out.by_role.get(role, 0.0) + cost
        day = time.strftime("%Y-%m-%d", time.localtime(run["created_at"]))
        out.by_day[day] = out.by_day.get(day, 0.0) + cost
    return out


def timeline(log_path: str, limit: int = TIMELINE_MAX) -> list[str]:
    """What happened in a run, one line per event worth a line (``orch logs`` wording, from
    :func:`orch_plugins.progress.describe`): the newest ``limit`` lines of ``events.jsonl``."""
    lines: list[str] = []
    try:
        with open(log_path, "rb") as fh:
            for raw in fh:
                try:
                    event = json.loads(raw)
                except ValueError:
                    continue
                if isinstance(event, dict):
                    lines.extend(describe(event))
    except OSError:
        return []
    return lines[-limit:]


def read_output(run: Run, limit: int = 2_000_000) -> str | None:
    """The run's final result text (``output.md``), at most ``limit`` bytes; None when absent."""
    try:
        with open(run["output_path"], "rb") as fh:
            return fh.read(limit).decode("utf-8", "replace")
    except OSError:
        return None


@dataclass
class Lineage:
    """Where a run comes from and what came of it: its ``parent`` (``NAME#RUN_ID`` for a
    resume, the ``--from`` reference for a fork), the earlier runs of the same name, and runs
    whose parent is this agent (forks and resumes of it)."""

    parent: str | None
    parent_run: int | None
    earlier: list[Run]
    children: list[Run]


def lineage(store: Store, run: Run) -> Lineage:
    """The :class:`Lineage` of ``run`` from the store."""
    parent = run.get("parent")
    parent_run = None
    if parent and "#" in parent:
        try:
            parent_run = int(parent.rsplit("#", 1)[1])
        except ValueError:
            parent_run = None
    elif parent:
        found = store.latest(parent)
        parent_run = found["run_id"] if found else None
    same = store.runs([run["name"]], include_archived=True, latest_only=False)
    earlier = [r for r in same if r["run_id"] != run["run_id"]]
    name = run["name"]
    rows = store.conn.execute(
        "SELECT run_id FROM runs WHERE (parent=? OR parent LIKE ?) AND name<>? ORDER BY run_id",
        (name, f"{name}#%", name),
    ).fetchall()
    children = [store.get_run(r[0]) for r in rows]
    return Lineage(parent, parent_run, earlier, children)


def is_active(run: Run) -> bool:
    return run["status"] in ACTIVE


def is_final(run: Run) -> bool:
    return run["status"] in FINAL


__all__ = [
    "Admission",
    "Costs",
    "Lineage",
    "admission_state",
    "changes_line",
    "changes_of",
    "costs",
    "elapsed",
    "fmt_time",
    "has_column",
    "host_of",
    "is_active",
    "is_final",
    "lineage",
    "money",
    "read_output",
    "row_key",
    "timeline",
]

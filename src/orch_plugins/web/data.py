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
from typing import Any

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
    """The queue and admission state: counts by status, the parallel limit (and the lower
    one rate limits left, :func:`orch_plugins.costs.admission`), who waits, and why nothing
    starts when something holds starts back (a rate-limit pause, a spent budget)."""

    running: int = 0
    queued: int = 0
    max_parallel: int = 0
    effective_limit: int = 0
    waiting: list[str] = field(default_factory=list)
    #: Why admission holds queued agents back (a rate-limit pause, a spent budget); None when
    #: agents wait only for a free slot.
    paused: str | None = None
    #: The project budget, one line per limit set (``[budget]`` in config.toml).
    budget: list[str] = field(default_factory=list)


def admission_state(
    runs: list[Run],
    fleet: dict[str, Any],
    budget: dict[str, dict[str, float]],
) -> Admission:
    """The admission summary of the listed runs (each name's newest), with ``fleet`` as
    :func:`orch_plugins.costs.admission` and ``budget`` as :func:`orch_plugins.costs.budget`
    give them."""
    state = Admission(
        max_parallel=int(fleet["max_parallel"]), effective_limit=int(fleet["effective_limit"])
    )
    for run in runs:
        if run["status"] == RUNNING:
            state.running += 1
        elif run["status"] == QUEUED:
            state.queued += 1
            state.waiting.append(run["name"])
    if fleet.get("paused_until"):
        state.paused = (
            f"rate limited: no agent starts for {fleet['pause_left_s']:.0f} s more "
            f"(HTTP {fleet['pause_status']} from {fleet['pause_by']})"
        )
    for key, figures in budget.items():
        when = " today (UTC)" if key == "daily_usd" else ""
        left = figures["limit"] - figures["spent"]
        line = f"budget {key}: {money(figures['spent'])}{when} of {money(figures['limit'])}"
        state.budget.append(line + (f" ({money(left)} left)" if left > 0 else " (spent)"))
        if left <= 0:
            state.paused = f"project budget {key} spent: new launches are refused"
    return state


def cost_chart(rows: list[dict[str, Any]]) -> dict[str, dict[str, list[object]]]:
    """The cost ledger's rows (:meth:`orch_plugins.store.Store.costs`) grouped as ``orch cost
    --by`` groups them (:func:`orch_plugins.costs.group`), for charts: ``{"agent"|"role"|
    "model"|"day": {"labels": [...], "values": [US dollars]}}``; agents, roles and models by
    cost, largest first (at most 30), days (UTC) in order."""
    from orch_plugins.costs import group

    out: dict[str, dict[str, list[object]]] = {}
    for by in ("agent", "role", "model", "day"):
        entries = group(rows, by)
        if by == "day":
            entries.sort(key=lambda e: str(e["key"]))
        else:
            entries = sorted(entries, key=lambda e: -float(e["cost_usd"]))[:30]
        out[by] = {
            "labels": [e["key"] for e in entries],
            "values": [round(float(e["cost_usd"]), 6) for e in entries],
        }
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
    "Lineage",
    "admission_state",
    "changes_line",
    "changes_of",
    "cost_chart",
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

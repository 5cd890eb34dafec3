"""The cost ledger read back: spend grouped by agent, role, model, day or parent; the project
budget against what was spent; the admission state (a rate-limit pause, the effective limit).

The ledger itself is the store's ``costs`` table: one row per run whose end recorded a cost or
tokens (:meth:`orch_plugins.store.Store.finish` copies it from the run), kept when ``orch
clear`` forgets the run, so ``orch cost --all`` and the budget still count that money.
Figures come from Claude Code's ``result`` event (``total_cost_usd``, ``modelUsage``): what
Claude Code itself computed, at its list prices; interactive agents report tokens only.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Any

from orch_plugins.config import Config
from orch_plugins.errors import OrchError
from orch_plugins.store import TOKEN_FIELDS, Store, iso

#: What ``orch cost --by`` groups on.
GROUPINGS = ("agent", "role", "model", "day", "parent")


def parse_since(text: str) -> float:
    """``--since``: ``YYYY-MM-DD`` (UTC midnight) or an ISO 8601 time (UTC unless it names
    its zone), as epoch seconds; :class:`OrchError` otherwise."""
    try:
        when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise OrchError(f"--since {text!r}: expected a date (2026-12-01) or an ISO time") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when.timestamp()


def _key(row: dict[str, Any], by: str) -> str:
    if by == "agent":
        return str(row["name"])
    if by == "day":
        return (iso(row["ended_at"]) or "-")[:10]
    value = row.get(by)
    return str(value) if value else "-"


def _empty(key: str) -> dict[str, Any]:
    return {"key": key, "runs": 0, "cost_usd": 0.0, **dict.fromkeys(TOKEN_FIELDS, 0)}


def group(rows: list[dict[str, Any]], by: str = "agent") -> list[dict[str, Any]]:
    """Ledger rows summed per ``by`` (:data:`GROUPINGS`), in first-seen order:
    ``[{key, runs, cost_usd, input_tokens, output_tokens, cache_read_tokens,
    cache_creation_tokens}]``. By model, a run's cost and tokens are split over the models it
    used (``modelUsage``); a run that names none counts under its requested model, else "-"."""
    if by not in GROUPINGS:
        raise OrchError(f"--by {by!r}: expected one of {', '.join(GROUPINGS)}")
    groups: dict[str, dict[str, Any]] = {}
    for row in rows:
        if by == "model" and row.get("models"):
            parts = [
                (model, {"cost_usd": use.get("cost_usd") or 0.0, **use})
                for model, use in row["models"].items()
            ]
        else:
            parts = [(_key(row, by) if by != "model" else row.get("model") or "-", row)]
        for key, part in parts:
            entry = groups.setdefault(key, _empty(key))
            entry["runs"] += 1
            entry["cost_usd"] += part.get("cost_usd") or 0.0
            for field in TOKEN_FIELDS:
                entry[field] += part.get(field) or 0
    return list(groups.values())


def total(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Every row summed (``key`` "total"; ``runs`` counts runs once)."""
    entry = _empty("total")
    for row in rows:
        entry["runs"] += 1
        entry["cost_usd"] += row.get("cost_usd") or 0.0
        for field in TOKEN_FIELDS:
            entry[field] += row.get(field) or 0
    return entry


def budget(store: Store, config: Config) -> dict[str, dict[str, float]]:
    """The project budget against the ledger: ``{"daily_usd": {"limit", "spent"}, "total_usd":
    {...}}`` for the limits set in ``[budget]`` (days are UTC days)."""
    out: dict[str, dict[str, float]] = {}
    if "daily_usd" in config.budget:
        day = time.time() // 86400 * 86400
        out["daily_usd"] = {"limit": config.budget["daily_usd"], "spent": store.spent(since=day)}
    if "total_usd" in config.budget:
        out["total_usd"] = {"limit": config.budget["total_usd"], "spent": store.spent()}
    return out


def report(
    store: Store,
    config: Config,
    names: list[str] | None = None,
    *,
    by: str = "agent",
    since: str | None = None,
    include_gone: bool = False,
) -> dict[str, Any]:
    """What ``orch cost --json`` prints (and the MCP ``cost`` tool returns): ``{"by": KEY,
    "groups": [{key, runs, cost_usd, *tokens}], "total": {...}, "budget": {limit: {spent,
    limit}}}`` for the runs of ``names`` (all when empty) that ended since ``since`` (ISO 8601,
    UTC). ``OrchError`` for an unknown ``by`` or a date it cannot read."""
    rows = store.costs(
        names or [], since=parse_since(since) if since else None, include_gone=include_gone
    )
    return {
        "by": by,
        "groups": group(rows, by),
        "total": total(rows),
        "budget": budget(store, config),
    }


def admission(store: Store, config: Config) -> dict[str, Any]:
    """What admission works with now: ``{max_parallel, effective_limit, paused_until (ISO or
    None), pause_left_s, pause_status, pause_by}``; ``effective_limit`` is ``max_parallel``
    when no rate limit lowered it."""
    state = store.admission_state()
    left = store.pause_left()
    limit = state["effective_limit"]
    return {
        "max_parallel": config.max_parallel,
        "effective_limit": min(limit, config.max_parallel) if limit else config.max_parallel,
        "paused_until": iso(state["paused_until"]) if left > 0 else None,
        "pause_left_s": round(left, 1),
        "pause_status": state["pause_status"] if left > 0 else None,
        "pause_by": state["pause_by"] if left > 0 else None,
    }

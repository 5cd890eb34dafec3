"""Money and limits: ``orch cost`` (the cost ledger) and ``orch limits`` (admission, budget)."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:
    from orch_plugins.core import Orchestrator

app = typer.Typer()


def _orch() -> Orchestrator:
    from orch_plugins.core import Orchestrator

    return Orchestrator()


def _row(entry: dict[str, Any]) -> tuple[str, ...]:
    from orch_plugins.cli.agents import tokens
    from orch_plugins.progress import money

    return (
        str(entry["key"]),
        str(entry["runs"]),
        money(entry["cost_usd"]),
        tokens(entry["input_tokens"]),
        tokens(entry["output_tokens"]),
        tokens(entry["cache_read_tokens"]),
        tokens(entry["cache_creation_tokens"]),
    )


def budget_lines(report: dict[str, dict[str, float]]) -> list[str]:
    from orch_plugins.progress import money

    lines = []
    for key, figures in report.items():
        when = " today (UTC)" if key == "daily_usd" else ""
        left = figures["limit"] - figures["spent"]
        state = f"{money(left)} left" if left > 0 else "SPENT: new launches are refused"
        lines.append(
            f"budget {key}: {money(figures['spent'])}{when} of {money(figures['limit'])} ({state})"
        )
    return lines


@app.command()
def cost(
    names: list[str] | None = typer.Argument(
        None, metavar="NAME...", help="Agents to count (default: all)."
    ),
    by: str = typer.Option(
        "agent", "--by", metavar="KEY", help="Group by agent, role, model, day or parent."
    ),
    since: str | None = typer.Option(
        None, "--since", metavar="DATE", help="Only runs that ended since DATE (UTC; ISO 8601)."
    ),
    show_all: bool = typer.Option(
        False, "--all", "-a", help="Include archived and cleared runs (the whole ledger)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """What agents cost: US dollars and tokens per group, the total, and the project budget."""
    from orch_plugins import costs

    orch = _orch()
    data = costs.report(orch.store, orch.config, names, by=by, since=since, include_gone=show_all)
    if as_json:
        typer.echo(json.dumps(data, indent=2 if sys.stdout.isatty() else None))
        return
    report = data["budget"]
    table: list[tuple[str, ...]] = [
        (by.upper(), "RUNS", "COST", "INPUT", "OUTPUT", "CACHE READ", "CACHE WRITE")
    ]
    table += [_row(g) for g in data["groups"]]
    table.append(_row({**data["total"], "key": "TOTAL"}))
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    for r in table:
        typer.echo("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    for line in budget_lines(report):
        typer.echo(line)


def admission_line(orch: Orchestrator) -> str:
    """``admission: paused 3.2 s more (429 from agent3); effective limit 2 of 4``, or "" when
    admission runs at the full limit, unpaused."""
    from orch_plugins import costs

    state = costs.admission(orch.store, orch.config)
    parts = []
    if state["paused_until"]:
        parts.append(
            f"paused {state['pause_left_s']:.1f} s more ({state['pause_status']} from "
            f"{state['pause_by']}): no agent starts until then"
        )
    if state["effective_limit"] < state["max_parallel"]:
        parts.append(
            f"effective limit {state['effective_limit']} of {state['max_parallel']} "
            "(lowered after rate limits)"
        )
    return f"admission: {'; '.join(parts)}" if parts else ""


@app.command()
def limits(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Admission's state (rate-limit pause, effective parallel limit) and the project budget."""
    from orch_plugins import costs

    orch = _orch()
    state = costs.admission(orch.store, orch.config)
    report = costs.budget(orch.store, orch.config)
    if as_json:
        typer.echo(json.dumps({"admission": state, "budget": report}))
        return
    typer.echo(admission_line(orch) or f"admission: not paused; limit {state['max_parallel']}")
    for line in budget_lines(report) or ["budget: none set ([budget] in config.toml)"]:
        typer.echo(line)

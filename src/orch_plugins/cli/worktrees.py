"""Worktree commands: diff, merge, discard (the way back from an agent's worktree)."""

from __future__ import annotations

import json
import sys

import typer

app = typer.Typer()


@app.command()
def diff(
    name: str = typer.Argument(..., metavar="NAME", help="Agent with a worktree."),
    stat: bool = typer.Option(False, "--stat", help="Print a diffstat instead of the patch."),
    as_json: bool = typer.Option(
        False, "--json", help="Print the change summary and the changed files as JSON."
    ),
) -> None:
    """Show what an agent changed in its worktree against its base (a running agent: its
    worktree as it is now)."""
    from orch_plugins.core import Orchestrator

    run, text, summary = Orchestrator().diff(name, stat=stat)
    if as_json:
        data = {"name": run["name"], "branch": run["branch"], "base": run["base"], **summary}
        typer.echo(json.dumps(data, ensure_ascii=False))
        return
    sys.stdout.write(text)
    sys.stdout.flush()


@app.command()
def merge(
    name: str = typer.Argument(..., metavar="NAME", help="Agent whose branch to merge."),
    squash: bool = typer.Option(False, "--squash", help="Squash the branch into one commit."),
    into: str | None = typer.Option(
        None, "--into", metavar="BRANCH", help="Merge into BRANCH (default: the checked-out one)."
    ),
    message: str | None = typer.Option(
        None, "--message", "-m", metavar="M", help="Message of the merge (or squash) commit."
    ),
) -> None:
    """Merge an ended agent's branch into the main checkout's branch. Refused when that
    checkout has uncommitted changes; a conflict is aborted (nothing half-merged) and exits 1."""
    from orch_plugins.core import Orchestrator
    from orch_plugins.worktrees import Conflict

    orch = Orchestrator()
    try:
        result = orch.merge(name, into=into, squash=squash, message=message)
    except Conflict as exc:
        print(f"orch: conflict: {exc}", file=sys.stderr)
        raise typer.Exit(1) from None
    typer.echo(f"{name}: {result.summary()}")


@app.command()
def discard(
    name: str = typer.Argument(..., metavar="NAME", help="Agent whose worktree to remove."),
    force: bool = typer.Option(
        False, "--force", help="Also when its branch holds unmerged or uncommitted work."
    ),
) -> None:
    """Remove an ended agent's worktree and branch (refused while they hold unmerged work,
    unless --force)."""
    from orch_plugins.core import Orchestrator

    run = Orchestrator().discard(name, force=force)
    typer.echo(f"{name}: removed its worktree and branch {run['branch']}")

"""Plugin commands: backends, roles, plugins."""

from __future__ import annotations

import json
from typing import Any

import typer

app = typer.Typer()


@app.command()
def backends(
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    options: bool = typer.Option(
        False, "--options", help="Also list each backend's launch options (-o KEY=VALUE)."
    ),
) -> None:
    """List registered backends and the plugin each comes from."""
    from orch_plugins.plugins import get_plugins

    registry, _ = get_plugins().everything()
    rows: list[dict[str, Any]] = [
        {"name": n, "description": registry[n].description, "source": registry.owner(n)}
        for n in registry.names()
    ]
    if options:
        for row in rows:
            row["options"] = [
                {
                    "key": o.key,
                    "type": o.type.__name__,
                    "flag": o.flag,
                    "selects_backend": o.selects_backend,
                    "help": o.help,
                }
                for o in registry[row["name"]].options
            ]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        typer.echo(f"{row['name']:<14} {row['description']}  [{row['source']}]")
        for o in row.get("options", []):
            flag = f" ({o['flag']})" if o["flag"] else ""
            typer.echo(f"{'':<14} -o {o['key']}={o['type'].upper()}{flag}  {o['help']}")


@app.command()
def roles(
    show: str | None = typer.Option(None, "--show", metavar="ROLE", help="Print one role in full."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """List agent roles (built-in, .claude/agents/*.md, plugins)."""
    from orch_plugins.plugins import get_plugins

    plugins = get_plugins()
    if show:
        role = plugins.role(show)
        data = {**role.to_json(), "source": role.source or plugins.roles().owner(show)}
        if as_json:
            typer.echo(json.dumps(data, indent=2))
            return
        for key in ("name", "description", "source", "model", "permission_mode"):
            typer.echo(f"{key}: {data[key] or '-'}")
        typer.echo(f"allowed_tools: {', '.join(data['allowed_tools']) or '-'}")
        typer.echo(f"disallowed_tools: {', '.join(data['disallowed_tools']) or '-'}")
        typer.echo(f"task_template: {data['task_template']}")
        typer.echo(f"system_prompt:\n{data['system_prompt']}")
        return
    rows = plugins.role_summaries()
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        # A description may span lines (a YAML block scalar): the list shows its first.
        first = row["description"].strip().split("\n", 1)[0]
        typer.echo(f"{row['name']:<18} {first}  [{row['source']}]")


@app.command()
def plugins(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List loaded plugins, where each comes from and the hooks it implements."""
    from dataclasses import asdict

    from orch_plugins.plugins import get_plugins

    infos = get_plugins().plugin_infos()
    if as_json:
        typer.echo(json.dumps([asdict(i) for i in infos], indent=2))
        return
    for info in infos:
        state = f"FAILED: {info.error}" if info.error else ", ".join(info.hooks)
        typer.echo(f"{info.name:<16} {info.source}\n{'':<16} {state}")

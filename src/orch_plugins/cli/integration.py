"""Claude Code integration commands: install, uninstall, sessions, start, slash."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import typer

from orch_plugins.errors import OrchError

app = typer.Typer()

PROJECT_OPT = typer.Option(
    None,
    "--project",
    metavar="DIR",
    help="Project whose .claude/ to use (default: the current one).",
)
USER_OPT = typer.Option(False, "--user", help="Use the user's ~/.claude/ instead.")
DRY_RUN_OPT = typer.Option(False, "--dry-run", help="Print what would change; change nothing.")


def _target(project: Path | None, user: bool) -> Any:
    from orch_plugins import install

    if user and project is not None:
        raise OrchError("give --project or --user, not both")
    return install.user_target() if user else install.project_target(project)


@app.command("install")
def install_cmd(
    project: Path | None = PROJECT_OPT,
    user: bool = USER_OPT,
    uninstall: bool = typer.Option(False, "--uninstall", help="Remove what an install added."),
    dry_run: bool = DRY_RUN_OPT,
    force: bool = typer.Option(
        False, "--force", help="Replace files of the same name (a backup is kept)."
    ),
) -> None:
    """Install the slash commands and hooks into Claude Code (what install.py does)."""
    from orch_plugins import install

    install.run(
        _target(project, user), uninstall=uninstall, dry_run=dry_run, force=force, echo=typer.echo
    )


@app.command("uninstall")
def uninstall_cmd(
    project: Path | None = PROJECT_OPT, user: bool = USER_OPT, dry_run: bool = DRY_RUN_OPT
) -> None:
    """Remove exactly what 'orch install' added; everything else stays as it was."""
    from orch_plugins import install

    install.run(_target(project, user), uninstall=True, dry_run=dry_run, echo=typer.echo)


def _ago(ts: float | None) -> str:
    if not ts:
        return "-"
    secs = max(0.0, time.time() - ts)
    if secs < 120:
        return f"{secs:.0f}s ago"
    if secs < 7200:
        return f"{secs / 60:.0f}m ago"
    if secs < 2 * 86400:
        return f"{secs / 3600:.0f}h ago"
    return f"{secs / 86400:.0f}d ago"


@app.command()
def sessions(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List the Claude Code sessions the hooks recorded in this project (newest last).

    Any of them can seed a new agent: 'orch launch NAME --from SESSION_ID TASK'.
    """
    from orch_plugins.store import Store, iso

    store = Store.open()
    names = {r["run_id"]: r["name"] for r in store.runs(include_archived=True, latest_only=False)}
    rows = []
    for s in store.sessions():
        rows.append(
            {
                "session_id": s["session_id"],
                "agent": names.get(s["run_id"]) if s["run_id"] is not None else None,
                "run_id": s["run_id"],
                "cwd": s["cwd"],
                "source": s["source"],
                "transcript_path": s["transcript_path"],
                "first_seen": iso(s["first_seen"]),
                "last_event": s["last_event"],
                "last_event_at": iso(s["last_event_at"]),
                "ended_at": iso(s["ended_at"]),
                "_last": s["last_event_at"],
            }
        )
    if as_json:
        out = [{k: v for k, v in r.items() if not k.startswith("_")} for r in rows]
        typer.echo(json.dumps(out, indent=2, ensure_ascii=False))
        return
    if not rows:
        typer.echo("no sessions recorded (hooks record them once 'orch install' has run)")
        return
    table = [("SESSION", "AGENT", "SOURCE", "LAST EVENT", "WHEN", "CWD")]
    for r in rows:
        table.append(
            (
                r["session_id"],
                r["agent"] or "-",
                r["source"] or "-",
                (r["last_event"] or "-") + (" (ended)" if r["ended_at"] else ""),
                _ago(r["_last"]),
                r["cwd"] or "-",
            )
        )
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]) - 1)]
    for row in table:
        typer.echo("  ".join(c.ljust(w) for c, w in zip(row[:-1], widths)) + "  " + row[-1])


def plugin_root() -> Path | None:
    """A directory Claude Code can load with --plugin-dir: the source tree, or the copy a
    wheel installed under share/orch-plugins."""
    from orch_plugins.install import source_root

    try:
        root = source_root()
    except OrchError:
        return None
    return root if (root / ".claude-plugin" / "plugin.json").is_file() else None


def pack_installed(project: Path) -> bool:
    """Whether the slash commands are already installed for this project or user."""
    for claude_dir in (project / ".claude", Path.home() / ".claude"):
        if (claude_dir / "commands" / "orchestrate.md").is_file():
            return True
    return False


def _runs_our_hooks(settings: Path) -> bool:
    """Whether a settings file has orch's hooks, or enables orch's plugin."""
    from orch_plugins.install import is_our_hook

    try:
        data = json.loads(settings.read_text(encoding="utf-8-sig"))
    except (OSError, ValueError):
        return False
    if not isinstance(data, dict):
        return False
    plugins = data.get("enabledPlugins")
    if isinstance(plugins, dict) and any(
        str(k).startswith("orchestrate@") and v for k, v in plugins.items()
    ):
        return True
    hooks = data.get("hooks")
    groups = hooks.values() if isinstance(hooks, dict) else []
    return any(
        is_our_hook(entry)
        for group_list in groups
        if isinstance(group_list, list)
        for group in group_list
        if isinstance(group, dict) and isinstance(group.get("hooks"), list)
        for entry in group["hooks"]
    )


def _settings_files(directory: Path) -> list[Path]:
    claude_dir = directory / ".claude"
    return [claude_dir / "settings.json", claude_dir / "settings.local.json"]


def hooks_problem(cwd: Path) -> str | None:
    """Why a Claude Code session started in ``cwd`` runs none of orch's hooks (so it is not
    recorded and never told which agents finished), with what to do; None when it runs them.

    Claude Code (checked with 2.1.197 and 2.1.332) reads ``.claude/settings.json`` and
    ``settings.local.json`` only in the directory it starts in, plus ``~/.claude/settings.json``;
    slash commands, by contrast, are found in the directories above too.
    """
    cwd = cwd.resolve()
    home = Path.home().resolve()
    if any(_runs_our_hooks(f) for f in [*_settings_files(home), *_settings_files(cwd)]):
        return None
    for parent in cwd.parents:
        if parent != home and any(_runs_our_hooks(f) for f in _settings_files(parent)):
            return (
                f"Claude Code started in {cwd} runs none of orch's hooks: it reads "
                f".claude/settings.json only where it starts, and they are installed in "
                f"{parent}; start claude there, or run 'orch start' (it brings the hooks), "
                "or install them for your user: 'orch install --user'"
            )
    return (
        "orch's hooks are not installed for this project or your user: run 'orch install' "
        "(or 'orch start', which brings them)"
    )


def start_command(
    extra: list[str], *, plugin: bool | None = None
) -> tuple[list[str], dict[str, str]]:
    """claude's argv and environment for an interactive orchestrator session.

    When claude would not run orch's hooks where it starts (a subdirectory of a project whose
    ``.claude/settings.json`` has them), they are passed with ``--settings``; they record into
    the project's state directory through ``ORCH_STATE_DIR``.
    """
    from orch_plugins.claude import orchestrator_argv, orchestrator_env
    from orch_plugins.config import load_config
    from orch_plugins.install import HOOK_EVENTS
    from orch_plugins.store import Store, find_project_dir

    claude = load_config().resolve_claude()
    project = find_project_dir()
    store = Store.open()  # the state directory must exist for the hooks to record the session
    state_dir = str(store.state_dir.resolve())
    store.close()
    plugin_dir = None
    if plugin is None:
        plugin = not pack_installed(project)
    if plugin:
        root = plugin_root()
        if root is None:
            raise OrchError(
                "the slash commands are not installed here and the plugin files were not "
                "found; run 'orch install' first"
            )
        plugin_dir = str(root)
    # Hooks claude would not run where it starts are passed with --settings.
    hooks = HOOK_EVENTS if not plugin and hooks_problem(Path.cwd()) is not None else ()
    argv = orchestrator_argv(claude, plugin_dir=plugin_dir, hook_events=hooks, extra=extra)
    return argv, orchestrator_env(os.environ, state_dir=state_dir)


@app.command(
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
)
def start(
    ctx: typer.Context,
    plugin: bool | None = typer.Option(
        None,
        "--plugin/--no-plugin",
        help="Load the commands and hooks as a plugin (default: when not installed here).",
    ),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Print the claude command instead of running it."
    ),
) -> None:
    """Start an interactive Claude Code session as the orchestrator.

    The orchestrator instructions are appended to the system prompt and the /orchestrate
    commands are available. Further arguments go to claude (e.g. '--model opus').
    """
    argv, env = start_command(list(ctx.args), plugin=plugin)
    if dry_run:
        import shlex

        typer.echo(shlex.join(argv))
        return
    os.execve(argv[0], argv, env)


@app.command()
def slash(
    command: str = typer.Argument(
        ...,
        metavar="COMMAND",
        help="The /orchestrate command: launch, parallel, resume, cancel or output.",
    ),
) -> None:
    """Run an /orchestrate:COMMAND with its arguments exactly as typed (what the slash
    commands run).

    orch's UserPromptSubmit hook saved them from the prompt; none of it passes through the
    model or a shell. Each saved command runs once.
    """
    from orch_plugins import slash as parse
    from orch_plugins.cli import agents

    sid = os.environ.get("CLAUDE_CODE_SESSION_ID")
    if not sid:
        raise OrchError(
            "'orch slash' runs an /orchestrate command inside Claude Code "
            "(CLAUDE_CODE_SESSION_ID is not set)"
        )
    try:
        text = parse.claim(command, sid)
    except parse.NotSaved as exc:
        raise OrchError(f"{exc}{_unheard_hint(sid)}") from None
    if command in ("cancel", "output"):
        words = text.split()
        if command == "cancel":
            names = [w for w in words if w != "--all"]
            agents.cancel(names=names, all_="--all" in words, as_json=False)
        elif not words:
            raise OrchError("name the agent whose result to show")
        else:
            agents.output(names=words, path=False)
        return
    from orch_plugins.model import LaunchRequest

    orch = agents._orch()
    if command == "launch":
        [name], opts, task = parse.split_args(text, names=1, valued=("--role",))
        runs = [orch.launch(LaunchRequest(name, task, role=parse.value(opts, "--role")))]
    elif command == "resume":
        [name], opts, task = parse.split_args(text, names=1, flags=("--fork",), valued=("--as",))
        runs = [
            orch.resume(
                name, task, fork=bool(opts.get("--fork")), as_name=parse.value(opts, "--as")
            )
        ]
    else:  # parallel
        _, opts, rest = parse.split_args(text, valued=("--role", "--roles"))
        tasks = parse.split_tasks(rest)
        roles = agents.role_per_task(
            parse.value(opts, "--role"), parse.value(opts, "--roles"), len(tasks)
        )
        runs = agents.launch_tasks(orch, tasks, roles)
    agents._report_launched(runs, as_json=False, single=len(runs) == 1, wait=False, orch=orch)


def session_known(sid: str) -> bool:
    """Whether orch's hooks recorded this Claude Code session in the project's store."""
    from orch_plugins.store import Store, default_state_dir

    try:
        store = Store(default_state_dir(), create=False)
    except OrchError:
        return False
    try:
        return store.session(sid) is not None
    finally:
        store.close()


def _unheard_hint(sid: str) -> str:
    """Why nothing was saved: ``""`` when the hooks do record this session."""
    if session_known(sid):
        return " (type the command yourself: one that Claude runs is not saved)"
    why = hooks_problem(Path.cwd()) or "orch's hooks did not record this session"
    return f": {why}"


#: What to install when the ``mcp`` SDK is missing (the ``orch-plugins[mcp]`` extra's pin).
MCP_REQUIREMENT = "mcp>=2.3,<3"


@app.command("mcp")
def mcp_cmd() -> None:
    """Serve orch's operations as MCP tools on stdin/stdout (what Claude Code starts)."""
    try:
        import mcp.server.mcpserver  # noqa: F401
    except ImportError:
        raise OrchError(
            "orch mcp needs the MCP Python SDK (the orch-plugins[mcp] extra): "
            f"{sys.executable} -m pip install '{MCP_REQUIREMENT}'"
        ) from None
    from orch_plugins.mcp_server import main

    main()

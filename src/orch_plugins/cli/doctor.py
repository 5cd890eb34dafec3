"""``orch doctor``: can agents run here, and on the remote hosts?

Each check prints one line (``ok``, ``warn`` or ``FAIL`` and what to do); the exit status is 1
when any check failed, so scripts and the orchestrator can gate on it before launching. A
warning (a claude outside the tested range, a key that cannot be checked, an orchestrator that
would not be told when agents finish) does not fail it.
"""

from __future__ import annotations

import json
import os
import subprocess

import typer

app = typer.Typer()

Check = tuple[str, str, "bool | None", str]  # (where, what, ok (None: a warning), detail)
LEVELS = {True: "ok", None: "warn", False: "fail"}


def _local_checks() -> list[Check]:
    from orch_plugins.claude import check_api, tested_range_note
    from orch_plugins.config import load_config
    from orch_plugins.errors import OrchError
    from orch_plugins.progress import plural
    from orch_plugins.store import DB_NAME, Store, damaged_message, default_state_dir

    checks: list[Check] = []
    try:
        cfg = load_config()
    except OrchError as exc:
        return [("local", "config", False, str(exc))]
    if cfg.path is not None and cfg.path.is_file():
        hosts = plural(len(cfg.hosts), "remote host")
        checks.append(("local", "config", True, f"{cfg.path} ({hosts})"))
    else:
        detail = f"no config file (defaults; looked for {cfg.path})"
        checks.append(("local", "config", True, detail))
    claude: str | None = None
    try:
        claude = cfg.resolve_claude()
        proc = subprocess.run(
            [claude, "--version"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=60,
            env=dict(os.environ, DISABLE_AUTOUPDATER="1"),
        )
        out = (proc.stdout if proc.returncode == 0 else proc.stderr).strip().splitlines()
        detail = f"{out[0] if out else f'exit {proc.returncode}'} at {claude}"
        if proc.returncode == 0:
            level, note = tested_range_note(out[0] if out else "")
            checks.append(("local", "claude", level, f"{detail}; {note}"))
        else:
            checks.append(("local", "claude", False, detail))
    except (OrchError, OSError, subprocess.TimeoutExpired) as exc:
        checks.append(("local", "claude", False, str(exc)))
    level, detail = check_api(os.environ, claude)
    checks.append(("local", "api", level, detail))
    state = default_state_dir()
    try:
        state.mkdir(parents=True, exist_ok=True)
        probe = state / f".probe.{os.getpid()}"
        probe.write_text("ok")
        probe.unlink()
        if (state / DB_NAME).exists():
            store = Store(state, create=False)
            try:
                problems = store.integrity()
            finally:
                store.close()
            if problems:
                raise OrchError(damaged_message(state / DB_NAME, "; ".join(problems)))
        checks.append(("local", "state", True, f"{state} is writable"))
    except (OSError, OrchError) as exc:
        checks.append(("local", "state", False, f"{state}: {exc}"))
    checks.append(_hooks_check())
    return checks


def _hooks_check() -> Check:
    """Will the orchestrator session be told when agents finish (do orch's hooks run)?

    Inside a Claude Code session: has the hooks' record of it. Elsewhere: would a claude
    started in this directory run them.
    """
    from pathlib import Path

    from orch_plugins.cli.integration import hooks_problem, session_known

    here = Path.cwd()
    sid = os.environ.get("CLAUDE_CODE_SESSION_ID")
    if sid and not os.environ.get("ORCH_RUN_ID"):
        if session_known(sid):
            return ("local", "hooks", True, "this Claude Code session is recorded by orch's hooks")
        why = hooks_problem(here) or "orch's hooks did not record it"
        return (
            "local",
            "hooks",
            None,
            f"this Claude Code session is not told when agents finish: {why}",
        )
    problem = hooks_problem(here)
    if problem is None:
        return ("local", "hooks", True, f"Claude Code started in {here} runs orch's hooks")
    return ("local", "hooks", None, problem)


def _backend_checks(hosts: list[str]) -> list[Check]:
    """What each backend adds (its tools; the hosts it reaches), backends by name. A backend
    that cannot be built or fails is one failed line, never the end of the doctor."""
    from orch_plugins.backend import BackendContext
    from orch_plugins.config import load_config
    from orch_plugins.errors import OrchError
    from orch_plugins.plugins import get_plugins
    from orch_plugins.store import default_state_dir

    checks: list[Check] = []
    try:
        cfg = load_config()
    except OrchError as exc:  # already a failed "local: config" line
        return [(name, "config", False, str(exc)) for name in hosts]
    registry, _ = get_plugins().everything()
    state_dir = default_state_dir()
    for name in registry.names():
        try:
            backend = registry[name](BackendContext.of(name, cfg, state_dir))
            checks.extend(backend.doctor(hosts))
        except Exception as exc:
            checks.append(("local", f"backend {name}", False, f"its checks failed: {exc}"))
    return checks


@app.command()
def doctor(
    host: list[str] | None = typer.Option(
        None, "--host", metavar="HOST", help="Also check this remote host (repeatable)."
    ),
    all_hosts: bool = typer.Option(False, "--all-hosts", help="Check every [hosts.*] entry."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Check the config, claude (version, API access), the state directory and, with --host,
    remote hosts (reachable, sessions per connection, python3, claude)."""
    checks = _local_checks()
    names = list(host or [])
    if all_hosts:
        from orch_plugins.config import load_config

        names += [n for n in load_config().hosts if n not in names]
    checks.extend(_backend_checks(names))
    if as_json:
        rows = [
            {"where": w, "check": c, "ok": ok is not False, "level": LEVELS[ok], "detail": d}
            for w, c, ok, d in checks
        ]
        typer.echo(json.dumps(rows, indent=2))
    else:
        width = max(len(f"{w}: {c}") for w, c, _, _ in checks)
        for where, what, ok, detail in checks:
            label = f"{where}: {what}".ljust(width)
            typer.echo(f"{LEVELS[ok] if ok is not False else 'FAIL':4}  {label}  {detail}")
    if any(ok is False for _, _, ok, _ in checks):
        raise typer.Exit(1)

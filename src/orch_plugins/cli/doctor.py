"""``orch doctor``: can agents run here, and on the remote hosts?

Each check prints one line (``ok`` or ``FAIL`` and what to do); the exit status is 1 when any
check failed, so scripts and the orchestrator can gate on it before launching.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import typer

app = typer.Typer()

Check = tuple[str, str, bool, str]  # (where, what, ok, detail)


def _local_checks() -> list[Check]:
    from orch_plugins.config import load_config
    from orch_plugins.errors import OrchError
    from orch_plugins.store import DB_NAME, Store, default_state_dir

    checks: list[Check] = []
    try:
        cfg = load_config()
        checks.append(("local", "config", True, f"{cfg.path} ({len(cfg.hosts)} remote hosts)"))
    except OrchError as exc:
        return [("local", "config", False, str(exc))]
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
        ok = proc.returncode == 0
        out = (proc.stdout if ok else proc.stderr).strip().splitlines()
        detail = out[0] if out else f"exit {proc.returncode}"
        checks.append(("local", "claude", ok, f"{detail} at {claude}"))
    except (OrchError, OSError, subprocess.TimeoutExpired) as exc:
        checks.append(("local", "claude", False, str(exc)))
    state = default_state_dir()
    try:
        state.mkdir(parents=True, exist_ok=True)
        probe = state / f".probe.{os.getpid()}"
        probe.write_text("ok")
        probe.unlink()
        if (state / DB_NAME).exists():
            Store(state, create=False).close()
        checks.append(("local", "state", True, f"{state} is writable"))
    except (OSError, OrchError) as exc:
        checks.append(("local", "state", False, f"{state}: {exc}"))
    if cfg.hosts:
        ssh = shutil.which("ssh")
        checks.append(
            ("local", "ssh", bool(ssh), ssh or "the OpenSSH client 'ssh' is not installed")
        )
    return checks


def _host_checks(name: str) -> list[Check]:
    from orch_plugins.backends.ssh import SshBackend, check_host
    from orch_plugins.config import load_config
    from orch_plugins.errors import OrchError

    try:
        backend = SshBackend(load_config().backends.get("ssh"))
        results = check_host(name, backend)
    except OrchError as exc:
        results = [("config", False, str(exc))]
    return [(name, what, ok, detail) for what, ok, detail in results]


@app.command()
def doctor(
    host: list[str] | None = typer.Option(
        None, "--host", metavar="HOST", help="Also check this remote host (repeatable)."
    ),
    all_hosts: bool = typer.Option(False, "--all-hosts", help="Check every [hosts.*] entry."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Check claude, the state directory and, with --host, remote hosts (ssh, python3, claude)."""
    checks = _local_checks()
    names = list(host or [])
    if all_hosts:
        from orch_plugins.config import load_config

        names += [n for n in load_config().hosts if n not in names]
    for name in names:
        checks.extend(_host_checks(name))
    if as_json:
        rows = [{"where": w, "check": c, "ok": ok, "detail": d} for w, c, ok, d in checks]
        typer.echo(json.dumps(rows, indent=2))
    else:
        width = max(len(f"{w}: {c}") for w, c, _, _ in checks)
        for where, what, ok, detail in checks:
            label = f"{where}: {what}".ljust(width)
            typer.echo(f"{'ok  ' if ok else 'FAIL'}  {label}  {detail}")
    if not all(ok for _, _, ok, _ in checks):
        raise typer.Exit(1)

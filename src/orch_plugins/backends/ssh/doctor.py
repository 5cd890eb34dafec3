"""``orch doctor``'s lines for the ssh backend: can agents run on a host? (ssh, sessions per
connection, python3, claude and its version, base dir)."""

from __future__ import annotations

import shutil
import time
from typing import TYPE_CHECKING

from orch_plugins.backends.ssh.hosts import Host
from orch_plugins.backends.ssh.transport import SshError
from orch_plugins.errors import OrchError

if TYPE_CHECKING:
    from orch_plugins.backends.ssh.backend import SshBackend


def check_host(name: str, backend: SshBackend) -> list[tuple[str, bool | None, str]]:
    """``orch doctor --host``: can agents run there? (ssh, sessions per connection, python3,
    claude and its version, base dir). ``(check, ok, detail)``; ok None is a warning."""
    try:
        host = backend.host(name)
    except OrchError as exc:
        return [("config", False, str(exc))]
    if shutil.which(backend.transport.ssh_bin) is None:
        ssh = backend.transport.ssh_bin
        return [("ssh", False, f"the OpenSSH client {ssh!r} is not installed")]
    started = time.monotonic()
    request = {
        "cmd": "doctor",
        "claude": host.claude,
        "base_dir": host.base_dir,
        "workdir": host.workdir,
    }
    try:
        reply, _ = backend.transport.call(host, request, timeout=120)
    except SshError as exc:
        kind = "python" if exc.kind == "no_python" else "ssh"
        return [(kind, False, str(exc))]
    ms = (time.monotonic() - started) * 1000
    checks: list[tuple[str, bool | None, str]] = [
        ("ssh", True, f"reached {host.destination} with BatchMode ({ms:.0f} ms)")
    ]
    checks.append(session_check(backend, host))
    from orch_plugins.claude import tested_range_note

    for what, ok, detail in reply["checks"]:
        level: bool | None = bool(ok)
        if what == "claude" and ok:
            level, note = tested_range_note(str(detail))
            detail = f"{detail}; {note}"
        checks.append((what, level, str(detail)))
    return checks


def session_check(backend: SshBackend, host: Host) -> tuple[str, bool, str]:
    """``orch doctor --host``'s "sessions" line: how many sessions the host's sshd allows on
    one connection (measured with :meth:`SshBackend.probe_sessions`, which also records it),
    and how many orch opens at once."""
    if not backend.transport.own_multiplexing(host):
        return ("sessions", True, "not measured: ssh_options choose ControlMaster/ControlPath")
    try:
        n = backend.transport.probe_sessions(host)
    except SshError as exc:
        return ("sessions", False, f"could not measure: {exc}")
    most = backend.transport.max_sessions
    if n == 0:
        return (
            "sessions",
            False,
            "sshd refuses every session on a shared connection (MaxSessions): each call would "
            "be a full login",
        )
    uses = f"orch opens at most {backend.transport.session_limit(host)} at once"
    if n >= most:
        return ("sessions", True, f"at least {n} per connection (max_sessions {most}); {uses}")
    return ("sessions", True, f"{n} per connection (sshd MaxSessions); {uses}")

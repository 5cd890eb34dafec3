"""The ssh backend: agents on remote hosts, reached with the user's own OpenSSH client.

Everything goes through the ``ssh`` command, so ``~/.ssh/config``, the agent, ProxyJump and
known_hosts apply as the user has them; we add ``BatchMode=yes`` (never a prompt) and connection
multiplexing (``ControlMaster=auto``), and never touch host-key checking. Each call runs one
constant remote command (:data:`orch_plugins.remote.BOOTSTRAP`) and ships the supervisor, the
remote helper, the request and its files on stdin: nothing is installed on the host and no task
text, name or path is ever part of a remote command line.

A remote agent is a detached supervisor in its own session on the host, writing
``state.json``, ``events.jsonl`` and ``output.md`` in its run directory
(``BASE/<project-id>/runs/<run>-<name>-<token>``). It outlives the connection and the
orchestrator. Status for all agents of a host is one ssh call (:meth:`SshBackend.poll`), which
also brings the files of ended runs home; :meth:`SshBackend.fetch_files` brings a running one's
log.

Placement is admission's (:mod:`orch_plugins.admission`): this backend only says where a run
may go (:meth:`SshBackend.places`: the named host, the host that holds a resumed session, else
every ``[hosts.*]`` table, each with its ``max_parallel``) and which host a running agent holds
(:meth:`SshBackend.place_of`); admission picks the host and hands it over as ``spec.place``.
See docs/backends.md, "Remote hosts over ssh".
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orch_plugins import procs, supervisor
from orch_plugins.admission import WAITING
from orch_plugins.backend import (
    Backend,
    BackendContext,
    BackendRegistry,
    DoctorCheck,
    Handle,
    LaunchOption,
    LaunchSpec,
    RunUpdate,
    project_name,
)
from orch_plugins.backends.subprocess import run_mark
from orch_plugins.errors import OrchError
from orch_plugins.hookspecs import hookimpl
from orch_plugins.model import Run
from orch_plugins.store import FINAL, atomic_write

log = logging.getLogger(__name__)

#: Keys of a ``[hosts.NAME]`` table.
HOST_KEYS = frozenset(
    {
        "ssh",
        "max_parallel",
        "workdir",
        "claude",
        "python",
        "base_dir",
        "ssh_config",
        "ssh_options",
        "env",
        "forward_env",
    }
)
#: state.json fields recorded in the store: a remote host never chooses column names.
STATE_FIELDS = (
    "session_id",
    "attempt",
    "num_turns",
    "tool_calls",
    "last_activity",
    "exit_code",
    "cost_usd",
    "duration_ms",
    "usage",
    "error",
    "ended_at",
    "claude_pid",
    "claude_start",
)
PROGRESS_FIELDS = (
    "session_id",
    "attempt",
    "num_turns",
    "tool_calls",
    "last_activity",
    "claude_pid",
    "claude_start",
)
#: Prefix of the note this backend puts in a running run's ``error`` while its host is out of
#: reach (cleared, like admission's ``waiting:`` note, when news arrives).
UNREACHABLE = "status unknown: "
DEST_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.@:%+\[\]-]*")
SSH_OPTION_RE = re.compile(r"[A-Za-z][A-Za-z0-9]*[= ]\S.*")
ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
#: sun_path holds 108 bytes; ssh adds "/" + 40 (%C) + 17 (temporary suffix).
MAX_CONTROL_DIR = 48
#: How ssh reports that sshd refused one more session on a multiplexed connection (more open at
#: once than its ``MaxSessions``): the mux client's line, and the master's.
REFUSED = ("Session open refused", "administratively prohibited")
#: Sessions-per-connection limits learnt from refusals or measured by ``orch doctor --host``,
#: by connection key, in the control directory.
LIMITS_FILE = "session-limits.json"
#: How often a call refused by the master waits for a slot and asks the master again before it
#: lets ssh make a connection of its own (each refusal costs one local round trip, ~10 ms).
REFUSED_RETRIES = 10
#: Given to ssh while a master is up: a refused session then fails instead of quietly turning
#: into a full login (a multiplexed session never runs a ProxyCommand).
NO_FALLBACK = "ProxyCommand=false"


class SshError(OrchError):
    """An ssh call that failed; ``kind`` is unreachable, hostkey, auth, no_python, no_claude,
    timeout, transient, remote or ssh."""

    def __init__(self, host: Host, kind: str, message: str) -> None:
        super().__init__(f"host {host.name} ({host.destination}): {message}")
        self.kind = kind
        self.host = host.name


@dataclass
class Host:
    """One remote host, from its ``[hosts.NAME]`` table (or a bare ``--host`` destination)."""

    name: str
    destination: str
    max_parallel: int = 4
    workdir: str | None = None
    claude: str = "claude"
    python: str = "python3"
    base_dir: str = "~/.orch-remote"
    ssh_config: str | None = None
    ssh_options: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    forward_env: list[str] = field(default_factory=list)

    @classmethod
    def from_table(cls, name: str, table: dict[str, Any]) -> Host:
        """Validate a config table; a typo fails loudly rather than being ignored."""
        where = f"[hosts.{name}]"
        if not isinstance(table, dict):
            raise OrchError(f"{where} must be a table")
        unknown = sorted(set(table) - HOST_KEYS)
        if unknown:
            known = ", ".join(sorted(HOST_KEYS))
            raise OrchError(f"{where}: unknown key(s) {', '.join(unknown)}; known: {known}")
        host = cls(name=name, destination=str(table.get("ssh", name)))
        for key in ("workdir", "claude", "python", "base_dir", "ssh_config"):
            if key in table:
                if not isinstance(table[key], str) or not table[key]:
                    raise OrchError(f"{where}: {key} must be a non-empty string")
                setattr(host, key, table[key])
        if "max_parallel" in table:
            mp = table["max_parallel"]
            if not isinstance(mp, int) or isinstance(mp, bool) or mp < 1:
                raise OrchError(f"{where}: max_parallel must be an integer of at least 1")
            host.max_parallel = mp
        opts = table.get("ssh_options", [])
        if not isinstance(opts, list) or not all(
            isinstance(o, str) and SSH_OPTION_RE.fullmatch(o) for o in opts
        ):
            raise OrchError(f'{where}: ssh_options must be a list of "Option=value" strings')
        host.ssh_options = list(opts)
        env = table.get("env", {})
        if not isinstance(env, dict) or not all(
            isinstance(v, str) and ENV_NAME_RE.fullmatch(k) for k, v in env.items()
        ):
            raise OrchError(f'{where}: env must be a table of NAME = "value" strings')
        host.env = dict(env)
        fwd = table.get("forward_env", [])
        if not isinstance(fwd, list) or not all(
            isinstance(n, str) and ENV_NAME_RE.fullmatch(n) for n in fwd
        ):
            raise OrchError(f"{where}: forward_env must be a list of variable names")
        host.forward_env = list(fwd)
        host.check_destination()
        return host

    def check_destination(self) -> None:
        # ssh would take a leading "-" for an option; spaces would split the argument.
        if not DEST_RE.fullmatch(self.destination):
            raise OrchError(f"invalid ssh destination {self.destination!r} for host {self.name!r}")


def project_id(state_dir: str) -> str:
    """A stable, readable directory name for this project on remote hosts: the project's name
    and a digest of this machine and state directory, so two orchestrators never collide."""
    import hashlib
    import socket

    path = Path(state_dir).resolve()
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", project_name(path))[:40].lstrip(".-") or "project"
    digest = hashlib.sha1(f"{socket.gethostname()}:{path}".encode()).hexdigest()[:10]
    return f"{safe}-{digest}"


_SOURCES: tuple[bytes, bytes, bytes] | None = None
#: When this process last asked each host for status, and synced each run (monotonic).
_LAST_POLL: dict[str, float] = {}
_LAST_SYNC: dict[int, float] = {}
#: Beside a local run directory: its remote files are all here, no need to ask again.
SYNCED = ".ssh-synced"


def _sources() -> tuple[bytes, bytes, bytes]:
    """The sources of the supervisor, its process module and the remote helper, shipped with
    every call."""
    global _SOURCES
    if _SOURCES is None:
        from orch_plugins import remote

        _SOURCES = (
            Path(supervisor.__file__).read_bytes(),
            Path(procs.__file__).read_bytes(),
            Path(remote.__file__).read_bytes(),
        )
    return _SOURCES


def _classify(stderr: bytes) -> tuple[str, str]:
    """ssh's own failure (exit 255) -> (kind, last meaningful line)."""
    text = stderr.decode("utf-8", "replace")
    lines = [
        line.strip()
        for line in text.splitlines()
        if line.strip() and not line.startswith("Warning: Permanently added")
    ]
    last = lines[-1] if lines else "ssh failed without a message"
    if "Host key verification failed" in text or "HOST IDENTIFICATION HAS CHANGED" in text:
        return "hostkey", last
    if "Permission denied" in text or "Too many authentication failures" in text:
        return "auth", last
    if any(
        s in text
        for s in (
            "Could not resolve hostname",
            "Connection refused",
            "Connection timed out",
            "No route to host",
            "Network is unreachable",
            "Operation timed out",
        )
    ):
        return "unreachable", last
    if any(
        s in text
        for s in (
            "mux_client",
            "Control socket",
            "ControlSocket",
            "session request failed",
            "Broken pipe",
            "Connection closed",
            "Connection reset",
            "closed by remote host",
        )
    ):
        return "transient", last
    return "ssh", last


def _explain(host: Host, kind: str, last: str) -> str:
    dest = host.destination
    if kind == "hostkey":
        return (
            f"the host key of {dest} is unknown or has changed ({last}). Host-key checking stays "
            f"as your ssh configuration has it: verify the key and add it to known_hosts "
            f"(for example by running 'ssh {dest}' once)"
        )
    if kind == "auth":
        return (
            f"{dest} refused the key ({last}). ssh runs with BatchMode=yes (no password "
            "prompts): load the key into ssh-agent or set IdentityFile in your ssh config"
        )
    if kind == "unreachable":
        return f"cannot reach {dest}: {last}"
    return f"ssh failed: {last}"


def _popen_ssh(argv: list[str], err: Any) -> subprocess.Popen[bytes]:
    """Start ssh with pipes for stdin and stdout. stderr goes to a file, not a pipe: a
    ControlPersist master forked from this ssh keeps its stderr open for minutes, and reading a
    pipe to EOF would wait for it. A new session keeps that master alive after this command
    (and its terminal) is gone."""
    with procs.detached() as kw:  # a master it forks belongs to no agent
        return subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=err,
            start_new_session=True,
            **kw,
        )


def _read_reply_line(stream: Any, marker: bytes, timeout: float) -> bytes:
    """Read a pipe until the line holding ``marker`` is complete (a login script may print
    lines before it), EOF, or ``timeout`` seconds; returns what was read."""
    import select

    fd, buf = stream.fileno(), b""
    deadline = time.monotonic() + timeout
    while marker not in buf or b"\n" not in buf[buf.index(marker) :]:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            break
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        buf += chunk
    return buf


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return -1


class SshBackend(Backend):
    name = "ssh"
    description = "agents on remote hosts over your OpenSSH client (--host, [hosts.*] pools)"
    place_kind = "host"
    options = (
        LaunchOption(
            "host",
            "Remote host for the ssh backend (implies --backend ssh).",
            flag="--host",
            metavar="HOST",
            selects_backend=True,
        ),
    )

    def __init__(self, context: BackendContext) -> None:
        super().__init__(context)
        self._hosts: dict[str, Host] | None = None
        self._control_dir: Path | None = None

    # -- settings -------------------------------------------------------------------------------

    @property
    def ssh_bin(self) -> str:
        return str(self.config.get("ssh", "ssh"))

    @property
    def poll_interval(self) -> float:
        """Within one process, ask a host at most this often (``orch wait`` loops fast)."""
        return float(self.config.get("poll_interval", 1.0))

    @property
    def max_sessions(self) -> int:
        """``[backends.ssh] max_sessions``: sessions at most open at once on one connection.
        sshd's ``MaxSessions`` defaults to 10; a host that allows fewer lowers it for itself
        (:meth:`session_limit`)."""
        return max(1, int(self.config.get("max_sessions", 8)))

    def host_defaults(self) -> dict[str, Any]:
        """Host keys set in ``[backends.ssh]``: defaults for every host (``ssh_config`` once)."""
        return {k: v for k, v in self.config.items() if k in HOST_KEYS and k != "ssh"}

    def hosts(self) -> dict[str, Host]:
        """``[hosts.*]`` from config.toml, validated, in file order."""
        if self._hosts is None:
            defaults = self.host_defaults()
            self._hosts = {
                name: Host.from_table(
                    name, {**defaults, **table} if isinstance(table, dict) else table
                )
                for name, table in self.context.hosts.items()
            }
        return self._hosts

    def host(self, name: str, destination: str | None = None) -> Host:
        """A configured host, or an ssh destination used as is (``--host myserver`` works with
        nothing but ``~/.ssh/config``)."""
        configured = self.hosts().get(name)
        if configured is not None:
            return configured
        return Host.from_table(name, {**self.host_defaults(), "ssh": destination or name})

    def control_dir(self) -> Path:
        """Where multiplexing sockets live: private, and short enough for a unix socket."""
        if self._control_dir is None:
            configured = self.config.get("control_dir")
            if configured:
                path = Path(str(configured)).expanduser()
                if len(str(path)) > MAX_CONTROL_DIR:
                    raise OrchError(
                        f"[backends.ssh] control_dir {path} is too long for a unix socket "
                        f"(at most {MAX_CONTROL_DIR} characters)"
                    )
            else:
                runtime = os.environ.get("XDG_RUNTIME_DIR")
                if runtime:
                    path = Path(runtime) / "orch-plugins"
                else:
                    import platformdirs

                    path = platformdirs.user_cache_path("orch-plugins") / "ssh"
                if len(str(path)) > MAX_CONTROL_DIR:
                    path = Path(tempfile.gettempdir()) / f"orch-ssh-{os.getuid()}"
            path.mkdir(mode=0o700, parents=True, exist_ok=True)
            st = path.stat()
            if st.st_uid != os.getuid() or st.st_mode & 0o077:
                raise OrchError(f"ssh control directory {path} must be private (mode 700, yours)")
            self._control_dir = path
        return self._control_dir

    @staticmethod
    def connection_key(host: Host) -> str:
        """12 hex digits naming one multiplexed connection (its socket, its session slots and
        its learnt session limit): the destination, ssh config file and options."""
        import hashlib

        ident = repr((host.destination, host.ssh_config, host.ssh_options))
        return hashlib.sha1(ident.encode()).hexdigest()[:12]

    def control_path(self, host: Host) -> Path:
        """The master's socket (``ControlPath``) for this host's connection."""
        return self.control_dir() / f"m-{self.connection_key(host)}"

    @staticmethod
    def own_multiplexing(host: Host) -> bool:
        """Whether orch's ControlMaster/ControlPath are in effect (``ssh_options`` win)."""
        names = {re.split(r"[= ]", o, maxsplit=1)[0].lower() for o in host.ssh_options}
        return not names & {"controlmaster", "controlpath"}

    def master_up(self, host: Host) -> bool:
        """Whether this host's master connection's socket is there (it may still be stale)."""
        return self.own_multiplexing(host) and self.control_path(host).is_socket()

    def ssh_argv(self, host: Host, command: str, *, no_fallback: bool = False) -> list[str]:
        """The ssh command line. The user's ``ssh_options`` come first: ssh takes the first
        value it sees, so they override our defaults. StrictHostKeyChecking is never set.
        ``no_fallback`` (only while a master is up) puts :data:`NO_FALLBACK` first."""
        argv = [self.ssh_bin]
        if host.ssh_config:
            argv += ["-F", os.path.expanduser(host.ssh_config)]
        options = [
            *([NO_FALLBACK] if no_fallback else []),
            *host.ssh_options,
            "BatchMode=yes",
            "ControlMaster=auto",
            f"ControlPath={self.control_path(host)}",
            f"ControlPersist={int(self.config.get('control_persist', 60))}",
            f"ConnectTimeout={int(self.config.get('connect_timeout', 10))}",
            "ServerAliveInterval=15",
            "ServerAliveCountMax=4",
        ]
        for option in options:
            argv += ["-o", option]
        return [*argv, "-T", "--", host.destination, command]

    @staticmethod
    def remote_command(host: Host) -> str:
        """The only text the remote shell parses: the interpreter and a constant program."""
        import shlex

        from orch_plugins import remote

        return f"exec {shlex.quote(host.python)} -S -c {shlex.quote(remote.BOOTSTRAP)}"

    # -- one call -------------------------------------------------------------------------------

    # -- sessions per connection ----------------------------------------------------------------

    def _limits_path(self) -> Path:
        return self.control_dir() / LIMITS_FILE

    def learnt_limits(self) -> dict[str, dict[str, Any]]:
        """``{connection key: {"limit", "host", "destination", "how", "at"}}``: what refusals
        (``how`` "refused") or ``orch doctor --host`` ("probed") taught about hosts."""
        try:
            data = json.loads(self._limits_path().read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def session_limit(self, host: Host) -> int:
        """Sessions orch opens at once on this host's connection: ``max_sessions``, or fewer
        when the host's sshd allows fewer (learnt, see :meth:`learnt_limits`)."""
        learnt = self.learnt_limits().get(self.connection_key(host), {}).get("limit")
        if isinstance(learnt, int) and not isinstance(learnt, bool) and learnt >= 1:
            return min(self.max_sessions, learnt)
        return self.max_sessions

    def set_session_limit(self, host: Host, limit: int | None, how: str) -> None:
        """Record a host's sessions-per-connection limit for every later call and process
        (None forgets it). A refusal only ever lowers the recorded limit; a probe replaces it."""
        with open(self.control_dir() / f"{LIMITS_FILE}.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            limits = self.learnt_limits()
            key = self.connection_key(host)
            if limit is None:
                if limits.pop(key, None) is None:
                    return
            else:
                old = limits.get(key, {}).get("limit")
                if how == "refused" and isinstance(old, int) and old <= limit:
                    return
                limits[key] = {
                    "limit": limit,
                    "host": host.name,
                    "destination": host.destination,
                    "how": how,
                    "at": time.time(),
                }
            atomic_write(self._limits_path(), json.dumps(limits, indent=1))

    def _slot_path(self, host: Host, i: int) -> Path:
        return self.control_dir() / f"slot-{self.connection_key(host)}-{i}"

    @contextlib.contextmanager
    def _session_slot(self, host: Host) -> Iterator[int]:
        """Hold one of :meth:`session_limit` lock files per host while a session is open,
        across processes, so concurrent calls never exceed sshd's sessions per connection.
        Yields the slot's number."""
        while True:
            for i in range(self.session_limit(host)):  # read again: another may have lowered it
                fd = os.open(self._slot_path(host, i), os.O_RDWR | os.O_CREAT, 0o600)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    os.close(fd)
                    continue
                try:
                    yield i
                finally:
                    os.close(fd)
                return
            time.sleep(0.01)

    def _others_holding(self, host: Host, mine: int) -> int:
        """How many session slots of this host other calls (any process) hold right now."""
        held = 0
        for i in range(self.max_sessions):
            path = self._slot_path(host, i)
            if i == mine or not path.exists():
                continue
            fd = os.open(path, os.O_RDWR)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                held += 1
            finally:
                os.close(fd)
        return held

    def _request_bytes(self, request: dict[str, Any], payload: bytes = b"") -> bytes:
        """What a call sends on ssh's stdin: the three sources, the request line, its files."""
        sources = _sources()
        return b"".join(
            [
                b" ".join(b"%d" % len(src) for src in sources) + b"\n",
                *sources,
                json.dumps(request).encode(),
                b"\n",
                payload,
            ]
        )

    def probe_sessions(self, host: Host, timeout: float = 30.0) -> int:
        """Measure how many sessions this host's sshd allows open at once on one connection,
        up to ``max_sessions``: hold every session slot of the host (other orch calls wait),
        then open sessions on the master one by one, each held open by the remote helper,
        until sshd refuses one. Records the result (see :meth:`set_session_limit`) and returns
        it; ``max_sessions`` means "at least that many". Raises SshError when a session fails
        for another reason."""
        from orch_plugins import remote

        if shutil.which(self.ssh_bin) is None:
            raise OrchError(f"the OpenSSH client {self.ssh_bin!r} is not installed")
        data = self._request_bytes({"cmd": "hold"})
        command = self.remote_command(host)
        locks: list[int] = []
        procs: list[subprocess.Popen[bytes]] = []
        count = 0
        try:
            for i in range(self.max_sessions):
                fd = os.open(self._slot_path(host, i), os.O_RDWR | os.O_CREAT, 0o600)
                locks.append(fd)
                fcntl.flock(fd, fcntl.LOCK_EX)
            with tempfile.TemporaryFile() as err:
                while count < self.max_sessions:
                    argv = self.ssh_argv(host, command, no_fallback=self.master_up(host))
                    proc = _popen_ssh(argv, err)
                    procs.append(proc)
                    assert proc.stdin is not None and proc.stdout is not None
                    try:
                        proc.stdin.write(data)
                        proc.stdin.flush()
                    except BrokenPipeError:
                        # ssh ended before reading it all (the request is larger than a
                        # pipe holds): a refused session; its stderr says so below.
                        pass
                    line = _read_reply_line(proc.stdout, remote.MARKER, timeout)
                    if remote.MARKER in line:
                        count += 1
                        continue
                    proc.kill()
                    proc.wait()
                    err.seek(0)
                    text = err.read()
                    if any(r.encode() in text for r in REFUSED):
                        break
                    kind, last = _classify(text)
                    raise SshError(host, kind, _explain(host, kind, last))
        finally:
            for proc in procs:
                with contextlib.suppress(OSError):
                    proc.stdin.close()  # type: ignore[union-attr]
            for proc in procs:
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            for fd in locks:
                os.close(fd)
        if not self.own_multiplexing(host):
            return count
        self.set_session_limit(host, count if count < self.max_sessions else None, "probed")
        return count

    # -- one call -------------------------------------------------------------------------------

    def call(
        self,
        host: Host,
        request: dict[str, Any],
        payload: bytes = b"",
        *,
        timeout: float | None = None,
        retry: bool = True,
    ) -> tuple[dict[str, Any], list[bytes]]:
        """One round trip: run the remote helper with ``request``; return its reply and blobs.

        Retried once when the multiplexed connection broke under us (every request is
        idempotent: a launch that already happened answers with what it started)."""
        from orch_plugins import remote

        if shutil.which(self.ssh_bin) is None:
            raise OrchError(f"the OpenSSH client {self.ssh_bin!r} is not installed")
        data = self._request_bytes(request, payload)
        command = self.remote_command(host)
        timeout = timeout or float(self.config.get("timeout", 60))
        for attempt in (1, 2):
            rc, out, err = self._run(host, command, data, timeout)
            if rc == 255 and remote.MARKER not in out:
                kind, last = _classify(err)
                if kind == "transient" and retry and attempt == 1:
                    continue
                raise SshError(host, kind, _explain(host, kind, last))
            return self._parse(host, rc, out, err)
        raise AssertionError("unreachable")  # pragma: no cover

    def _run(
        self, host: Host, command: str, data: bytes, timeout: float
    ) -> tuple[int, bytes, bytes]:
        """One ssh session, in a session slot. While the master is up, a session sshd refuses
        fails at once (:data:`NO_FALLBACK`) instead of becoming a full login: the host's limit
        is lowered to what the other calls hold, and the call waits for a slot and asks the
        master again. A master that turns out to be gone (a stale socket) is simply replaced
        by the next attempt."""
        from orch_plugins import remote

        refusals, guard = 0, True
        while True:
            with self._session_slot(host) as slot:
                no_fallback = guard and refusals < REFUSED_RETRIES and self.master_up(host)
                argv = self.ssh_argv(host, command, no_fallback=no_fallback)
                rc, out, err = self._spawn(argv, data, timeout, host)
                refused = any(r.encode() in err for r in REFUSED)
                others = self._others_holding(host, slot) if refused else 0
            failed = rc == 255 and remote.MARKER not in out
            if refused:
                refusals += 1
                # sshd refused with at most `others` sessions open, and with one fewer than
                # the slots we were allowed: either bound is a limit that sshd did not refuse.
                limit = max(1, min(others, self.session_limit(host) - 1))
                log.info(
                    "host %s refused a session with %d others open: at most %d from now on",
                    host.name,
                    others,
                    limit,
                )
                self.set_session_limit(host, limit, "refused")
                if failed and no_fallback:
                    continue  # nothing ran: ask the master again, within the lower limit
            elif failed and no_fallback:
                guard = False  # the master was gone; the next attempt makes a new one
                continue
            return rc, out, err

    @staticmethod
    def _spawn(
        argv: list[str], data: bytes, timeout: float, host: Host
    ) -> tuple[int, bytes, bytes]:
        with tempfile.TemporaryFile() as err:
            proc = _popen_ssh(argv, err)
            try:
                out, _ = proc.communicate(data, timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()
                raise SshError(host, "timeout", f"no answer within {timeout:.0f} s") from None
            err.seek(0)
            return proc.returncode, out, err.read()

    @staticmethod
    def _parse(host: Host, rc: int, out: bytes, err: bytes) -> tuple[dict[str, Any], list[bytes]]:
        from orch_plugins import remote

        start = out.find(remote.MARKER)
        if start < 0:
            msg = err.decode("utf-8", "replace").strip().splitlines()
            last = msg[-1] if msg else f"exit status {rc}"
            if rc == 127 or "not found" in last:
                raise SshError(
                    host,
                    "no_python",
                    f"{host.python!r} not found on the host ({last}); install python3 there "
                    "or set 'python' in its [hosts.NAME] table",
                )
            raise SshError(host, "remote", f"unexpected answer from the host: {last}")
        end = out.index(b"\n", start)
        reply = json.loads(out[start + len(remote.MARKER) : end])
        blobs, pos = [], end + 1
        for size in reply.get("blobs", []):
            blobs.append(out[pos : pos + size])
            pos += size
        if pos > len(out):
            raise SshError(host, "transient", "the answer was cut short")
        if not reply.get("ok"):
            raise SshError(host, reply.get("kind", "remote"), reply.get("error", "failed"))
        return reply, blobs

    # -- starting -------------------------------------------------------------------------------

    def _start(self, spec: LaunchSpec, host: Host, cwd: str | None) -> Handle:
        """Ship spec, prompt and supervisor in one call; the host starts it detached."""
        import secrets

        project = project_id(spec.state_dir)
        base = host.base_dir.rstrip("/") or "/"
        env = {k: v for k, v in spec.env.items() if k != "ORCH_STATE_DIR"}  # a local path
        env.update(host.env)
        env.update({k: os.environ[k] for k in host.forward_env if k in os.environ})
        data = spec.to_json()
        data["env"] = env
        data["options"] = {**spec.options, "report": "file", "host": host.name}
        spec_bytes = json.dumps(data).encode()
        prompt = Path(spec.prompt_path).read_bytes()
        request = {
            "cmd": "launch",
            "run_dir": f"{base}/{project}/runs/{spec.run_id}-{spec.name}-{secrets.token_hex(3)}",
            "claude": host.claude,
            "workdir": cwd or host.workdir,
            "default_workdir": f"{base}/{project}/work",
            "files": [["spec.json", len(spec_bytes)], ["prompt.txt", len(prompt)]],
        }
        reply, _ = self.call(host, request, spec_bytes + prompt)
        return {
            "host": host.name,
            "destination": host.destination,
            "remote_dir": reply["remote_dir"],
            "pid": reply["pid"],
            "start_time": reply["start_time"],
            "boot_id": reply["boot_id"],
            "cwd": reply["cwd"],
            **run_mark(spec),
        }

    # -- the Backend interface ------------------------------------------------------------------

    def places(self, spec: LaunchSpec) -> dict[str, int]:
        """The hosts this run may go to, each with its ``max_parallel``: the host that holds
        the session it resumes or forks, else the ``host`` option, else every ``[hosts.*]``
        table in file order. ``OrchError`` when there is none, or a resumed session lives on
        another host than the one asked for."""
        wanted = spec.options.get("host")
        if spec.resume_from is not None:
            host = spec.resume_from.get("host")
            if not host:
                raise OrchError(
                    "that session was not recorded on a remote host, so it cannot continue over ssh"
                )
            if wanted and wanted != host:
                raise OrchError(f"that session lives on host {host!r}, not {wanted!r}")
            wanted = host
        if wanted:
            chosen = self.host(str(wanted))
            return {chosen.name: chosen.max_parallel}
        hosts = self.hosts()
        if not hosts:
            raise OrchError(
                "no remote hosts: pass --host HOST, or add [hosts.NAME] tables to "
                'config.toml (see the README\'s "Remote hosts over ssh")'
            )
        return {h.name: h.max_parallel for h in hosts.values()}

    def place_of(self, handle: Handle) -> str | None:
        return str(handle["host"]) if handle.get("host") else None

    def launch(self, spec: LaunchSpec) -> Handle:
        """Start on the host admission chose (``spec.place``; else the first it may use)."""
        return self._start(spec, self.host(spec.place or next(iter(self.places(spec)))), None)

    def resume(self, spec: LaunchSpec, source: Handle) -> Handle:
        """Go back to the host (and directory) that holds the session's transcript."""
        host = spec.place or next(iter(self.places(spec)))
        return self._start(spec, self.host(host), source.get("cwd"))

    def is_alive(self, handle: Handle) -> bool:
        """One status call to the agent's host. An unreachable host counts as alive: we cannot
        tell, and must not call its agents lost because a network is down."""
        if not handle.get("remote_dir"):
            return False
        name = str(handle["host"])
        result = self._status_calls({name: [{"run_id": 0, "handle": handle}]}, files=False)[name]
        if isinstance(result, SshError):
            return True
        entry = result[0]["runs"].get("0", {})
        return bool(entry.get("alive")) or _final(entry)

    def poll(self, runs: Sequence[Run]) -> dict[int, RunUpdate]:
        """One status call per host for all its running agents: liveness, progress, endings,
        and the files of those that ended. An unreachable host's agents count as alive, with a
        note in their ``error``. A host asked less than ``poll_interval`` ago by this process
        is not asked again (``orch wait`` polls fast): its agents are left out, nothing new."""
        updates: dict[int, RunUpdate] = {}
        jobs: dict[str, list[dict[str, Any]]] = {}
        for run in runs:
            handle = run["handle"]
            if not handle:
                continue
            if handle.get("remote_dir"):
                jobs.setdefault(str(handle["host"]), []).append({"run": run, "handle": handle})
            else:
                updates[run["run_id"]] = RunUpdate(alive=False)  # never started anywhere
        now = time.monotonic()
        for name in list(jobs):
            if now - _LAST_POLL.get(name, -1e9) < self.poll_interval:
                del jobs[name]
            else:
                _LAST_POLL[name] = now
        for name, result in self._status_calls(jobs, files=False).items():
            for job in jobs[name]:
                run = job["run"]
                if isinstance(result, SshError):
                    note = f"{UNREACHABLE}{result}"
                    fields = {"error": note} if run.get("error") != note else {}
                    updates[run["run_id"]] = RunUpdate(alive=True, fields=fields)
                    continue
                reply, blobs = result
                entry = reply["runs"].get(str(run["run_id"]), {})
                self._store_files(run, job, entry, blobs)
                fields = self._news(run, entry) or {}
                if fields.get("status") in FINAL:  # its files came home in this answer
                    (Path(run["run_dir"]) / SYNCED).touch()
                alive = bool(entry.get("alive")) or _final(entry)
                updates[run["run_id"]] = RunUpdate(alive=alive, fields=fields)
        return updates

    def fetch_files(self, run: Run) -> None:
        """Bring the run's log (from where the local copy ends) and output home."""
        handle = run["handle"]
        if not handle or not handle.get("remote_dir"):
            return
        marker = Path(run["run_dir"]) / SYNCED
        if run["status"] in FINAL and marker.exists():
            return
        now = time.monotonic()
        if run["status"] not in FINAL:  # orch logs -f asks every 0.2 s
            if now - _LAST_SYNC.get(run["run_id"], -1e9) < self.poll_interval:
                return
            _LAST_SYNC[run["run_id"]] = now
        name = str(handle["host"])
        job = {"run": run, "handle": handle}
        result = self._status_calls({name: [job]}, files=True)[name]
        if isinstance(result, SshError):
            log.warning("cannot fetch %s's files: %s", run["name"], result)
            return
        reply, blobs = result
        self._store_files(run, job, reply["runs"].get(str(run["run_id"]), {}), blobs)
        if run["status"] in FINAL:
            marker.touch()

    def doctor(self, hosts: Sequence[str]) -> list[DoctorCheck]:
        """The OpenSSH client, when any host is configured; then each of ``hosts`` (see
        :func:`check_host`)."""
        checks = []
        if self.context.hosts:
            ssh = shutil.which("ssh")
            detail = ssh or "the OpenSSH client 'ssh' is not installed"
            checks.append(DoctorCheck("local", "ssh", bool(ssh), detail))
        for name in hosts:
            try:
                results = check_host(name, self)
            except OrchError as exc:
                results = [("config", False, str(exc))]
            checks.extend(DoctorCheck(name, what, ok, detail) for what, ok, detail in results)
        return checks

    def cancel(self, handle: Handle, grace: float) -> None:
        if not handle.get("remote_dir"):
            return  # never started anywhere
        host = self.host(str(handle["host"]), handle.get("destination"))
        run = _remote_run(handle)
        run.update({k: handle[k] for k in ("run_id", "token", "keep_children") if k in handle})
        request = {"cmd": "cancel", "run": run, "grace": grace}
        try:
            self.call(host, request, timeout=grace + 60)
        except SshError as exc:
            log.warning(
                "could not stop the agent in %s: %s (it may still run there)",
                handle["remote_dir"],
                exc,
            )

    # -- helpers --------------------------------------------------------------------------------

    def _status_calls(
        self, jobs: dict[str, list[dict[str, Any]]], *, files: bool
    ) -> dict[str, tuple[dict[str, Any], list[bytes]] | SshError]:
        """One status call per host, hosts in parallel; a failing host is reported, not raised."""
        results: dict[str, tuple[dict[str, Any], list[bytes]] | SshError] = {}

        def ask(name: str) -> None:
            entries = []
            for job in jobs[name]:
                run, handle = job.get("run"), job["handle"]
                entry = {"id": run["run_id"] if run else job["run_id"], **_remote_run(handle)}
                if run:
                    job["log_size"] = max(0, _size(run["log_path"]))
                    entry.update(
                        log_size=job["log_size"], out_size=_size(run["output_path"]), files=files
                    )
                    if files:  # orch logs: the text being written too
                        head, job["live_size"] = _live_state(Path(run["run_dir"]) / "live.txt")
                        entry.update(live_head=head, live_size=job["live_size"])
                entries.append(entry)
            try:
                first = jobs[name][0]["handle"]
                host = self.host(name, first.get("destination"))
                results[name] = self.call(host, {"cmd": "status", "runs": entries})
            except SshError as exc:
                log.warning("%s", exc)
                results[name] = exc
            except OrchError as exc:  # a host removed from the config, or made invalid
                results[name] = SshError(Host(name, name), "ssh", str(exc))

        if len(jobs) == 1:
            ask(next(iter(jobs)))
        else:
            threads = [threading.Thread(target=ask, args=(name,)) for name in jobs]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        return results

    @staticmethod
    def _store_files(
        run: Run, job: dict[str, Any], entry: dict[str, Any], blobs: list[bytes]
    ) -> None:
        """Write what came home. The remote log is append-only, so bytes are written at their
        own offset: two processes syncing at once write the same bytes, never twice."""
        if "log" in entry:
            offset = 0 if entry.get("log_reset") else int(job.get("log_size", 0))
            fd = os.open(run["log_path"], os.O_WRONLY | os.O_CREAT, 0o644)
            try:
                if entry.get("log_reset"):
                    os.ftruncate(fd, 0)
                os.pwrite(fd, blobs[entry["log"]], offset)
            finally:
                os.close(fd)
        if "output" in entry:
            atomic_write(Path(run["output_path"]), blobs[entry["output"]])
        live = Path(run["run_dir"]) / "live.txt"
        if entry.get("live_gone"):
            with contextlib.suppress(OSError):
                live.unlink()
        elif "live" in entry:
            if entry.get("live_reset"):  # another message, or none here yet
                atomic_write(live, blobs[entry["live"]])
            else:
                fd = os.open(live, os.O_WRONLY | os.O_CREAT, 0o644)
                try:
                    os.pwrite(fd, blobs[entry["live"]], int(job.get("live_size", 0)))
                finally:
                    os.close(fd)

    @staticmethod
    def _news(run: Run, entry: dict[str, Any]) -> dict[str, Any] | None:
        state: dict[str, Any] = entry["state"] if isinstance(entry.get("state"), dict) else {}
        if state.get("status") in FINAL:
            fields = {k: state[k] for k in STATE_FIELDS if k in state}
            fields["status"] = state["status"]
            return fields
        if not entry.get("alive"):
            tail = (entry.get("supervisor_log") or "").strip().splitlines()
            if tail:
                log.warning(
                    "remote supervisor of %s ended without a result: %s", run["name"], tail[-1]
                )
            # The core sees it dead and records it lost; which claude it ran is kept, so a
            # resume there can stop that claude if it lives on.
            claude = {
                k: state[k]
                for k in ("claude_pid", "claude_start")
                if state.get(k) is not None and state[k] != run.get(k)
            }
            return claude or None
        fields = {k: state[k] for k in PROGRESS_FIELDS if k in state and state[k] != run.get(k)}
        if run.get("error") and str(run["error"]).startswith((WAITING, UNREACHABLE)):
            fields["error"] = None
        return fields or None


def _live_state(path: Path) -> tuple[str | None, int]:
    """The message id (first line) and size of a local copy of ``live.txt``."""
    try:
        with open(path, "rb") as fh:
            head = fh.readline()
            size = os.fstat(fh.fileno()).st_size
    except OSError:
        return None, 0
    return (head.decode("utf-8", "replace").strip(), size) if head.endswith(b"\n") else (None, 0)


def _remote_run(handle: Handle) -> dict[str, Any]:
    return {
        "dir": handle["remote_dir"],
        "pid": handle.get("pid"),
        "start_time": handle.get("start_time"),
        "boot_id": handle.get("boot_id"),
    }


def _final(entry: dict[str, Any]) -> bool:
    state = entry.get("state")
    return isinstance(state, dict) and state.get("status") in FINAL


def check_host(name: str, backend: SshBackend) -> list[tuple[str, bool | None, str]]:
    """``orch doctor --host``: can agents run there? (ssh, sessions per connection, python3,
    claude and its version, base dir). ``(check, ok, detail)``; ok None is a warning."""
    try:
        host = backend.host(name)
    except OrchError as exc:
        return [("config", False, str(exc))]
    if shutil.which(backend.ssh_bin) is None:
        return [("ssh", False, f"the OpenSSH client {backend.ssh_bin!r} is not installed")]
    started = time.monotonic()
    request = {
        "cmd": "doctor",
        "claude": host.claude,
        "base_dir": host.base_dir,
        "workdir": host.workdir,
    }
    try:
        reply, _ = backend.call(host, request, timeout=120)
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
    if not backend.own_multiplexing(host):
        return ("sessions", True, "not measured: ssh_options choose ControlMaster/ControlPath")
    try:
        n = backend.probe_sessions(host)
    except SshError as exc:
        return ("sessions", False, f"could not measure: {exc}")
    most = backend.max_sessions
    if n == 0:
        return (
            "sessions",
            False,
            "sshd refuses every session on a shared connection (MaxSessions): each call would "
            "be a full login",
        )
    uses = f"orch opens at most {backend.session_limit(host)} at once"
    if n >= most:
        return ("sessions", True, f"at least {n} per connection (max_sessions {most}); {uses}")
    return ("sessions", True, f"{n} per connection (sshd MaxSessions); {uses}")


@hookimpl
def orch_register_backends(registry: BackendRegistry) -> None:
    registry.add(SshBackend)

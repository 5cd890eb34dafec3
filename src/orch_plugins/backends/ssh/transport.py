"""How the ssh backend talks to a host: the ``ssh`` command line, one round trip with the remote
helper (:mod:`orch_plugins.backends.ssh.remote`), multiplexed connections and the sessions each
may hold at once.

Everything goes through the user's own OpenSSH client, so ``~/.ssh/config``, the agent,
ProxyJump and known_hosts apply as the user has them; we add ``BatchMode=yes`` (never a
prompt) and connection multiplexing (``ControlMaster=auto``), and never touch host-key
checking. Each call runs one constant remote command (:data:`remote.BOOTSTRAP`) and ships the
supervisor, the remote helper, the request and its files on stdin: no task text, name or path
is ever part of a remote command line.
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
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from orch_plugins import procs, supervisor
from orch_plugins.backends.ssh.hosts import Host
from orch_plugins.errors import OrchError
from orch_plugins.store import atomic_write

log = logging.getLogger(__name__)

#: sun_path holds 108 bytes; ssh adds "/" + 40 (%C) + 17 (temporary suffix).
MAX_CONTROL_DIR = 48


#: How ssh reports that sshd refused one more session on a multiplexed connection (more open at
#: once than its ``MaxSessions``): the mux client's line, and the master's.
REFUSED = ("Session open refused", "administratively prohibited")


#: Sessions-per-connection limits learnt from refusals or measured by ``orch doctor --host``,
#: by connection key, in the control directory.
LIMITS_FILE = "session-limits.json"


#: How long (seconds) a call refused by the master keeps waiting for a slot and asking the
#: master again before it lets ssh make a connection of its own. Time, not a count: on a busy
#: host sshd releases closed sessions late, and quick retries would all be refused.
REFUSED_PATIENCE = 30.0


#: Given to ssh while a master is up: a refused session then fails instead of quietly turning
#: into a full login (a multiplexed session never runs a ProxyCommand).
NO_FALLBACK = "ProxyCommand=false"


class SshError(OrchError):
    """An ssh call that failed; ``kind`` is unreachable, hostkey, auth, no_python, no_claude,
    timeout, transient, remote or ssh."""

    def __init__(self, host: Host, kind: str, message: str) -> None:
        super().__init__(f"host {host.name} ({host.destination}): {message}")
        self.detail = message
        self.kind = kind
        self.host = host.name


_SOURCES: tuple[bytes, bytes, bytes] | None = None


def _sources() -> tuple[bytes, bytes, bytes]:
    """The sources of the supervisor, its process module and the remote helper, shipped with
    every call."""
    global _SOURCES
    if _SOURCES is None:
        from orch_plugins.backends.ssh import remote

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


class SshTransport:
    """Calls to hosts with the settings of ``[backends.ssh]`` (``ssh``, ``control_dir``,
    ``control_persist``, ``connect_timeout``, ``timeout``, ``max_sessions``)."""

    def __init__(self, config: Mapping[str, Any]) -> None:
        self.config = config
        self._control_dir: Path | None = None

    @property
    def ssh_bin(self) -> str:
        return str(self.config.get("ssh", "ssh"))

    @property
    def max_sessions(self) -> int:
        """``[backends.ssh] max_sessions``: sessions at most open at once on one connection.
        sshd's ``MaxSessions`` defaults to 10; a host that allows fewer lowers it for itself
        (:meth:`session_limit`)."""
        return max(1, int(self.config.get("max_sessions", 8)))

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

        from orch_plugins.backends.ssh import remote

        return f"exec {shlex.quote(host.python)} -S -c {shlex.quote(remote.BOOTSTRAP)}"

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
        from orch_plugins.backends.ssh import remote

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
        from orch_plugins.backends.ssh import remote

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
        from orch_plugins.backends.ssh import remote

        refusals, guard, patience = 0, True, time.monotonic() + REFUSED_PATIENCE
        while True:
            with self._session_slot(host) as slot:
                no_fallback = guard and time.monotonic() < patience and self.master_up(host)
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
                    # Nothing ran: ask the master again, within the lower limit, a little later
                    # each time (10 ms doubling to 320 ms) while sshd lets the closed ones go.
                    time.sleep(0.01 * 2 ** min(refusals - 1, 5))
                    continue
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
        from orch_plugins.backends.ssh import remote

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

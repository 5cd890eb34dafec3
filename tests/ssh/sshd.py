"""Real OpenSSH servers on loopback for the ssh backend's tests and benchmark.

Each "host" is its own ``sshd -D -f ABS_CONFIG`` on its own 127/8 address and free port, with its
own host key, authorized keys, pid file, HOME and base directory. ``SetEnv`` gives the sessions
the environment a real remote host would have of its own (``HOME``, ``PATH`` with ``claude`` and
``python3``, the test API's URL and key): nothing is forwarded from the orchestrator.

The client side is one ``ssh_config`` file (``ssh -F``: ssh reads ``~/.ssh`` from the passwd
home, never ``$HOME``) with a ``Host`` alias per server and some broken aliases on purpose:
``NAME-unknown`` (empty known_hosts), ``NAME-badkey`` (a key the server does not know) and
``nowhere`` (nothing listens).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

SSHD = "/usr/sbin/sshd"


class SshdMissing(RuntimeError):
    """``/usr/sbin/sshd`` or ``ssh`` is not installed (``apt-get install openssh-server``)."""


def free_port(address: str) -> int:
    with socket.socket() as sock:
        sock.bind((address, 0))
        return sock.getsockname()[1]


def keygen(path: Path, comment: str) -> str:
    """Make an ed25519 key pair; return the public key line."""
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        check=True,
        stdin=subprocess.DEVNULL,
    )
    return path.with_name(path.name + ".pub").read_text().strip()


@dataclass
class Server:
    name: str
    address: str
    port: int
    root: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def home(self) -> Path:
        return self.root / "home"

    @property
    def base_dir(self) -> Path:
        """The host's ``base_dir`` for orch (remote run directories live below it)."""
        return self.root / "orch"

    @property
    def workdir(self) -> Path:
        return self.root / "work"

    def runs(self) -> list[Path]:
        """Remote run directories created on this host so far."""
        return sorted(self.base_dir.glob("*/runs/*"))


@dataclass
class Hosts:
    """Running servers and the client files that reach them."""

    root: Path
    servers: dict[str, Server]
    ssh_config: Path
    control_dir: Path

    def __getitem__(self, name: str) -> Server:
        return self.servers[name]

    def ssh(self, alias: str, *args: str, **kw: object) -> subprocess.CompletedProcess[bytes]:
        """Plain ``ssh -F config ALIAS ...`` (no multiplexing) for test set-up and checks."""
        return subprocess.run(  # type: ignore[call-overload, no-any-return]
            ["ssh", "-F", str(self.ssh_config), "-o", "BatchMode=yes", alias, *args],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=30,
            **kw,
        )

    def config_toml(
        self,
        hosts: Mapping[str, Mapping[str, object]] | None = None,
        backend: Mapping[str, object] | None = None,
    ) -> str:
        """config.toml text: ``[backends.ssh]`` (control dir, this ``ssh_config`` for every
        host) and one ``[hosts.NAME]`` per entry of ``hosts`` (default: every server). A
        table's ``base_dir``/``workdir`` default to those of the server it reaches."""
        if hosts is None:
            hosts = {name: {} for name in self.servers}
        table: dict[str, object] = {
            "control_dir": str(self.control_dir),
            "connect_timeout": 5,
            "ssh_config": str(self.ssh_config),
        }
        table.update(backend or {})
        lines = ["[backends.ssh]", *(f"{k} = {_toml(v)}" for k, v in table.items()), ""]
        for name, overrides in hosts.items():
            alias = str(overrides.get("ssh", name))
            server = self.servers.get(alias.split("-")[0])
            host: dict[str, object] = {"max_parallel": 2}
            if server is not None:
                host.update(base_dir=str(server.base_dir), workdir=str(server.workdir))
            host.update(overrides)
            lines += [f'[hosts."{name}"]', *(f"{k} = {_toml(v)}" for k, v in host.items()), ""]
        return "\n".join(lines)

    def exit_masters(self) -> None:
        """Close the multiplexed masters: every socket in the control directory."""
        for sock in self.control_dir.glob("*"):
            if not sock.is_socket():
                continue
            with contextlib.suppress(Exception):
                subprocess.run(
                    ["ssh", "-o", f"ControlPath={sock}", "-O", "exit", "master"],
                    capture_output=True,
                    timeout=10,
                )

    def logins(self, name: str) -> int:
        """Full logins (authentications) server ``name`` has seen; needs ``LogLevel INFO``
        among its ``sshd_options`` (a multiplexed session is not a login)."""
        return (self[name].root / "sshd.log").read_text().count("Accepted publickey")

    def stop(self) -> None:
        """Close multiplexed masters, stop every server and whatever still runs below root."""
        self.exit_masters()
        for server in self.servers.values():
            if server.proc is not None and server.proc.poll() is None:
                server.proc.terminate()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    server.proc.wait(5)
                if server.proc.poll() is None:
                    server.proc.kill()
        kill_processes_mentioning(str(self.root))
        kill_processes_mentioning(str(self.control_dir))
        shutil.rmtree(self.control_dir, ignore_errors=True)


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + "}"
    raise TypeError(value)


def kill_processes_mentioning(text: str) -> None:
    """SIGKILL every process whose command line mentions ``text`` (the "remote" agents of a
    test are local processes under its temporary directory), process groups included."""
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if text.encode() in cmdline:
            with contextlib.suppress(OSError):
                os.killpg(int(entry), signal.SIGKILL)
            with contextlib.suppress(OSError):
                os.kill(int(entry), signal.SIGKILL)


def _wait_listening(server: Server, log: Path, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert server.proc is not None
        if server.proc.poll() is not None:
            raise RuntimeError(f"sshd {server.name} exited: {log.read_text()[-2000:]}")
        with (
            contextlib.suppress(OSError),
            socket.create_connection((server.address, server.port), timeout=0.5),
        ):
            return
        time.sleep(0.02)
    raise RuntimeError(f"sshd {server.name} did not listen within {timeout} s")


def start_hosts(
    root: Path,
    env: Mapping[str, str],
    names: Sequence[str] = ("h1", "h2"),
    addresses: Sequence[str] = ("127.0.0.2", "127.0.0.3"),
    control_dir: Path | None = None,
    sshd_options: Mapping[str, Sequence[str]] | None = None,
) -> Hosts:
    """Start one sshd per name; ``env`` is what each server's sessions get through ``SetEnv``
    (``HOME`` is set per host); ``sshd_options`` adds lines to a server's ``sshd_config``,
    by name (before the defaults: sshd keeps the first value, e.g. ``"MaxSessions 4"``)."""
    if not os.path.exists(SSHD):
        raise SshdMissing(f"{SSHD} not found: apt-get install -y openssh-server")
    if os.geteuid() == 0:  # privilege separation directory (a non-root sshd serves only us)
        Path("/run/sshd").mkdir(mode=0o755, parents=True, exist_ok=True)
    user = pwd.getpwuid(os.getuid()).pw_name
    root.mkdir(parents=True, exist_ok=True)
    client_key = root / "client_key"
    client_pub = keygen(client_key, "orch-test-client")
    other_key = root / "other_key"
    keygen(other_key, "orch-test-refused")
    authorized = root / "authorized_keys"
    authorized.write_text(client_pub + "\n")
    known_hosts = root / "known_hosts"
    empty_known = root / "empty_known_hosts"
    empty_known.write_text("")
    servers: dict[str, Server] = {}
    client = ["# written by tests/ssh/sshd.py"]
    known = []
    for name, address in zip(names, addresses):
        sroot = root / name
        sroot.mkdir()
        server = Server(name, address, free_port(address), sroot)
        for d in (server.home, server.base_dir, server.workdir):
            d.mkdir()
        host_pub = keygen(sroot / "host_key", f"host-{name}")
        known.append(f"[{address}]:{server.port} {' '.join(host_pub.split()[:2])}")
        setenv = dict(env, HOME=str(server.home))
        config = sroot / "sshd_config"
        config.write_text(
            "\n".join(
                [
                    *(sshd_options or {}).get(name, ()),
                    f"ListenAddress {address}",
                    f"Port {server.port}",
                    f"HostKey {sroot / 'host_key'}",
                    f"PidFile {sroot / 'sshd.pid'}",
                    f"AuthorizedKeysFile {authorized}",
                    "UsePAM no",
                    "StrictModes no",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "PubkeyAuthentication yes",
                    "PermitRootLogin prohibit-password",
                    "PrintMotd no",
                    "LogLevel ERROR",
                    "SetEnv " + " ".join(f'"{k}={v}"' for k, v in setenv.items()),
                    "",
                ]
            )
        )
        log = sroot / "sshd.log"
        with open(log, "ab") as fh:
            server.proc = subprocess.Popen(
                [SSHD, "-D", "-e", "-f", str(config.resolve())],
                stdin=subprocess.DEVNULL,
                stdout=fh,
                stderr=fh,
                start_new_session=True,
            )
        servers[name] = server
        common = [
            f"  HostName {address}",
            f"  Port {server.port}",
            f"  User {user}",
            "  IdentitiesOnly yes",
            "  ConnectTimeout 5",
        ]
        client += [f"Host {name}", *common, f"  IdentityFile {client_key}"]
        client += [f"  UserKnownHostsFile {known_hosts}", ""]
        client += [f"Host {name}-unknown", *common, f"  IdentityFile {client_key}"]
        client += [f"  UserKnownHostsFile {empty_known}", ""]
        client += [f"Host {name}-badkey", *common, f"  IdentityFile {other_key}"]
        client += [f"  UserKnownHostsFile {known_hosts}", ""]
    nowhere = free_port("127.0.0.4")
    client += [
        "Host nowhere",
        "  HostName 127.0.0.4",
        f"  Port {nowhere}",
        f"  User {user}",
        f"  IdentityFile {client_key}",
        "  IdentitiesOnly yes",
        f"  UserKnownHostsFile {known_hosts}",
        "  ConnectTimeout 3",
        "",
    ]
    known_hosts.write_text("\n".join(known) + "\n")
    ssh_config = root / "ssh_config"
    ssh_config.write_text("\n".join(client))
    if control_dir is None:  # short: a socket path must fit in 108 bytes
        control_dir = Path(tempfile.mkdtemp(prefix="orch-ctl-"))
    control_dir.mkdir(mode=0o700, exist_ok=True)
    hosts = Hosts(root, servers, ssh_config, control_dir)
    try:
        for server in servers.values():
            _wait_listening(server, server.root / "sshd.log")
    except BaseException:
        hosts.stop()
        raise
    return hosts

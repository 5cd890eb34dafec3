"""Fixtures for the ssh backend: two real OpenSSH servers on loopback ("hosts" h1 and h2).

The tests FAIL (never skip) when sshd or claude is missing: a skipped remote suite would read
as a green one.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest

from orch_plugins.supervisor import descendants
from orch_plugins.testing.api import MessagesStandIn
from orch_plugins.testing.pytest_plugin import QUIET_ENV, TEST_API_KEY, write_claude_config
from tests.helpers import FAKE_CLAUDE, cmdlines, orch, pid_gone, wait_for
from tests.ssh.sshd import Hosts, SshdMissing, start_hosts

#: Set in the orchestrator's environment: a remote host must never see them.
LOCAL_SECRET_URL = "http://127.0.0.1:9/local-only"
LOCAL_SECRET_KEY = "sk-ant-local-only-never-forwarded-000000"


@pytest.fixture
def two_hosts(tmp_path: Path, messages_api: MessagesStandIn, claude_bin: str) -> Iterator[Hosts]:
    """Two sshd servers, each with its own host key, HOME (with ``.claude.json``), base and
    work directories; their sessions reach the pinned claude and the stand-in API."""
    env = {
        "PATH": os.pathsep.join(dict.fromkeys([str(Path(claude_bin).parent), "/usr/bin", "/bin"])),
        "ANTHROPIC_BASE_URL": messages_api.url,
        "ANTHROPIC_API_KEY": TEST_API_KEY,
        "LANG": "C.UTF-8",
        **QUIET_ENV,
    }
    try:
        hosts = start_hosts(tmp_path / "hosts", env)
    except SshdMissing as exc:
        pytest.fail(str(exc), pytrace=False)
    for server in hosts.servers.values():
        write_claude_config(server.home)
    try:
        yield hosts
    finally:
        hosts.stop()


ConfigureFn = Callable[..., Path]


@pytest.fixture
def ssh_project(
    project: Path, two_hosts: Hosts, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Path]:
    """``project`` whose config.toml lists h1 and h2; the orchestrator's own API settings are
    decoys that must not reach the hosts."""
    monkeypatch.setenv("ANTHROPIC_BASE_URL", LOCAL_SECRET_URL)
    monkeypatch.setenv("ANTHROPIC_API_KEY", LOCAL_SECRET_KEY)
    (tmp_path / "config.toml").write_text(two_hosts.config_toml())
    try:
        yield project
    finally:
        orch("cancel", "--all", timeout=120)  # while the servers still run


@pytest.fixture
def configure(ssh_project: Path, two_hosts: Hosts, tmp_path: Path) -> ConfigureFn:
    """Rewrite config.toml: ``configure(hosts={...}, backend={...})`` (see Hosts.config_toml)."""

    def write(
        hosts: Mapping[str, Mapping[str, object]] | None = None,
        backend: Mapping[str, object] | None = None,
    ) -> Path:
        path = tmp_path / "config.toml"
        path.write_text(two_hosts.config_toml(hosts, backend))
        return path

    return write


#: Host tables whose "claude" is the fast fake (tests of the mechanics, not of Claude Code).
FAKE = {"claude": str(FAKE_CLAUDE)}


def tree_gone(pid: int) -> bool:
    return pid_gone(pid) and not descendants(pid)


def drop_masters(hosts: Hosts) -> list[int]:
    """SIGKILL the multiplexing masters (ssh retitles one "ssh: CONTROL_PATH [mux]")."""
    masters = []
    for pid, cmdline in cmdlines():
        if str(hosts.control_dir).encode() in cmdline and b"[mux]" in cmdline:
            masters.append(pid)
            os.kill(pid, signal.SIGKILL)
    wait_for(lambda: all(pid_gone(p) for p in masters))
    return masters

"""The backend conformance suite (``orch_plugins.testing.conformance``) on the ssh backend: a
real sshd on loopback as the remote host, the real Claude Code CLI running there."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from orch_plugins.supervisor import descendants
from orch_plugins.testing.conformance import BackendConformance, OrchRunner
from tests.helpers import handle
from tests.ssh.sshd import Hosts

pytestmark = pytest.mark.e2e


class TestSshBackend(BackendConformance):
    backend = "ssh"

    @pytest.fixture
    def backend_env(self, tmp_path: Path, two_hosts: Hosts) -> Iterator[dict[str, str]]:
        """One host (h1) in config.toml: every agent goes there, and comes back to it."""
        config = tmp_path / "ssh-config.toml"
        config.write_text(two_hosts.config_toml({"h1": {}}))
        yield {"ORCH_CONFIG": str(config)}

    def agent_pids(self, orch: OrchRunner, name: str) -> list[int]:
        """The remote supervisor (its pid is in the handle; the "host" is this machine) and
        everything below it: the remote side gets no local ``ORCH_STATE_DIR``."""
        pid = int(handle(orch.cwd, name)["pid"])
        return [pid, *descendants(pid)]

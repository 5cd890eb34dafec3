"""The backend conformance suite (``orch_plugins.testing.conformance``) on the backends we ship,
and on the example third-party plugin, so the suite itself is proven on real backends."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from orch_plugins.testing.conformance import BackendConformance

pytestmark = pytest.mark.e2e


class TestSubprocessBackend(BackendConformance):
    backend = "subprocess"


class TestExamplePluginBackend(BackendConformance):
    backend = "example-inline"


class TestTmuxBackend(BackendConformance):
    backend = "tmux"

    @pytest.fixture
    def backend_env(self, tmp_path: Path) -> Iterator[dict[str, str]]:
        tmux = shutil.which("tmux")
        if tmux is None:
            pytest.fail("tmux not found: install tmux 3.0 or newer (apt-get install tmux)")
        tmpdir = tempfile.mkdtemp(prefix="orch-conf-", dir="/tmp")  # short socket path
        env = {"TMUX_TMPDIR": tmpdir, "ORCH_TMUX_SOCKET": "conformance"}
        try:
            yield env
        finally:
            subprocess.run(
                [tmux, "-L", "conformance", "kill-server"],
                env={"TMUX_TMPDIR": tmpdir, "PATH": "/usr/bin:/bin"},
                capture_output=True,
            )
            shutil.rmtree(tmpdir, ignore_errors=True)

"""The backend conformance suite (``orch_plugins.testing.conformance``) on the ray backend:
the session's real local Ray cluster, the real Claude Code CLI on its nodes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from orch_plugins.testing.conformance import BackendConformance, OrchRunner
from tests.helpers import handle
from tests.ray.cluster import Cluster
from tests.ray.conftest import ray_config
from tests.ray.test_ray_real import agent_pids

pytestmark = pytest.mark.e2e


class TestRayBackend(BackendConformance):
    backend = "ray"

    @pytest.fixture
    def backend_env(
        self, tmp_path: Path, ray_cluster: Cluster, claude_bin: str
    ) -> Iterator[dict[str, str]]:
        config = tmp_path / "ray-config.toml"
        config.write_text(ray_config(ray_cluster, claude_bin))
        yield {"ORCH_CONFIG": str(config)}

    def agent_pids(self, orch: OrchRunner, name: str) -> list[int]:
        """The agent's processes on its node (this machine): the node drops the local
        ``ORCH_STATE_DIR``, so they are found by the agent's name and run id."""
        run = orch.status(name)
        assert handle(orch.cwd, name)["submission_id"]
        return agent_pids(name, run["run_id"])

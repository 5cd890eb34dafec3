"""Fixtures for the ray backend: one real local Ray cluster per test session (a head and a
second node, each with one agent slot; see :mod:`tests.ray.cluster`), the real Claude Code on
both, and the Messages API stand-in on a port fixed for the session (the nodes' environment is
set when they start).

The tests FAIL (never skip) when Ray or claude is missing: a skipped cluster suite would read
as a green one.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from orch_plugins.testing.api import MessagesStandIn
from orch_plugins.testing.pytest_plugin import find_claude_bin
from tests.ray.cluster import Cluster, RayMissing, free_port, start_cluster


@pytest.fixture(scope="session")
def ray_api_port() -> int:
    return free_port()


@pytest.fixture
def messages_api(ray_api_port: int) -> Iterator[MessagesStandIn]:
    """The stand-in, fresh for each test, on the port the cluster's nodes were given."""
    with MessagesStandIn(port=ray_api_port) as api:
        yield api


@pytest.fixture(scope="session")
def ray_cluster(ray_api_port: int) -> Iterator[Cluster]:
    try:
        cluster = start_cluster(
            f"http://127.0.0.1:{ray_api_port}", os.path.dirname(find_claude_bin())
        )
    except RayMissing as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield cluster
    finally:
        cluster.stop()


def ray_config(cluster: Cluster, claude_bin: str, **extra: str) -> str:
    """config.toml for the cluster: its job API, the claude of the version under test."""
    lines = [
        "max_parallel = 8",
        "[backends.ray]",
        f'address = "{cluster.address}"',
        f'claude = "{claude_bin}"',
        "poll_interval = 0.5",
    ]
    lines += [f"{k} = {v}" for k, v in extra.items()]
    return "\n".join(lines) + "\n"


@pytest.fixture
def ray_project(
    project: Path,
    ray_cluster: Cluster,
    claude_bin: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Path]:
    """``project`` whose agents go to the cluster by default. The orchestrator's own API
    settings are decoys that must not reach the nodes."""
    monkeypatch.setenv("ANTHROPIC_BASE_URL", "http://127.0.0.1:9/local-only")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-local-only-never-sent-0000000000")
    monkeypatch.setenv("ORCH_CLAUDE_BIN", claude_bin)
    monkeypatch.setenv("ORCH_DEFAULT_BACKEND", "ray")
    (tmp_path / "config.toml").write_text(ray_config(ray_cluster, claude_bin))
    yield project

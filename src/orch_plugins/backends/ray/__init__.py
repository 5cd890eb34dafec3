"""The ray backend plugin: one Ray job per agent, placed and queued by a Ray cluster.

This module is what orch registers (``BUILTINS``); it imports nothing heavy, and nothing of it
imports ``ray``: orch talks to the cluster's job API over HTTP. The parts:

* :mod:`.client`: the job API calls (submit, states, logs, stop, packages), standard library;
* :mod:`.package`: the project and the run's files as runtime_env packages, git bundles;
* :mod:`.node`: what runs on the node (standard library only, shipped with every job) and the
  reader of what it sends home through the job's log;
* :mod:`.backend`: :class:`~.backend.RayBackend`, what the core asks.

See docs/ray.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from orch_plugins.hookspecs import hookimpl

if TYPE_CHECKING:
    from orch_plugins.backend import BackendRegistry


@hookimpl
def orch_register_backends(registry: BackendRegistry) -> None:
    from orch_plugins.backends.ray.backend import RayBackend

    registry.add(RayBackend)

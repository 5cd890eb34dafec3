"""The ssh backend plugin: agents on remote hosts, over the user's own OpenSSH client.

This module is what orch registers (``BUILTINS``); it imports nothing heavy, so listing or
loading plugins stays cheap. The parts:

* :mod:`.hosts`: ``[hosts.NAME]`` tables checked into hosts, a project's directory on them;
* :mod:`.transport`: the ``ssh`` command line, one round trip, multiplexed connections and
  the sessions each may hold;
* :mod:`.remote`: the helper shipped to the host on every call (standard library only);
* :mod:`.backend`: :class:`~.backend.SshBackend`, what the core asks (places, launch, poll,
  fetch_files, cancel);
* :mod:`.doctor`: its ``orch doctor`` lines.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from orch_plugins.hookspecs import hookimpl

if TYPE_CHECKING:
    from orch_plugins.backend import BackendRegistry


@hookimpl
def orch_register_backends(registry: BackendRegistry) -> None:
    from orch_plugins.backends.ssh.backend import SshBackend

    registry.add(SshBackend)

"""orch-plugins: run many Claude Code sessions as parallel sub-agents of one orchestrator.

The plugin API is importable from here (``from orch_plugins import hookimpl, Backend, Run``),
each name loaded on first use, so that the light modules (store, hooks, supervisor) can be
imported without paying for pluggy; not even ``typing`` is imported here (~11 ms per hook).
"""

from __future__ import annotations

__version__ = "0.1.0"
#: The Claude Code release orch-plugins is pinned to: what the install instructions, the "claude
#: not found" error and the test kit name; ``.ci/run`` reads this line.
CLAUDE_CODE_VERSION = "2.1.197"
#: Every Claude Code release the end-to-end tests run against, oldest first (the tested range);
#: ``.ci/run`` installs each, the test kit's ``claude_bin`` runs the real-claude tests on each.
CLAUDE_CODE_TESTED = ("2.1.197", "2.1.332")

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:  # what type checkers see; at run time __getattr__ loads each on first use
    from orch_plugins.backend import Backend as Backend
    from orch_plugins.backend import BackendRegistry as BackendRegistry
    from orch_plugins.backend import LaunchSpec as LaunchSpec
    from orch_plugins.errors import OrchError as OrchError
    from orch_plugins.hookspecs import hookimpl as hookimpl
    from orch_plugins.hookspecs import hookspec as hookspec
    from orch_plugins.model import Handle as Handle
    from orch_plugins.model import LaunchRequest as LaunchRequest
    from orch_plugins.model import Run as Run
    from orch_plugins.roles import Role as Role
    from orch_plugins.roles import RoleRegistry as RoleRegistry

#: The plugin API: each name and the module that defines it.
_API = {
    "hookimpl": "orch_plugins.hookspecs",
    "hookspec": "orch_plugins.hookspecs",
    "Backend": "orch_plugins.backend",
    "BackendRegistry": "orch_plugins.backend",
    "LaunchSpec": "orch_plugins.backend",
    "Handle": "orch_plugins.model",
    "LaunchRequest": "orch_plugins.model",
    "Run": "orch_plugins.model",
    "Role": "orch_plugins.roles",
    "RoleRegistry": "orch_plugins.roles",
    "OrchError": "orch_plugins.errors",
}
__all__ = ["CLAUDE_CODE_TESTED", "CLAUDE_CODE_VERSION", "__version__", *_API]


def __getattr__(name: str) -> object:
    module = _API.get(name)
    if module is None:
        raise AttributeError(f"module 'orch_plugins' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value

"""orch-plugins: run many Claude Code sessions as parallel sub-agents of one orchestrator.

``hookimpl`` is re-exported lazily so that the light modules (store, hooks, supervisor) can be
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
__all__ = ["CLAUDE_CODE_TESTED", "CLAUDE_CODE_VERSION", "__version__", "hookimpl"]


def __getattr__(name: str) -> object:
    if name == "hookimpl":
        from orch_plugins.hookspecs import hookimpl

        return hookimpl
    raise AttributeError(f"module 'orch_plugins' has no attribute {name!r}")

"""orch-plugins: run many Claude Code sessions as parallel sub-agents of one orchestrator.

``hookimpl`` is re-exported lazily so that the light modules (store, hooks, supervisor) can be
imported without paying for pluggy; not even ``typing`` is imported here (~11 ms per hook).
"""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["__version__", "hookimpl"]


def __getattr__(name: str) -> object:
    if name == "hookimpl":
        from orch_plugins.hookspecs import hookimpl

        return hookimpl
    raise AttributeError(f"module 'orch_plugins' has no attribute {name!r}")

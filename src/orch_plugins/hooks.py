"""The old name of :mod:`orch_plugins.claude_hooks` (Claude Code's hook events), kept because
hook commands written before the rename import it: the ``orch_hook.py`` shim an earlier
``orch install`` copied into ``.claude/hooks/``, and the ``--settings`` of interactive agents
and ``orch start`` sessions still running. Costs one more module import on such a hook.
"""

from orch_plugins.claude_hooks import main

__all__ = ["main"]

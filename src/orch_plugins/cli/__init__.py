"""The ``orch`` command.

The typer app lives in :mod:`orch_plugins.cli.root` (``orch_plugins.cli.app`` still names it);
:func:`main` first offers the call to :mod:`orch_plugins.cli.fast`, which answers the hottest
calls (``orch status --json`` with nothing to check) without importing typer, click or the
plugin manager (~200 ms of a ~250 ms call).
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def main() -> None:
    """Console entry point: a user-facing error is one line on stderr and exit status 1."""
    from orch_plugins.cli import fast

    if fast.serve(sys.argv[1:]):
        return
    from orch_plugins.cli.root import main as full

    full()


def __getattr__(name: str) -> Any:
    """``app`` and ``OrchGroup``, from :mod:`orch_plugins.cli.root` when first asked for."""
    if name in ("app", "OrchGroup"):
        from orch_plugins.cli import root

        return getattr(root, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

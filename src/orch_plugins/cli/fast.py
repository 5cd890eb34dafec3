"""The hot calls of ``orch``, served without typer, click or the plugin manager.

``orch status --json`` (``--all``/``-a`` too) is what orchestrators and scripts poll. When no
run is queued or running and no end waits to be announced, the full command would do nothing
but print the store's runs: this prints them straight from SQLite
(:meth:`orch_plugins.store.Store.status_json`). Anything else (names, a terminal, live agents,
an error) goes to the full command, which then answers as it always has.
"""

from __future__ import annotations

import os
import sys
import time

#: The arguments ``orch status`` may have here, beside ``--json``.
_STATUS_FLAGS = {"--json", "--all", "-a"}


def serve(argv: list[str]) -> bool:
    """Answer ``argv`` here if it is a hot call with nothing to check; False: it is not (the
    full CLI must run it, nothing was printed)."""
    if argv[:1] != ["status"] or "--json" not in argv or not set(argv[1:]) <= _STATUS_FLAGS:
        return False
    if sys.stdout.isatty():
        return False  # people get indented JSON, from the full command
    try:
        text = _status_json(include_all=bool({"--all", "-a"} & set(argv)))
    except Exception:  # the full command reports it (a missing or unreadable store)
        return False
    if text is None:
        return False
    sys.stdout.write(text + "\n")
    sys.stdout.flush()
    return True


def _status_json(*, include_all: bool) -> str | None:
    """The runs as ``orch status --json`` prints them, or None when a status read has work to
    do first (a live agent to check, a queue, an end to announce)."""
    from orch_plugins.events import SETTLE
    from orch_plugins.store import DB_NAME, Store, default_state_dir

    state_dir = default_state_dir()
    if not os.path.exists(os.path.join(state_dir, DB_NAME)):
        return None  # the full command says what it says about a project without a store
    store = Store(state_dir, create=False)
    try:
        if store.count_active() or store.unannounced(ended_before=time.time() - SETTLE):
            return None
        return store.status_json(include_archived=include_all, latest_only=not include_all)
    finally:
        store.close()

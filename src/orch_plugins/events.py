"""The end-of-run event: ``orch_agent_ended(run)``, fired once per run that reaches a final status.

Each end is claimed once in the store (the ``end_announced`` column), so exactly one process,
ever, fires each run's event:

* An agent's supervisor (standard library only, it never loads plugins) claims the event in the
  very statement that records the end, writes the run's status object to
  ``<state_dir>/events/ended-RUN_ID.json`` and starts a detached ``python -m
  orch_plugins.events FILE`` (or, when agents wait in the queue, ``python -m
  orch_plugins.admission STATE_DIR --announce FILE``), which fires it (:func:`announce_file`)
  without opening the store: once ``orch wait`` has seen the end, nothing but the queue pump
  writes the store on that agent's behalf.
* Any other end (a status read that finds the agent lost or collects a remote agent's end, a
  cancel, a launch its backend refused) is recorded unclaimed, and claimed by
  :func:`announce_ended` (:meth:`orch_plugins.store.Store.claim_ended`: one ``BEGIN IMMEDIATE``
  transaction): right away by the process that recorded it, and by the queue pump, ``orch
  launch``, ``orch cancel`` and ``orch clear``; any other status read or wait claims only ends
  left unclaimed for :data:`SETTLE` seconds (their process died first), so a plain ``orch
  status`` never loads third-party plugins.

A run that no plugin listened to ``orch_agent_ended`` for as it started (checked by the
process that starts it, which loads the plugins anyway) is marked so
(:data:`orch_plugins.store.END_UNHEARD`): its end is never announced, and its supervisor starts
no process for it. A process killed between the claim and the call loses that one event.
"""

from __future__ import annotations

import contextlib
import sys
import time

from orch_plugins.store import Store, public

# Not ``from typing import TYPE_CHECKING``: importing typing costs ~7 ms, paid by the
# ``orch status --json`` fast path (orch_plugins.cli.fast), which reads SETTLE from here.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from orch_plugins.plugins import Plugins

#: Seconds an end may stay unannounced before a plain status read announces it itself. The
#: ending supervisor's pump process normally does within a second.
SETTLE = 30.0


def announce_ended(store: Store, plugins: Plugins | None = None, *, settle: float = 0.0) -> int:
    """Fire ``orch_agent_ended`` for every ended run whose event no process has claimed yet,
    when it ended more than ``settle`` seconds ago (0: all of them). Returns how many.

    Costs one indexed read when there is nothing to announce; loads the plugins (third-party
    entry points included) only when there is. A failing plugin is logged, never raised.
    """
    before = time.time() - settle if settle > 0 else None
    if not store.unannounced(ended_before=before):
        return 0
    runs = store.claim_ended(ended_before=before)
    if runs:
        if plugins is None:
            from orch_plugins.plugins import get_plugins

            plugins = get_plugins()
        for run in runs:
            plugins.notify("orch_agent_ended", run=public(run))
    return len(runs)


def announce_file(path: str, plugins: Plugins | None = None) -> None:
    """Fire ``orch_agent_ended`` for the run whose public status object an ending supervisor
    wrote to ``path`` (it claimed the event when it recorded the end), then remove the file.
    The store is not opened: a process that only announces never touches it."""
    import json
    import logging
    import os

    try:
        with open(path, encoding="utf-8") as fh:
            run = json.load(fh)
    except (OSError, ValueError) as exc:
        logging.getLogger(__name__).warning("cannot read the ended run in %s: %s", path, exc)
        return
    if plugins is None:
        from orch_plugins.plugins import get_plugins

        plugins = get_plugins()
    plugins.notify("orch_agent_ended", run=run)
    with contextlib.suppress(OSError):
        os.unlink(path)


def main(argv: list[str] | None = None) -> int:
    """``python -m orch_plugins.events FILE``: what an ending supervisor runs when no agent
    waits in the queue (:func:`announce_file`)."""
    from orch_plugins.plugins import Plugins

    # No built-in plugin listens to events (tests/unit/test_agent_ended.py checks): leaving
    # the built-in backends and roles out saves ~60 ms of CPU per agent that ends.
    plugins = Plugins(builtins=())
    for path in sys.argv[1:] if argv is None else argv:
        announce_file(path, plugins)
    return 0


if __name__ == "__main__":
    sys.exit(main())

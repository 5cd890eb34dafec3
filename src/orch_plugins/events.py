"""The end-of-run event: ``orch_agent_ended(run)``, fired once per run that reaches a final status.

Whoever records the end (a supervisor, a status read that finds the agent lost, a cancel, a
status read that collects a remote agent's end, a launch its backend could not start) only
writes the store; the event is fired by a process that loads the plugins, after claiming it in
the store (:meth:`orch_plugins.store.Store.claim_ended`: one ``BEGIN IMMEDIATE`` transaction, so
exactly one process, ever, gets each run). The supervisor stays standard-library-only: when a
run's end is not yet announced it starts the pump process (``python -m orch_plugins.admission``),
which announces every pending end after taking queued runs off the queue.

Which process announces:

* the pump process, every pending end;
* a launch (its queue pump), a cancel, ``orch clear`` and a status read or ``orch wait`` that
  recorded an end itself (a lost or a remote agent), every pending end;
* any other status read or wait, only ends pending for more than :data:`SETTLE` seconds (their
  pump process did not run: killed, or the machine restarted), so a plain ``orch status``
  never loads third-party plugins.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from orch_plugins.store import Store, public

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

"""max_parallel and the queue: who starts the next agent, with no daemon to keep alive.

Every launch, every supervisor that ends and every status read calls :func:`pump`, which takes
queued runs off the queue, oldest first, while fewer than the run's ``max_parallel`` agents are
running. Claiming a slot is one ``BEGIN IMMEDIATE`` transaction, so concurrent pumps never start
a run twice nor exceed the limit.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

from orch_plugins.backend import LaunchSpec
from orch_plugins.store import FAILED, QUEUED, RUNNING, Store, public

log = logging.getLogger(__name__)


def _claim(store: Store) -> dict[str, Any] | None:
    with store.transaction() as conn:
        row = conn.execute(
            "SELECT * FROM runs WHERE status=? ORDER BY run_id LIMIT 1", (QUEUED,)
        ).fetchone()
        if row is None:
            return None
        running = conn.execute("SELECT COUNT(*) FROM runs WHERE status=?", (RUNNING,)).fetchone()[0]
        if running >= row["max_parallel"]:
            return None
        conn.execute(
            "UPDATE runs SET status=?, started_at=? WHERE run_id=?",
            (RUNNING, time.time(), row["run_id"]),
        )
    return store.get_run(row["run_id"])


def start(store: Store, run: dict[str, Any], plugins: Any = None) -> None:
    """Hand a claimed run to its backend; a failure to start fails the run, with the reason."""
    from orch_plugins.config import load_config
    from orch_plugins.plugins import get_plugins

    plugins = plugins or get_plugins()
    try:
        spec = LaunchSpec(**json.loads(Path(run["run_dir"], "spec.json").read_text()))
        backend = plugins.backend(run["backend"], load_config().backends.get(run["backend"]))
        if spec.resume_from is not None:
            handle = backend.resume(spec, spec.resume_from)
        else:
            handle = backend.launch(spec)
        store.update(run["run_id"], handle=json.dumps(handle))
    except Exception as exc:
        log.debug("launch of run %s failed", run["run_id"], exc_info=True)
        store.finish(run["run_id"], FAILED, error=f"launch failed: {exc}")
        return
    plugins.notify("orch_agent_launched", run=public(store.get_run(run["run_id"])))


def pump(store: Store, plugins: Any = None) -> int:
    """Start queued runs while slots are free; returns how many were started."""
    started = 0
    while (run := _claim(store)) is not None:
        start(store, run, plugins)
        started += 1
    return started


def main(argv: list[str] | None = None) -> int:
    """``python -m orch_plugins.admission STATE_DIR``: what an ending supervisor runs."""
    args = sys.argv[1:] if argv is None else argv
    store = Store(Path(args[0]), create=False)
    pump(store)
    return 0


if __name__ == "__main__":
    sys.exit(main())

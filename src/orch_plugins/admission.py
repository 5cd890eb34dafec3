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

from orch_plugins.backend import Backend, BackendContext, LaunchSpec
from orch_plugins.config import Config, load_config
from orch_plugins.store import FAILED, QUEUED, RUNNING, Store, public

log = logging.getLogger(__name__)


def _claim(store: Store) -> list[dict[str, Any]]:
    """Take every queued run that fits, oldest first, in one transaction. A run waits while
    its own ``max_parallel`` is reached, and so does everything queued behind it (FIFO)."""
    claimed: list[int] = []
    with store.transaction() as conn:
        rows = conn.execute("SELECT * FROM runs WHERE status=? ORDER BY run_id", (QUEUED,))
        queued = rows.fetchall()
        if not queued:
            return []
        running = conn.execute("SELECT COUNT(*) FROM runs WHERE status=?", (RUNNING,)).fetchone()[0]
        now = time.time()
        for row in queued:
            if running >= row["max_parallel"]:
                break
            conn.execute(
                "UPDATE runs SET status=?, started_at=? WHERE run_id=?",
                (RUNNING, now, row["run_id"]),
            )
            claimed.append(row["run_id"])
            running += 1
    return [store.get_run(run_id) for run_id in claimed]


def start(
    store: Store, runs: list[dict[str, Any]], plugins: Any = None, config: Config | None = None
) -> None:
    """Hand claimed runs to their backends, many at once where a backend can batch (tmux);
    a run its backend cannot start fails, with the reason."""
    from orch_plugins.plugins import get_plugins

    plugins = plugins or get_plugins()
    config = config or load_config()
    by_backend: dict[str, list[tuple[dict[str, Any], LaunchSpec]]] = {}
    for run in runs:
        try:
            spec = LaunchSpec(**json.loads(Path(run["run_dir"], "spec.json").read_text()))
        except Exception as exc:
            store.finish(run["run_id"], FAILED, error=f"launch failed: {exc}")
            continue
        by_backend.setdefault(run["backend"], []).append((run, spec))
    for name, pairs in by_backend.items():
        try:
            backend = plugins.backend(name, BackendContext.of(name, config, store.state_dir))
        except Exception as exc:
            for run, _ in pairs:
                store.finish(run["run_id"], FAILED, error=f"launch failed: {exc}")
            continue
        fresh = [(r, s) for r, s in pairs if s.resume_from is None]
        handles: dict[int, Any] = {}
        if len(fresh) > 1 and type(backend).launch_many is not Backend.launch_many:
            try:
                for (run, _), handle in zip(fresh, backend.launch_many([s for _, s in fresh])):
                    handles[run["run_id"]] = handle
            except Exception as exc:
                # Never retried one by one: some may have started, and a second start would
                # run the same agent twice.
                log.debug("launch_many on %s failed", name, exc_info=True)
                for run, _ in fresh:
                    store.finish(run["run_id"], FAILED, error=f"launch failed: {exc}")
                pairs = [(r, s) for r, s in pairs if s.resume_from is not None]
        for run, spec in pairs:
            try:
                handle = handles.get(run["run_id"])
                if handle is None:
                    if spec.resume_from is not None:
                        handle = backend.resume(spec, spec.resume_from)
                    else:
                        handle = backend.launch(spec)
                store.update(run["run_id"], handle=json.dumps(handle))
            except Exception as exc:
                log.debug("launch of run %s failed", run["run_id"], exc_info=True)
                store.finish(run["run_id"], FAILED, error=f"launch failed: {exc}")
                continue
            plugins.notify("orch_agent_launched", run=public(store.get_run(run["run_id"])))


def pump(store: Store, plugins: Any = None, config: Config | None = None) -> int:
    """Start queued runs while slots are free; returns how many were started."""
    started = 0
    while runs := _claim(store):
        start(store, runs, plugins, config)
        started += len(runs)
    return started


def main(argv: list[str] | None = None) -> int:
    """``python -m orch_plugins.admission STATE_DIR``: what an ending supervisor runs."""
    args = sys.argv[1:] if argv is None else argv
    store = Store(Path(args[0]), create=False)
    pump(store)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The one scheduler: who starts next, and where, with no daemon to keep alive.

Every launch, every supervisor that ends and every status read that sees something change calls
:func:`pump`. It takes runs off the queue, oldest first, through two pools:

* **global**: a run starts only while fewer than its own ``max_parallel`` agents are running,
  and a run that waits holds up everything queued behind it (FIFO).
* **places**: a backend whose agents run in places of limited room (the ssh backend: hosts,
  each with its ``max_parallel``) says per run where it may go and how many agents each place
  holds (:meth:`Backend.places`), and which place a running agent holds
  (:meth:`Backend.place_of`). Admission picks the place: the least loaded with room, then the
  one with most room left, then the backend's order. The backend starts the run there
  (``spec.place``). When every place is full the run keeps its global slot: it is ``running``
  with the handle :data:`DEFERRED` and a ``waiting: every host is busy (h1 2/2, ...)`` note in
  its ``error``, and a later pump places it, before anything queued behind it.

* **rate limits**: when a running agent's Claude Code reports a 429 or 529 retry, its
  supervisor records a pause shared by everyone through the store (until Claude Code's retry
  delay has passed) and, for a new episode, halves the effective limit (never below 1;
  :meth:`Store.rate_limited`). While paused nothing queued starts; afterwards a queued run
  starts only while fewer than ``min(max_parallel, effective limit)`` run. Each run that
  completes without a rate-limit retry since the limit was last lowered raises it by one, up
  to ``max_parallel``. The held-back retries of running agents obey the same pause and limit
  (:meth:`Store.may_go_on`). A pump that leaves runs queued behind a pause starts one
  detached waker (``--after-pause``) that pumps again when the pause ends.
* **budget**: once the project's ``[budget]`` (``daily_usd``, ``total_usd``) is spent
  (:func:`over_budget`), queued runs stay queued with the reason in their ``error`` note;
  nothing running is stopped.

Claiming is one ``BEGIN IMMEDIATE`` transaction, so concurrent pumps never start a run twice
nor exceed a limit. A claimed run holds a placeholder handle until its backend returns the real
one: ``{"placing": PLACE, "pid": P, "start_time": T}`` for a place (so the place is counted
while it starts), else ``{"starting": true, "pid": P, "start_time": T}``, P being the pump's
process; the pump that claimed it is the only one that starts it. The supervisor checks in
when it starts (:meth:`orch_plugins.store.Store.check_in`): it adds ``"supervisor": [PID,
START]`` to a placeholder still there, or gives up when the run has ended meanwhile. So a pump
killed after starting the supervisor but before recording its handle leaves a run a status read
still follows (its supervisor's pid), and one killed before leaves a run the next status read
marks ``lost`` at once (no supervisor checked in, the pump gone), never one shown ``running``.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from orch_plugins.backend import Backend, BackendContext, LaunchSpec
from orch_plugins.config import Config, load_config
from orch_plugins.errors import OrchError
from orch_plugins.model import Handle, Run
from orch_plugins.procs import fault
from orch_plugins.store import (
    CANCELLED,
    FAILED,
    PLACEHOLDER_KEYS,
    QUEUED,
    RUNNING,
    Store,
    pause_left,
    public,
)

if TYPE_CHECKING:
    from orch_plugins.plugins import Plugins

log = logging.getLogger(__name__)

#: The handle of a run that holds a global slot but waits for room in a place.
DEFERRED: Handle = {"deferred": True}
#: The ``error`` note of a run waiting for room (cleared when it is placed).
WAITING = "waiting: "


def is_placeholder(handle: Mapping[str, object] | None) -> bool:
    """Whether a run's handle is admission's own (waiting for room, or being started), not
    one its backend returned: there is nothing of it its backend could poll or cancel."""
    return handle is not None and any(key in handle for key in PLACEHOLDER_KEYS)


def checked_in(handle: Mapping[str, object] | None) -> tuple[int, int | None] | None:
    """``(pid, start_time)`` of the supervisor that checked in on a placeholder handle (its
    starter died before recording the real handle, or has not yet); None when none did."""
    found = (handle or {}).get("supervisor")
    if isinstance(found, list) and len(found) == 2 and isinstance(found[0], int):
        start = found[1]
        return found[0], start if isinstance(start, int) else None
    return None


def is_deferred(handle: Mapping[str, object] | None) -> bool:
    """Whether a run holds a global slot but waits for room in a place."""
    return handle is not None and bool(handle.get("deferred"))


def abandoned(handle: Mapping[str, object]) -> bool:
    """A ``placing`` or ``starting`` placeholder whose process is gone (it died while starting
    the run) and on which no supervisor checked in: nothing of the run was started."""
    from orch_plugins.supervisor import pid_alive

    if not ("placing" in handle or "starting" in handle) or checked_in(handle):
        return False
    pid, start = handle.get("pid"), handle.get("start_time")
    return not pid_alive(
        pid if isinstance(pid, int) else None, start if isinstance(start, int) else None
    )


def pending(store: Store) -> bool:
    """Whether a pump could start anything: a queued run, or a running one waiting for room."""
    if store.count(QUEUED):
        return True
    running = store.runs(statuses=(RUNNING,), latest_only=False, include_archived=True)
    return any(is_deferred(r["handle"]) for r in running)


def read_spec(run: Run) -> LaunchSpec:
    return LaunchSpec(**json.loads(Path(run["run_dir"], "spec.json").read_text()))


@dataclass
class _Claim:
    """A run this pump took and will start (``place``: where, for a backend with places)."""

    run: Run
    place: str | None = None
    spec: LaunchSpec | None = None


class _Round:
    """One claiming transaction: the loads of every place, the backends asked, the decisions."""

    def __init__(self, store: Store, plugins: Plugins | None, config: Config | None) -> None:
        self.store, self._plugins, self._config = store, plugins, config
        self._backends: dict[str, Backend] = {}
        self._loads: dict[tuple[str, str], int] | None = None
        self.running: list[Run] = []

    @property
    def plugins(self) -> Plugins:
        """The plugin manager, loaded only once a run needs its backend asked."""
        if self._plugins is None:
            from orch_plugins.plugins import get_plugins

            self._plugins = get_plugins()
        return self._plugins

    @property
    def config(self) -> Config:
        if self._config is None:
            self._config = load_config()
        return self._config

    def backend(self, name: str) -> Backend:
        if name not in self._backends:
            context = BackendContext.of(name, self.config, self.store.state_dir)
            self._backends[name] = self.plugins.backend(name, context)
        return self._backends[name]

    def has_places(self, name: str) -> bool:
        try:
            return type(self.backend(name)).places is not Backend.places
        except Exception:
            return False  # an unknown or broken backend: start() fails the run, saying why

    def loads(self) -> dict[tuple[str, str], int]:
        """Running agents per (backend, place), placeholders being started included."""
        if self._loads is None:
            self._loads = {}
            for run in self.running:
                handle = run["handle"]
                if handle is None or is_deferred(handle) or not self.has_places(run["backend"]):
                    continue
                if "placing" in handle:
                    place = None if abandoned(handle) else str(handle["placing"])
                else:
                    place = self.backend(run["backend"]).place_of(handle)
                if place is not None:
                    key = (run["backend"], place)
                    self._loads[key] = self._loads.get(key, 0) + 1
        return self._loads

    def choose(self, run: Run, spec: LaunchSpec) -> tuple[str | None, str]:
        """The place for ``run`` (None: every place is full) and, when none, the note why.
        ``OrchError`` when the backend says the run can go nowhere."""
        backend = self.backend(run["backend"])
        places = backend.places(spec)
        if not places:
            raise OrchError(f"backend {backend.name!r} has no {backend.place_kind} for this run")
        loads = self.loads()
        load = {p: loads.get((run["backend"], p), 0) for p in places}
        free = [p for p, limit in places.items() if load[p] < limit]
        if not free:
            busy = ", ".join(f"{p} {load[p]}/{limit}" for p, limit in places.items())
            return None, f"{WAITING}every {backend.place_kind} is busy ({busy})"
        order = {p: i for i, p in enumerate(places)}
        best = min(free, key=lambda p: (load[p], -(places[p] - load[p]), order[p]))
        loads[(run["backend"], best)] = load[best] + 1
        return best, ""

    def placeholder(self, place: str | None) -> Handle:
        """The handle of a run this process is starting (at ``place``, for a backend with
        places): whose it is, so a status read can tell when it died doing so."""
        from orch_plugins.supervisor import proc_start_time

        pid = os.getpid()
        mark: Handle = {"placing": place} if place is not None else {"starting": True}
        return {**mark, "pid": pid, "start_time": proc_start_time(pid)}

    def admit(self, run: Run) -> _Claim | None:
        """Decide one run (queued, or running and deferred): a claim to start it now, or
        None (it waits; a queued run is then deferred with its note). A run that can go
        nowhere fails."""
        deferred = run["status"] == RUNNING
        if not self.has_places(run["backend"]):
            if not deferred:
                self._set_running(run, self.placeholder(None))
            return _Claim(run)
        try:
            spec = read_spec(run)
            place, note = self.choose(run, spec)
        except Exception as exc:
            self.store.finish(run["run_id"], FAILED, error=f"launch failed: {exc}", handle=None)
            return None
        if place is None:
            if not deferred:
                self._set_running(run, dict(DEFERRED))
            if run.get("error") != note:
                self.store.update(run["run_id"], error=note)
            return None
        if deferred:
            self.store.update(run["run_id"], handle=self.placeholder(place))
        else:
            self._set_running(run, self.placeholder(place))
        return _Claim(run, place, spec)

    def _set_running(self, run: Run, handle: Handle | None) -> None:
        fields: dict[str, object] = {"status": RUNNING, "started_at": time.time(), "handle": handle}
        if str(run.get("error") or "").startswith(WAITING):
            fields["error"] = run["error"] = None  # waited for the budget: no longer
        self.store.update(run["run_id"], **fields)
        run["status"] = RUNNING
        self.running.append(run)


def _claim(store: Store, round_: _Round) -> list[_Claim]:
    """Take every run that fits, oldest first, in one transaction: first the deferred ones
    that now have room (they already hold a global slot), then queued ones while their
    ``max_parallel`` allows (a queued run that waits holds up those behind it)."""
    claims: list[_Claim] = []
    with store.transaction():
        runs = store.runs(statuses=(QUEUED, RUNNING), latest_only=False, include_archived=True)
        queued = [r for r in runs if r["status"] == QUEUED]
        deferred = [r for r in runs if r["status"] == RUNNING and is_deferred(r["handle"])]
        if not queued and not deferred:
            return []
        round_.running = [r for r in runs if r["status"] == RUNNING]
        for run in deferred:
            claim = round_.admit(run)
            if claim is not None:
                claims.append(claim)
        refusal = over_budget(store, round_.config) if queued else None
        state = store.admission_state()
        paused = pause_left(state, time.time()) > 0
        for run in queued:
            if refusal:
                note = f"{WAITING}{refusal}"
                if run.get("error") != note:
                    store.update(run["run_id"], error=note)
                continue
            limit = run["max_parallel"]
            if state["effective_limit"] is not None:
                limit = min(limit, state["effective_limit"])
            if paused or len(round_.running) >= limit:
                break
            claim = round_.admit(run)
            if claim is not None:
                claims.append(claim)
    for claim in claims:
        claim.run = store.get_run(claim.run["run_id"])
    return claims


def start(store: Store, claims: list[_Claim], plugins: Plugins, config: Config) -> None:
    """Hand claimed runs to their backends, many at once where a backend can batch (tmux),
    each at its place where the backend has places; a run its backend cannot start fails,
    with the reason. A run cancelled while it started is stopped again."""
    by_backend: dict[str, list[tuple[Run, LaunchSpec, str | None]]] = {}
    for claim in claims:
        run = claim.run
        try:
            spec = replace(claim.spec or read_spec(run), place=claim.place)
        except Exception as exc:
            store.finish(run["run_id"], FAILED, error=f"launch failed: {exc}", handle=None)
            continue
        by_backend.setdefault(run["backend"], []).append((run, spec, claim.place))
    for name, batch in by_backend.items():
        try:
            backend = plugins.backend(name, BackendContext.of(name, config, store.state_dir))
        except Exception as exc:
            for run, _, _ in batch:
                store.finish(run["run_id"], FAILED, error=f"launch failed: {exc}")
            continue
        fresh = [(r, s) for r, s, p in batch if s.resume_from is None and p is None]
        handles: dict[int, Handle] = {}
        fault("launch-claimed")  # claimed (running, a placeholder handle), nothing started
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
                done = {r["run_id"] for r, _ in fresh}
                batch = [b for b in batch if b[0]["run_id"] not in done]
        for run, spec, place in batch:
            try:
                if run["run_id"] in handles:
                    handle = handles[run["run_id"]]
                elif spec.resume_from is not None:
                    handle = backend.resume(spec, spec.resume_from)
                else:
                    handle = backend.launch(spec)
            except Exception as exc:
                log.debug("launch of run %s failed", run["run_id"], exc_info=True)
                store.finish(run["run_id"], FAILED, error=f"launch failed: {exc}", handle=None)
                continue
            fault("launch-spawned")  # started, its handle not yet recorded
            fields: dict[str, object] = {"handle": handle}
            if place is not None and str(run.get("error") or "").startswith(WAITING):
                fields["error"] = None
            store.update(run["run_id"], **fields)
            if store.get_run(run["run_id"])["status"] == CANCELLED:
                # Cancelled while it started (the cancel found no handle to stop): stop it.
                backend.cancel(handle, spec.kill_grace)
                continue
            if not plugins.listens("orch_agent_ended"):
                store.mark_unheard(run["run_id"])  # its supervisor announces nothing
            plugins.notify("orch_agent_launched", run=public(store.get_run(run["run_id"])))


def over_budget(store: Store, config: Config) -> str | None:
    """Why no new agent may start (the project budget, ``[budget]`` in the config, is spent),
    or None: ``project budget spent: $12.40 today of daily_usd $10.00``. Days are UTC days;
    the spend is the cost ledger's (cleared runs count)."""
    from orch_plugins.progress import money

    budget = config.budget
    checks = []
    if "daily_usd" in budget:
        day = time.time() // 86400 * 86400
        checks.append(("daily_usd", budget["daily_usd"], store.spent(since=day), " today"))
    if "total_usd" in budget:
        checks.append(("total_usd", budget["total_usd"], store.spent(), ""))
    for key, limit, spent, when in checks:
        if spent >= limit:
            return f"project budget spent: {money(spent)}{when} of {key} {money(limit)}"
    return None


def pump(
    store: Store,
    plugins: Plugins | None = None,
    config: Config | None = None,
    *,
    wake: bool = True,
) -> int:
    """Start runs while there is room; returns how many were started. With ``wake``, runs
    left queued behind a rate-limit pause get a waker process (:func:`wake_after_pause`)."""
    started = 0
    while True:
        round_ = _Round(store, plugins, config)
        claims = _claim(store, round_)
        if not claims:
            if wake and store.pause_left() > 0 and store.count(QUEUED):
                wake_after_pause(store)
            return started
        plugins, config = round_.plugins, round_.config
        start(store, claims, plugins, config)
        started += len(claims)


#: In the state directory: held (``flock``) by the one waker process waiting out a pause.
WAKER_LOCK = "admission.lock"


def wake_after_pause(store: Store) -> None:
    """Start a detached ``python -m orch_plugins.admission STATE_DIR --after-pause`` (unless
    one already waits: it holds :data:`WAKER_LOCK`), which pumps when the pause has passed.
    Without it, agents queued behind a pause with nothing running would wait for the next
    ``orch`` command."""
    import fcntl
    import subprocess

    from orch_plugins import procs

    path = store.state_dir / WAKER_LOCK
    try:
        with open(path, "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)  # released at close: nobody waits
    except OSError:
        return  # a waker holds it
    with procs.detached() as kw:
        subprocess.Popen(
            [sys.executable, "-m", "orch_plugins.admission", str(store.state_dir), "--after-pause"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            close_fds=True,
            **kw,
        )


def _after_pause(store: Store) -> None:
    """The waker: while runs are queued behind a pause, sleep it out, then pump."""
    import fcntl

    with open(store.state_dir / WAKER_LOCK, "a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return
        while store.count(QUEUED):
            left = store.pause_left()
            if left <= 0:
                pump(store, wake=False)
                if not (store.pause_left() > 0 and store.count(QUEUED)):
                    return
                continue
            time.sleep(min(left + 0.05, 2.0))  # a pause may be moved: look again soon


def main(argv: list[str] | None = None) -> int:
    """``python -m orch_plugins.admission STATE_DIR [--announce FILE] [--after-pause]``: what
    an ending supervisor runs when agents are queued: start what fits, fire
    ``orch_agent_ended`` for every end not yet announced, and for the run its supervisor
    handed over in FILE. ``--after-pause``: the waker (:func:`wake_after_pause`)."""
    from orch_plugins.events import announce_ended, announce_file

    args = list(sys.argv[1:] if argv is None else argv)
    if "--after-pause" in args:
        args.remove("--after-pause")
        waker_store = Store(Path(args[0]), create=False)
        _after_pause(waker_store)
        announce_ended(waker_store)
        return 0
    ended = None
    if "--announce" in args and args.index("--announce") + 1 < len(args):
        i = args.index("--announce")
        ended = args[i + 1]
        del args[i : i + 2]
    store = Store(Path(args[0]), create=False)
    pump(store)
    announce_ended(store)
    if ended:
        announce_file(ended)
    return 0


if __name__ == "__main__":
    sys.exit(main())

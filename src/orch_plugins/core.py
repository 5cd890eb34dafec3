"""What every face of the pack (CLI, slash commands, hooks, plugins) does to agents.

The core writes records, asks admission for a slot and hands specs to backends; it reads state
only from the store and asks a backend only what the store cannot know (is it alive, stop it).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import sqlite3
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from orch_plugins.plugins import Plugins

from orch_plugins import admission, worktrees
from orch_plugins.backend import Backend, BackendContext, LaunchSpec, RunUpdate
from orch_plugins.claude import (
    TOOLS_VAR,
    UNSET_ENV,
    agent_env,
    build_argv,
    interactive_argv,
    retry_argv,
)
from orch_plugins.config import Config, load_config
from orch_plugins.errors import OrchError
from orch_plugins.events import SETTLE, announce_ended
from orch_plugins.model import MAX_TASK_BYTES, Handle, LaunchRequest, Run, check_task
from orch_plugins.procs import (
    RUN_TOKEN_VAR,
    fault,
    pid_alive,
    proc_start_time,
    stop_run,
    stop_supervisor,
)
from orch_plugins.roles import Role
from orch_plugins.store import (
    CANCELLED,
    COMPLETED,
    ENDED_MARKER,
    FINAL,
    LOST,
    NAME_RE,
    QUEUED,
    RUNNING,
    Store,
    atomic_write,
    decode_changes,
    iso,
    validate_name,
)
from orch_plugins.supervisor import (
    STOP_FILE,
    batch_run_alive,
    cancel_batch_run,
    disk_full,
    is_batch,
    logged_result,
    read_left_end,
    result_fields,
)

log = logging.getLogger(__name__)

UUID_RE = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
#: A run claimed without a placeholder handle (by an older orch) whose backend has not reported
#: a handle after this long is taken as lost.
START_GRACE = 60.0
#: Columns a supervisor may leave in its end file (``orch_plugins.supervisor.leave_end``).
_RUN_COLUMNS = frozenset(
    {
        "exit_code", "tool_calls", "num_turns", "cost_usd", "duration_ms", "usage", "error",
        "session_id", "changes", "models", "input_tokens", "output_tokens",
        "cache_read_tokens", "cache_creation_tokens",
    }
)  # fmt: skip
#: Why a running agent is taken as lost: its processes died (supervisor killed, machine
#: restarted), or the process starting it died before anything of it started.
DIED, ABANDONED = "died", "abandoned"
__all__ = ["MAX_TASK_BYTES", "Orchestrator", "Source", "WaitTimeout", "check_task"]
#: The role a run was launched with, as resolved then (``Role.to_json()``), in its run directory:
#: resume and fork reuse it rather than looking the name up again where they are called from.
ROLE_FILE = "role.json"


class WaitTimeout(OrchError):
    """``orch wait --timeout`` ran out before the awaited agents ended."""


@dataclass(frozen=True)
class Source:
    """What a fork or a resume starts from: a Claude Code session, where it ran, and (for an
    agent) the backend and handle of its newest run, and that run."""

    #: The agent name or session id the source was asked for as.
    ref: str
    session_id: str
    cwd: str
    backend: str | None = None
    handle: Handle | None = None
    run: Run | None = None


@dataclass(frozen=True)
class _Origin:
    """The session a new run continues (``claude --resume``), and what it is recorded as."""

    session_id: str
    fork: bool
    #: The source run's handle ({} when it had none): the backend's ``resume`` gets it. None
    #: for a bare session id, which is simply launched with ``--resume``.
    handle: Handle | None
    #: The ``parent`` column: ``NAME#RUN_ID`` for a resume, the ``--from`` reference for a fork.
    parent: str
    #: For a resume: the recorded claude of each earlier run on the session, for the new run's
    #: supervisor to stop if it still runs (``LaunchSpec.previous_claudes``).
    previous_claudes: list[dict[str, int | None]] = field(default_factory=list)
    #: The run it continues or forks, when the source is an agent (its worktree is reused by
    #: a resume; a fork's new worktree branches from its branch).
    run: Run | None = None


class Orchestrator:
    def __init__(
        self,
        store: Store | None = None,
        config: Config | None = None,
        plugins: Plugins | None = None,
    ) -> None:
        self.store = store or Store.open()
        self.config = config or load_config()
        self._plugins = plugins

    @property
    def plugins(self) -> Plugins:
        if self._plugins is None:
            from orch_plugins.plugins import get_plugins

            self._plugins = get_plugins()
        return self._plugins

    # -- launching --------------------------------------------------------------------------

    def launch(self, request: LaunchRequest, *, start: bool = True) -> Run:
        """Record a new agent and start it if a slot is free; never waits for the agent.

        ``start=False`` only queues it: a caller launching many calls :meth:`start_queued`
        once afterwards, so a backend that can batch (tmux) starts them in few calls.
        Raises :class:`OrchError` for an unknown source, role or backend, or a name in use.
        """
        if request.source is None:
            return self._create(request, origin=None, role_obj=None, keep_role=False, start=start)
        source = self.resolve_source(request.source)
        request = replace(
            request,
            # A fork into a new worktree runs there (its source's transcript is copied along).
            # Elsewhere (--cwd) the supervisor puts the source's transcript where claude looks.
            cwd=request.cwd
            if request.cwd is not None or self._forks_into_worktree(request, source)
            else source.cwd,
            backend=request.backend or source.backend,
        )
        role_obj, keep_role = None, False
        if request.role is None and source.run is not None:
            # A fork of an agent keeps the agent's role (or none) unless told otherwise.
            request = replace(request, role=source.run["role"])
            role_obj, keep_role = self.run_role(source.run), True
        origin = _Origin(source.session_id, True, source.handle, parent=source.ref, run=source.run)
        return self._create(
            request, origin=origin, role_obj=role_obj, keep_role=keep_role, start=start
        )

    def launch_many(self, requests: list[LaunchRequest]) -> list[Run]:
        """Record several agents, then start as many as slots allow in one go, so a backend
        that can batch (tmux) starts them in few calls. Returns their records, in order. An
        error (a name in use, an unknown role) stops at that request: the earlier ones stay
        recorded and are started."""
        ids: list[int] = []
        try:
            for request in requests:
                ids.append(self.launch(request, start=False)["run_id"])
        finally:
            if ids:
                self.start_queued()
                self._announce()
        return [self.store.get_run(run_id) for run_id in ids]

    def resume(
        self,
        name: str,
        task: str,
        *,
        fork: bool = False,
        as_name: str | None = None,
        max_budget_usd: float | None = None,
        backend: str | None = None,
        options: Mapping[str, object] | None = None,
        cwd: str | None = None,
    ) -> Run:
        """Continue an agent's Claude Code session (or a fork of it) with a new prompt.

        ``backend`` and ``options`` (launch options, ``{"host": "h2"}``) place the new run
        elsewhere than its source (default: the source's backend and its carried options);
        the session's transcript goes along (see :meth:`_transcript_copy`); so does ``cwd``
        (another directory). ``OrchError`` when a run that continues in
        the source's worktree is asked onto another backend, or any run of an agent with a
        worktree into another directory.

        A resume (not a fork) never runs beside a claude still living on the session: an
        interactive agent still open in its window is refused (quit it first); any other
        claude an earlier run left running is stopped by the new run's supervisor before it
        starts claude (``previous_claudes``). The new run keeps the source run's budget cap and
        idle timeout unless ``max_budget_usd`` is given.
        """
        src = self.refresh([self.store.require(name)])[0]  # a dead supervisor is lost now
        if src["status"] in (QUEUED, RUNNING) and not fork:
            raise OrchError(f"agent {name!r} is still {src['status']}; wait for it or cancel it")
        if not src["session_id"]:
            raise OrchError(f"agent {name!r} has no recorded Claude Code session to resume")
        backend = backend or src["backend"]
        if backend != src["backend"] and src["worktree"] and not fork:
            raise OrchError(
                f"agent {name!r} works in its worktree on backend {src['backend']!r}: resume it "
                "there (without --backend), or fork it (--fork) to continue elsewhere"
            )
        if cwd is not None and src["worktree"]:
            raise OrchError(
                f"agent {name!r} works in a worktree ({src['worktree']}): --cwd cannot move "
                "it; fork it with orch launch NEW TASK --from NAME --cwd DIR --no-worktree"
            )
        previous = [] if fork else self._previous_claudes(src["session_id"])
        recorded = _recorded_spec(src)
        carried = _carried_options(recorded) if backend == src["backend"] else {}
        request = LaunchRequest(
            name=as_name or (self._fork_name(name) if fork else name),
            task=task,
            role=src["role"],
            backend=backend,
            model=src["model"],
            cwd=cwd or src["cwd"],
            timeout=src["timeout"],
            retries=src["retries"],
            options={**carried, **(options or {})},
            keep_children=bool(recorded.get("keep_children")),
            orch_tools=_spec_env(recorded, TOOLS_VAR) == "1",
            # A fork of an agent with a worktree gets its own, branched from the source's tip.
            worktree=bool(src["branch"]) if fork else False,
            max_budget_usd=max_budget_usd if max_budget_usd is not None else src["max_budget_usd"],
            idle_timeout=src["idle_timeout"],
        )
        origin = _Origin(
            src["session_id"],
            fork,
            src["handle"] or {},
            f"{name}#{src['run_id']}",
            previous,
            run=src,
        )
        settings = self._worktree_settings()
        plan = None if fork else worktrees.continued(src, task, settings)
        return self._create(
            request, origin=origin, role_obj=self.run_role(src), keep_role=True, worktree=plan
        )

    def _previous_claudes(self, session_id: str) -> list[dict[str, int | None]]:
        """The recorded claude of each earlier run on ``session_id`` (newest first), for the
        new run's supervisor to stop if it still runs. Refuses while one of them is an
        interactive agent's claude still open for a person (its run completed, claude alive
        here): that one is not a leftover, and killing it could cut off someone typing."""
        out = []
        for row in self.store.session_runs(session_id):
            pid, start = row["claude_pid"], row["claude_start"]
            if pid is None:
                continue
            if (
                row["status"] == COMPLETED
                and _carried_options(_recorded_spec(row))  # interactive: tmux, this machine
                and proc_start_time(pid) == start
                and pid_alive(pid, start)
            ):
                raise OrchError(
                    f"agent {row['name']!r} is still open in its tmux window (claude pid {pid}) "
                    "on the session to resume: quit that claude (/exit, or close the window; "
                    f"or kill {pid}) first, or resume with --fork"
                )
            out.append({"pid": pid, "start_time": start, "run_id": row["run_id"]})
        return out

    def _fork_name(self, name: str) -> str:
        for i in range(1, 10_000):
            candidate = f"{name}-fork{'' if i == 1 else i}"
            if len(candidate) <= 64 and self.store.latest(candidate) is None:
                return candidate
        raise OrchError(f"no free fork name for {name!r}; pass --as NEWNAME")

    def run_role(self, run: Run) -> Role | None:
        """The role ``run`` was launched with, as it was then (its ``role.json``), so a resume
        or fork from any directory gets the same prompt, tools and mode. A run recorded before
        roles were kept has no such file: its role is looked up by name (``OrchError`` when
        unknown)."""
        if not run["role"]:
            return None
        path = Path(run["run_dir"], ROLE_FILE)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return self.plugins.role(run["role"])
        except (OSError, ValueError) as exc:
            raise OrchError(f"cannot read the role agent {run['name']!r} ran with: {exc}") from None
        try:
            return Role.from_json(data)
        except (TypeError, ValueError, AttributeError) as exc:
            raise OrchError(f"{path} does not hold a role: {exc}") from None

    def resolve_source(self, ref: str) -> Source:
        """An agent name (its newest run) or a Claude Code session id, as a :class:`Source`;
        :class:`OrchError` when it is neither, or the agent has no session yet."""
        if NAME_RE.fullmatch(ref):
            run = self.store.latest(ref)
            if run is not None:
                if not run["session_id"]:
                    raise OrchError(f"agent {ref!r} has no recorded Claude Code session yet")
                return Source(
                    ref, run["session_id"], run["cwd"], run["backend"], run["handle"] or {}, run
                )
        if UUID_RE.fullmatch(ref):
            known = self.store.session(ref)
            if known and known.get("cwd"):
                return Source(ref, ref, known["cwd"])
            cwd = transcript_cwd(ref)
            if cwd:
                return Source(ref, ref, cwd)
        raise OrchError(f"unknown agent or session {ref!r} (see 'orch status' and 'orch sessions')")

    def _transcript_copy(self, session_id: str) -> str | None:
        """The transcript copy a resume or fork of ``session_id`` takes along: the one the
        newest run of the session that started claude kept (``transcript.jsonl.gz`` in its
        run directory, brought home from a remote host with its other files). None when that
        run kept none (it still runs, was lost, or ran before copies were kept): the run then
        has only what Claude Code holds where it starts, and a remote backend goes back to
        where the session ran.
        An older run's copy is never taken: it would silently lack the newest turns."""
        from orch_plugins.supervisor import TRANSCRIPT_COPY

        for run in self.store.session_runs(session_id):
            if run["status"] in FINAL and not run["attempt"]:
                continue  # it never started claude (a resume that could not): no new turns
            if run["status"] not in FINAL:
                return None
            path = Path(run["run_dir"], TRANSCRIPT_COPY)
            return str(path) if path.is_file() else None
        return None

    def _create(
        self,
        request: LaunchRequest,
        *,
        origin: _Origin | None,
        role_obj: Role | None,
        keep_role: bool,
        start: bool = True,
        worktree: worktrees.WorktreePlan | None = None,
    ) -> Run:
        """Record ``request`` as a queued run with its prompt, role and spec files, then (with
        ``start``) pump the queue. ``keep_role``: ``request.role`` is final (a resume or fork
        has the role, or none, its source ran with, never the configured default_role) and
        ``role_obj`` is that role as it was. ``worktree``: a resume's worktree (its source's);
        else one is planned (and, for a local backend, made) when the request or role asks."""
        name = request.name
        refusal = admission.over_budget(self.store, self.config)
        if refusal:
            raise OrchError(f"{refusal}; no new agent is started (running ones go on)")
        workdir = request.cwd or str(Path(os.getcwd()).resolve())
        role_name = request.role if keep_role else request.role or self.config.default_role
        if role_obj is None and role_name:
            role_obj = self.plugins.role(role_name)
        backend_name = request.backend or self.config.default_backend
        # An unknown backend, or options it does not take: fail before recording.
        backend_cls = self.plugins.backend_class(backend_name)
        options = backend_cls.check_options(request.options)
        claude_bin = self.config.resolve_claude()
        if worktree is None:
            active = self.store.active_run(name)  # before a worktree is made for nothing
            if active is not None:
                raise OrchError(
                    f"agent {name!r} is already {active['status']}; cancel it or pick another name"
                )
            worktree = self._plan_worktree(request, role_obj, origin, backend_cls, workdir)
        if worktree is not None and worktree.cwd:
            workdir = worktree.cwd
        interactive = bool(options.get("interactive"))
        tools = orch_tools(request, role_obj)
        argv = build_argv(
            claude_bin,
            role=role_obj,
            model=request.model,
            resume_session=origin.session_id if origin else None,
            fork=origin.fork if origin else False,
            interactive=interactive,
            max_budget_usd=request.max_budget_usd,
            orch_tools=tools,
        )
        retry = retry_argv(
            claude_bin,
            role=role_obj,
            model=request.model,
            interactive=interactive,
            max_budget_usd=request.max_budget_usd,
            orch_tools=tools,
        )
        framed = role_obj.frame(request.task) if role_obj else request.task
        state_dir = str(self.store.state_dir.resolve())
        try:
            run = self._insert(
                request, origin, role_obj, role_name, backend_name, options, argv, retry,
                framed, state_dir, workdir, worktree,
            )  # fmt: skip
        except BaseException:
            if worktree is not None:
                worktrees.remove_half_made(worktree)
            raise
        fault("launch-queued")  # recorded (queued), not yet claimed
        if start:
            self.start_queued()
            self._announce()  # a run its backend refused has ended
        return self.store.get_run(run["run_id"])

    def _insert(
        self,
        request: LaunchRequest,
        origin: _Origin | None,
        role_obj: Role | None,
        role_name: str | None,
        backend_name: str,
        options: dict[str, Any],
        argv: list[str],
        retry: list[str],
        framed: str,
        state_dir: str,
        workdir: str,
        worktree: worktrees.WorktreePlan | None,
    ) -> Run:
        """The run's record and its files (prompt, role, spec), in one transaction."""
        name = request.name
        # The watchdog reads a stream: an interactive agent has none.
        interactive = bool(options.get("interactive"))
        idle_timeout = request.idle_timeout or self.config.idle_timeout
        launcher = self.launcher_run()
        depth = launcher["depth"] + 1 if launcher else 1
        if depth > self.config.max_depth:
            raise OrchError(
                f"cannot launch {name!r}: agent {launcher['name'] if launcher else '?'!r} is at "
                f"depth {depth - 1} and max_depth is {self.config.max_depth}, so it may not "
                "launch agents (config max_depth, ORCH_MAX_DEPTH)"
            )
        made: list[Path] = []
        try:
            with self.store.transaction():
                active = self.store.active_run(name)
                if active is not None:
                    raise OrchError(
                        f"agent {name!r} is already {active['status']}; cancel it or pick "
                        "another name"
                    )
                live = self.store.count_active()
                if live >= self.config.max_agents:
                    raise OrchError(
                        f"cannot launch {name!r}: {live} agents are queued or running in this "
                        f"project and max_agents is {self.config.max_agents} (config max_agents, "
                        "ORCH_MAX_AGENTS); wait for some to end"
                    )
                run = self.store.insert_run(
                    name=name,
                    task=request.task,
                    role=role_name,
                    backend=backend_name,
                    model=request.model or (role_obj.model if role_obj else None),
                    cwd=workdir,
                    timeout=request.timeout,
                    retries=request.retries,
                    max_parallel=request.max_parallel or self.config.max_parallel,
                    max_budget_usd=request.max_budget_usd,
                    idle_timeout=None if interactive else idle_timeout,
                    parent=origin.parent if origin else None,
                    **(worktree.fields if worktree else {}),
                    # An MCP server may not see that variable: the launching agent's own session.
                    launched_by=os.environ.get("CLAUDE_CODE_SESSION_ID")
                    or (launcher["session_id"] if launcher else None),
                    parent_run=launcher["run_id"] if launcher else None,
                    depth=depth,
                )
                run_dir = Path(run["run_dir"])
                made.append(run_dir)
                run_dir.mkdir(parents=True, exist_ok=True)
                prompt_path = run_dir / "prompt.txt"
                atomic_write(prompt_path, framed.encode("utf-8"))
                if role_obj is not None:
                    atomic_write(run_dir / ROLE_FILE, json.dumps(role_obj.to_json(), indent=1))
                if options.get("interactive"):
                    argv = interactive_argv(
                        argv,
                        prompt=framed,
                        prompt_path=str(prompt_path),
                        stop_file=str(run_dir / STOP_FILE),
                    )
                spec = LaunchSpec(
                    run_id=run["run_id"],
                    name=name,
                    argv=argv,
                    env=agent_env(
                        run_id=run["run_id"],
                        name=name,
                        state_dir=state_dir,
                        # secrets.token_hex(16) without loading OpenSSL (~4 MB) for status reads.
                        token=os.urandom(16).hex(),
                        fork_of=origin.session_id if origin and origin.fork else None,
                        orch_tools=orch_tools(request, role_obj),
                    ),
                    cwd=workdir,
                    run_dir=str(run_dir),
                    state_dir=state_dir,
                    prompt_path=str(prompt_path),
                    output_path=run["output_path"],
                    log_path=run["log_path"],
                    timeout=request.timeout,
                    retries=request.retries,
                    retry_backoff=self.config.retry_backoff,
                    kill_grace=self.config.kill_grace,
                    result_grace=self.config.result_grace,
                    resume_from=origin.handle if origin else None,
                    resume_session=origin.session_id if origin else None,
                    resume_transcript=self._transcript_copy(origin.session_id) if origin else None,
                    keep_transcript=self.config.keep_transcripts,
                    previous_claudes=origin.previous_claudes if origin else [],
                    unset_env=list(UNSET_ENV),
                    options=options,
                    keep_children=request.keep_children
                    or bool(role_obj and role_obj.keep_children),
                    containment=self.config.containment,
                    retry_argv=retry,
                    worktree=worktree.spec if worktree else None,
                    idle_timeout=None if interactive else idle_timeout,
                    input_turns=not options.get("interactive"),
                )
                atomic_write(spec.spec_path, json.dumps(spec.to_json(), indent=1))
                fault("launch-record")  # the record and its files written, not committed
        except (OSError, sqlite3.OperationalError) as exc:
            # A full disk, say: the record is rolled back, its half-written files go too.
            for path in made:
                shutil.rmtree(path, ignore_errors=True)
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise OrchError(
                f"cannot record agent {name!r} in {self.store.state_dir}: {why}"
            ) from None
        return run

    def _forks_into_worktree(self, request: LaunchRequest, source: Source) -> bool:
        """Whether a fork (``--from``) gets a worktree of its own (asked for, or its source
        agent had one), and so may run outside its source's directory."""
        if request.worktree is not None:
            return request.worktree
        return bool(source.run and source.run["branch"])

    def _plan_worktree(
        self,
        request: LaunchRequest,
        role_obj: Role | None,
        origin: _Origin | None,
        backend_cls: type[Backend],
        workdir: str,
    ) -> worktrees.WorktreePlan | None:
        """The worktree a new run gets: asked for (``--worktree``, ``--base``), or its role's
        default, or (a fork) because its source agent had one. A role's default in a project
        that is not a git repository runs the agent in place, with a warning; asked for, it
        is an error."""
        source_run = origin.run if origin and origin.fork else None
        wanted = request.worktree
        implicit = wanted is None
        if implicit:
            # A role's default applies where orch makes the worktree itself (this machine): on
            # a remote host it needs the clone its [hosts.X] table names, so only an explicit
            # --worktree asks for one there.
            wanted = bool(source_run and source_run["branch"]) or bool(
                role_obj and role_obj.worktree and not backend_cls.makes_worktrees
            )
        if not wanted:
            return None
        settings = self._worktree_settings()
        here = not backend_cls.makes_worktrees
        if here and implicit:
            try:
                worktrees.repo_top(workdir)
            except OrchError as exc:
                log.warning("%s: running in place, without a worktree (%s)", request.name, exc)
                return None
        try:
            return worktrees.plan(
                name=request.name,
                task=request.task,
                cwd=workdir,
                base=request.base,
                store=self.store,
                settings=settings,
                here=here,
                fork_from=source_run,
            )
        except OrchError as exc:
            if not implicit:
                raise
            # A role's default where no worktree can be made (a repository without a commit
            # yet, say): in place, as in a directory that is no repository.
            log.warning("%s: running in place, without a worktree (%s)", request.name, exc)
            return None

    def launcher_run(self) -> Run | None:
        """The run of the agent whose tool is calling orch now (``ORCH_RUN_ID``, when it is a
        run of this store's project), or None for a person or the orchestrator."""
        value = os.environ.get("ORCH_RUN_ID", "")
        if not value.isdigit():
            return None
        state_dir = os.environ.get("ORCH_STATE_DIR")
        if state_dir and Path(state_dir).resolve() != self.store.state_dir.resolve():
            return None
        try:
            return self.store.get_run(int(value))
        except OrchError:
            return None

    def caller(self) -> str:
        """Who is calling, as messages and board posts record it: the agent's name inside an
        agent, ``orchestrator`` inside another Claude Code session, else ``user``."""
        launcher = self.launcher_run()
        if launcher is not None:
            return launcher["name"]
        return "orchestrator" if os.environ.get("CLAUDE_CODE_SESSION_ID") else "user"

    def start_queued(self) -> int:
        """Start queued agents while slots are free; returns how many started."""
        return admission.pump(self.store, self.plugins, self.config)

    def _announce(self, settle: float = 0.0) -> None:
        """Fire ``orch_agent_ended`` for ends not yet announced (see :mod:`orch_plugins.events`):
        all of them, or with ``settle`` only those older than that many seconds."""
        announce_ended(self.store, self._plugins, settle=settle)

    def _backend(self, name: str) -> Backend:
        """The backend ``name``, made with its context (its ``[backends.NAME]`` table, the
        state directory, the ``[hosts.*]`` tables)."""
        return self.plugins.backend(
            name, BackendContext.of(name, self.config, self.store.state_dir)
        )

    # -- reading ----------------------------------------------------------------------------

    def refresh(self, runs: list[Run]) -> list[Run]:
        """Check that running agents still live; mark the dead ones ``lost``; pump the queue."""
        running = [r for r in runs if r["status"] == RUNNING]
        # (run, its handle when its backend is to stop what is left, why it is lost)
        lost: list[tuple[Run, Handle | None, str]] = []
        by_backend: dict[str, list[Run]] = {}
        now = time.time()
        for run in running:
            handle = run["handle"]
            if handle is None:  # claimed by an orch from before placeholders for every start
                if now - (run["started_at"] or now) > START_GRACE:
                    lost.append((run, None, DIED))
                continue
            if admission.is_placeholder(handle):  # waiting for room, or being started
                supervisor = admission.checked_in(handle)
                if supervisor is not None:
                    # Its starter died before recording the real handle (or has not yet):
                    # the supervisor that checked in is the one to follow (of a batch: its
                    # run's thread, which leaves supervisor.end when it ends).
                    if not batch_run_alive(*supervisor, run["run_dir"]):
                        lost.append((run, None, DIED))
                elif admission.abandoned(handle):
                    lost.append((run, None, ABANDONED))
                continue
            by_backend.setdefault(run["backend"], []).append(run)
        changed = ended = False
        for run, update in self._poll(by_backend):
            if update.fields:
                changed = True
                if self._record(run["run_id"], update.fields):
                    ended = True
                    continue  # it ended, as its backend learnt
            if not update.alive:
                lost.append((run, run["handle"], DIED))
        # Runs shown lost that could not be recorded so (the store cannot be written: a full
        # disk): a status read still tells the truth, and a later one records it.
        unrecorded: dict[int, Run] = {}
        for run, handle, why in lost:
            try:
                recorded = self._record_lost(run, handle, why)
            except sqlite3.OperationalError as exc:
                note = f"its end could not be recorded: {exc}"
                unrecorded[run["run_id"]] = cast(Run, {**run, "status": LOST, "error": note})
                continue
            if recorded:
                changed = ended = True
            else:
                changed = True  # it ended, or its backend started it after all
        try:
            if (
                changed or running or any(r["status"] == QUEUED for r in runs)
            ) and admission.pending(self.store):
                self.start_queued()
                changed = True
            # An end this read recorded is announced now; others are their pump process's,
            # unless it evidently never ran.
            self._announce(0.0 if ended else SETTLE)
        except sqlite3.OperationalError as exc:  # a full disk: reading goes on
            log.warning("cannot start queued agents or announce ends now: %s", exc)
        if not (changed or unrecorded):
            return runs
        return [unrecorded.get(r["run_id"]) or self.store.get_run(r["run_id"]) for r in runs]

    def _record_lost(self, run: Run, handle: Handle | None, why: str) -> bool:
        """Record the end of a running ``run`` whose processes are gone (``why``: :data:`DIED`
        or :data:`ABANDONED`), unless it ended or its handle changed meanwhile; returns whether
        this call recorded it. A supervisor that died after claude's final result came in
        (it is in the run's log) leaves a run that completed: it is recorded so, from the log.
        Anything of the run still running is stopped (its backend, or the run's marker)."""
        left = read_left_end(run["run_dir"]) if why == DIED else None
        if left is not None and left["status"] in FINAL:
            # The supervisor decided, but the store could not take it then (a full disk).
            fields = {k: v for k, v in left.items() if k in _RUN_COLUMNS and k != "status"}
            note = "recorded late: the store could not be written when the run ended"
            fields["error"] = f"{fields['error']} ({note})" if fields.get("error") else note
            done = self.store.finish(
                run["run_id"], left["status"], if_handle=run["handle"], **fields
            )
            if done:
                self._stop_after(run, handle)
            return done
        if why == DIED:
            res = logged_result(run["log_path"]) or {}
            if res and not res.get("is_error"):
                fields = result_fields(
                    res, fork_of=_spec_env(_recorded_spec(run), "ORCH_FORK_OF") or None
                )
                text = res.get("result")
                out = Path(run["output_path"])
                if isinstance(text, str) and not out.exists():
                    with contextlib.suppress(OSError):
                        atomic_write(out, text.encode("utf-8"))
                done = self.store.finish(
                    run["run_id"],
                    COMPLETED,
                    if_handle=run["handle"],
                    error=None,
                    **{k: v for k, v in fields.items() if v is not None},
                )
                if done:
                    self._stop_after(run, handle)
                return done
        error = (
            "the orch process starting it was killed before the agent started; nothing ran "
            "(launch it again)"
            if why == ABANDONED
            else "the agent's process ended without recording a result "
            "(killed, or the machine restarted)"
        )
        if disk_full(self.store.state_dir):
            error += f"; the file system of {self.store.state_dir} is full"
        if not self.store.finish(run["run_id"], LOST, if_handle=run["handle"], error=error):
            return False
        if why == DIED:
            self._stop_after(run, handle)
        return True

    def _stop_after(self, run: Run, handle: Handle | None) -> None:
        """Stop whatever a run whose supervisor died left running: through its backend when it
        has a handle, else by the run's marker (its supervisor checked in on a placeholder)."""
        if handle:
            self._stop_leftovers(run["backend"], handle)
            return
        with contextlib.suppress(Exception):  # best effort: the run is recorded already
            stop_run(run["run_id"], _spec_env(_recorded_spec(run), RUN_TOKEN_VAR), 0.5)

    @staticmethod
    def _stop_checked_in(run: Run, supervisor: tuple[int, int | None], grace: float) -> None:
        """Cancel a run through the supervisor that checked in on its placeholder handle (a
        batch's process: that run alone, never the batch's other runs)."""
        token = _spec_env(_recorded_spec(run), RUN_TOKEN_VAR)
        if is_batch(supervisor[0]):
            cancel_batch_run(*supervisor, run["run_dir"], grace, run_id=run["run_id"], token=token)
            return
        stop_supervisor(*supervisor, grace, run_id=run["run_id"], token=token)

    def fetch_files(self, run: Run) -> None:
        """Have the run's backend bring its files home (remote backends) before we read them."""
        with contextlib.suppress(OrchError):
            self._backend(run["backend"]).fetch_files(run)

    def read_output(self, run: Run) -> str:
        """The final result of ``run`` (its output file, brought home first by a remote
        backend). :class:`OrchError` while it is queued or running, or when it ended
        without one."""
        name = run["name"]
        if run["status"] in (QUEUED, RUNNING):
            raise OrchError(
                f"agent {name!r} is still {run['status']}; no output yet (orch wait {name})"
            )
        self.fetch_files(run)
        out = Path(run["output_path"])
        if not out.exists():
            raise OrchError(f"agent {name!r} {run['status']} without output: {run['error'] or '-'}")
        return out.read_text(encoding="utf-8", errors="replace")

    def _record(self, run_id: int, update: Mapping[str, object]) -> bool:
        """Record what a backend learnt about a run; True when a final status among the
        fields ended it."""
        # Columns of the run, as the backend learnt them: the store writes them as given.
        fields: dict[str, Any] = dict(update)
        status = fields.pop("status", None)
        if status in FINAL:
            self.store.finish(run_id, status, **fields)
            return True
        if fields:
            self.store.update(run_id, **fields)
        return False

    def _stop_leftovers(self, backend: str, handle: Handle) -> None:
        # Best effort: the run is already recorded as lost.
        with contextlib.suppress(Exception):
            self._backend(backend).cancel(handle, 0.5)

    def status(self, names: Iterable[str] = (), *, include_all: bool = False) -> list[Run]:
        names = list(names)
        for name in names:
            self.store.require(name)
        # A name asked for by name is shown even when archived.
        runs = self.store.runs(
            names, include_archived=include_all or bool(names), latest_only=not include_all
        )
        return self.refresh(runs)

    def wait(
        self,
        names: Iterable[str] = (),
        *,
        any_: bool = False,
        timeout: float | None = None,
        poll: float = 0.05,
        recheck: float = 0.5,
    ) -> list[Run]:
        """Block until the awaited agents (default: all active ones) end; return their runs.

        Every ``poll`` seconds it only stats the store's ``ended`` marker (appended to whenever
        a run ends), and reads the store when that changed or ``recheck`` seconds passed (to
        notice lost agents, remote news and freed slots): quick to notice, cheap to keep
        waiting beside agents that need the CPU.
        """
        names = list(names)
        if names:
            ids = [self.store.require(n)["run_id"] for n in names]
        else:
            ids = [r["run_id"] for r in self.store.runs(statuses=(QUEUED, RUNNING))]
        deadline = None if timeout is None else time.monotonic() + timeout
        marker = self.store.state_dir / ENDED_MARKER
        seen: tuple[int, int] | None = None
        next_check = 0.0
        while True:
            now = time.monotonic()
            try:
                st = marker.stat()
                stamp = (st.st_size, st.st_mtime_ns)
            except OSError:
                stamp = None
            if stamp != seen or now >= next_check:
                seen, next_check = stamp, now + recheck
                runs = self.refresh([self.store.get_run(i) for i in ids])
                done = [r for r in runs if r["status"] in FINAL]
                if len(done) == len(runs) or (any_ and done):
                    return runs
            if deadline is not None and now >= deadline:
                pending = ", ".join(r["name"] for r in runs if r["status"] not in FINAL)
                raise WaitTimeout(f"timed out waiting for: {pending}")
            time.sleep(poll)

    # -- messages and the board ---------------------------------------------------------------

    def send(self, name: str, text: str) -> dict[str, Any]:
        """Give a running agent ``text`` as its next user turn, and record it (sender, time).

        A print-mode agent gets it when its current turn ends (see
        :func:`orch_plugins.supervisor.post_message`); an interactive tmux agent gets it pasted
        into its pane, also after its first turn completed while its claude is still open.
        Returns the message record (``{message_id, run_id, sender, text, sent_at}``).
        :class:`OrchError` for an empty text, an unknown agent, one not started yet, one that
        has ended ("resume it instead"), or a backend that cannot deliver."""
        check_message(text)
        run = self.refresh([self.store.require(name)])[0]
        if run["status"] == QUEUED:
            raise OrchError(f"agent {name!r} has not started yet (queued); send once it runs")
        if run["status"] != RUNNING and not self._open_interactive(run):
            raise OrchError(
                f"agent {name!r} has ended ({run['status']}); resume it instead: "
                f"orch resume {name} TASK"
            )
        sender = self.caller()
        at = iso(time.time())
        event = {"type": "orch", "subtype": "message", "from": sender, "at": at, "text": text}
        self._backend(run["backend"]).send(run, text, event)
        return self.store.add_message(run["run_id"], sender, text)

    @staticmethod
    def _open_interactive(run: Run) -> bool:
        """An interactive agent whose run completed and whose claude is still open here."""
        pid, start = run["claude_pid"], run["claude_start"]
        return (
            run["status"] == COMPLETED
            and bool(_carried_options(_recorded_spec(run)))
            and pid is not None
            and pid_alive(pid, start)
        )

    def board_post(self, text: str) -> dict[str, Any]:
        """Add ``text`` to the project's board, signed by :meth:`caller`; returns the post
        (``{post_id, author, run_id, session_id, text, posted_at}``). :class:`OrchError` for an
        empty or oversized text."""
        check_message(text, what="post")
        launcher = self.launcher_run()
        return self.store.post(
            self.caller(),
            text,
            run_id=launcher["run_id"] if launcher else None,
            session_id=os.environ.get("CLAUDE_CODE_SESSION_ID") or None,
        )

    def board_read(self, since: int = 0) -> list[dict[str, Any]]:
        """The board's posts with an id above ``since``, oldest first."""
        if since < 0:
            raise OrchError("--since must be 0 or more")
        return self.store.board(since=since)

    # -- stopping and tidying ---------------------------------------------------------------

    def cancel(
        self, names: Iterable[str] = (), *, all_: bool = False, tree: bool = False
    ) -> list[Run]:
        """Cancel agents: queued ones at once, running ones through their backend, in parallel.
        ``tree``: also every live agent they launched, directly or not."""
        if all_:
            targets = self.store.runs(statuses=(QUEUED, RUNNING), latest_only=False)
        else:
            targets = []
            named = [self.store.require(name) for name in names]
            if tree:
                named += self.store.descendants(r["run_id"] for r in named)
            seen: set[int] = set()
            for run in named:
                if run["status"] in FINAL or run["run_id"] in seen:
                    continue
                seen.add(run["run_id"])
                targets.append(run)
        grace = self.config.kill_grace
        threads = []
        for run in targets:
            self.store.update(run["run_id"], cancel_requested=1)
            if self.store.finish(
                run["run_id"], CANCELLED, only_from=(QUEUED,), error="cancelled before it started"
            ):
                continue
            run = self.store.get_run(run["run_id"])  # it may have just been started
            handle = run["handle"]
            # A placeholder has nothing to stop yet: the pump starting it stops it again, and
            # a supervisor checking in later finds its run ended. One that checked in already
            # (its starter died before recording the handle) is stopped here.
            supervisor = admission.checked_in(handle)
            if handle and not admission.is_placeholder(handle):
                backend = self._backend(run["backend"])
                t = threading.Thread(target=backend.cancel, args=(handle, grace))
            elif supervisor is not None:
                t = threading.Thread(target=self._stop_checked_in, args=(run, supervisor, grace))
            else:
                continue
            t.start()
            threads.append(t)
        for t in threads:
            t.join()
        self._collect_cancelled(targets)
        out = []
        for run in targets:
            # A supervisor that could not record its ending is recorded here.
            self.store.finish(run["run_id"], CANCELLED, error="cancelled")
            out.append(self.store.get_run(run["run_id"]))
        if admission.pending(self.store):
            self.start_queued()
        self._announce()
        return out

    def _collect_cancelled(self, targets: list[Run]) -> None:
        """After cancelling: what the backends of runs still recorded running learnt of their
        ends (a remote supervisor records ``cancelled`` with its session id and cost where it
        runs, and only a poll brings that home). Only an end is recorded; a backend that cannot
        tell is not asked again."""
        by_backend: dict[str, list[Run]] = {}
        for run in targets:
            fresh = self.store.get_run(run["run_id"])
            handle = fresh["handle"]
            if fresh["status"] == RUNNING and handle and not admission.is_placeholder(handle):
                by_backend.setdefault(fresh["backend"], []).append(fresh)
        for run, update in self._poll(by_backend):
            if update.fields.get("status") in FINAL:
                self._record(run["run_id"], update.fields)

    def _poll(self, by_backend: Mapping[str, list[Run]]) -> list[tuple[Run, RunUpdate]]:
        """Each backend's :meth:`~Backend.poll` of its runs: (run, update) for each run it
        answered for. A backend whose plugin is gone or whose host is unreachable: we cannot
        tell, so we say nothing rather than fail every status read."""
        out = []
        for name, group in by_backend.items():
            try:
                updates = self._backend(name).poll(group)
            except Exception as exc:
                log.warning("cannot check %s agents: %s", name, exc)
                continue
            out += [(r, updates[r["run_id"]]) for r in group if r["run_id"] in updates]
        return out

    def clear(self, *, archive: bool = False, kept: list[tuple[Run, str]] | None = None) -> int:
        """Forget (or archive) every ended run; running and queued agents are never touched.

        An agent's worktree and branch go with its runs when nothing in them is unmerged or
        uncommitted; otherwise the worktree, the branch and the agent's runs are kept, and
        each such agent's newest run is added to ``kept`` with the reason."""
        self._announce()  # before their records go
        runs = self.store.runs(include_archived=not archive, latest_only=False)
        ended = [r for r in runs if r["status"] in FINAL]
        if archive:
            return self.store.archive(r["run_id"] for r in ended)
        keep_branches: set[str] = set()
        newest: dict[str, Run] = {}
        for run in self.store.runs(include_archived=True, latest_only=False):
            if run["branch"]:
                newest[run["branch"]] = run  # oldest first: the last one wins
        for branch, run in newest.items():
            if run["status"] not in FINAL:
                keep_branches.add(branch)
                continue
            why = self._worktree_keeps(run)
            if why:
                keep_branches.add(branch)
                if kept is not None:
                    kept.append((run, why))
        gone = [r for r in ended if not (r["branch"] and r["branch"] in keep_branches)]
        for run in self.store.delete(r["run_id"] for r in gone):
            shutil.rmtree(run["run_dir"], ignore_errors=True)
        return len(gone)

    # -- worktrees: the way back ------------------------------------------------------------

    def _worktree_keeps(self, run: Run) -> str | None:
        """Why the worktree and branch of the ended ``run`` must stay (unmerged commits,
        uncommitted changes, a host out of reach), or None after removing them."""
        changes = decode_changes(run["changes"]) or {}
        if changes.get("discarded"):
            return None
        try:
            lost = self._unmerged(run)
            if lost:
                return lost
            self._remove_worktree(run, force=True)  # checked: nothing is lost
        except OrchError as exc:
            return f"could not check it: {exc}"
        except worktrees.GitError as exc:
            return f"could not check it: {exc}"
        return None

    def _worktree_settings(self) -> worktrees.WorktreeSettings:
        return worktrees.WorktreeSettings.from_table(self.config.worktree)

    def _worktree_backend(self, run: Run) -> Backend | None:
        """The run's backend when it makes worktrees elsewhere (remote), else None."""
        if self.plugins.backend_class(run["backend"]).makes_worktrees:
            return self._backend(run["backend"])
        return None

    def _repo_for(self, run: Run) -> str:
        """The local repository holding the run's branch: its worktree's, or (remote agents,
        or a worktree removed by hand) the checkout ``orch`` runs in."""
        if run["worktree"] and os.path.isdir(run["worktree"]) and not self._worktree_backend(run):
            return worktrees.repo_top(run["worktree"])
        return worktrees.repo_top(os.getcwd())

    def worktree_run(self, name: str, *, ended: bool = False) -> tuple[Run, str]:
        """The newest run of agent ``name`` with a worktree, and the local repository holding
        its branch (a remote agent's branch fetched home first). ``ended``: refuse while it is
        queued or running. :class:`OrchError` when it has no worktree."""
        run = self.refresh([self.store.require(name)])[0]
        if not run["branch"]:
            raise OrchError(f"agent {name!r} has no worktree (launch it with --worktree)")
        if ended and run["status"] not in FINAL:
            raise OrchError(f"agent {name!r} is still {run['status']}; wait for it first")
        changes = decode_changes(run["changes"]) or {}
        if changes.get("discarded"):
            raise OrchError(f"agent {name!r}'s worktree and branch {run['branch']} were discarded")
        repo = self._repo_for(run)
        backend = self._worktree_backend(run)
        if backend is not None:
            if not run["base"]:
                raise OrchError(f"agent {name!r}'s worktree was not made on its host")
            backend.fetch_branch(run, repo)
        return run, repo

    def diff(self, name: str, *, stat: bool = False) -> tuple[Run, str, dict[str, Any]]:
        """What agent ``name`` changed against its base: (run, the ``git diff`` text, or with
        ``stat`` its ``--stat``; the summary with a ``paths`` list of ``{path, insertions,
        deletions}``). A local agent still running is compared with its worktree as it is
        now (uncommitted edits included); an ended one with its branch."""
        run, repo = self.worktree_run(name)
        base, branch = str(run["base"]), str(run["branch"])
        live = run["status"] not in FINAL and run["worktree"] and os.path.isdir(run["worktree"])
        where, against = (str(run["worktree"]), [base]) if live else (repo, [base, branch])
        args = ["--stat"] if stat else []
        text = worktrees.git(where, "diff", *args, *against, "--").stdout
        paths: list[dict[str, Any]] = []
        added = removed = 0
        numstat = worktrees.git(where, "diff", "--numstat", *against, "--").stdout
        for line in numstat.splitlines():
            ins, dels, path = line.split("\t", 2)
            plus = int(ins) if ins.isdigit() else None  # None: a binary file
            minus = int(dels) if dels.isdigit() else None
            added, removed = added + (plus or 0), removed + (minus or 0)
            paths.append({"path": path, "insertions": plus, "deletions": minus})
        summary = (
            worktrees.change_summary(where, base, self._worktree_settings().copy) if live else {}
        )
        if not live:
            tip = worktrees.git(repo, "rev-parse", branch).stdout.strip()
            count = worktrees.git(repo, "rev-list", "--count", f"{base}..{tip}").stdout
            summary = {"head": tip, "commits": int(count.strip() or 0)}
        summary.update(
            files=len(paths),
            insertions=added,
            deletions=removed,
            paths=paths,
        )
        return run, text, summary

    def merge(
        self,
        name: str,
        *,
        into: str | None = None,
        squash: bool = False,
        message: str | None = None,
    ) -> worktrees.MergeResult:
        """Merge agent ``name``'s branch into the main checkout's branch (or ``into``); see
        :func:`orch_plugins.worktrees.merge` (refusals, conflicts: nothing is left half-done).
        Records the merge in the run's change summary."""
        run, repo = self.worktree_run(name, ended=True)
        local = not self._worktree_backend(run) and run["worktree"]
        if local and worktrees.worktree_dirty(str(run["worktree"]), self._worktree_settings()):
            raise OrchError(
                f"agent {name!r}'s worktree {run['worktree']} has uncommitted changes: "
                "commit them there (or orch resume the agent), then merge"
            )
        branch = str(run["branch"])
        tip = worktrees.git(repo, "rev-parse", branch).stdout.strip()
        result = worktrees.merge(repo, branch, name=name, into=into, squash=squash, message=message)
        if result.merged:
            worktrees.record_note(
                self.store,
                run,
                merged={"into": result.into, "commit": result.commit, "tip": tip, "squash": squash},
            )
        return result

    def _unmerged(self, run: Run) -> str | None:
        """What ``orch discard`` without ``--force`` would lose: unmerged commits or
        uncommitted changes in the run's worktree (None: nothing)."""
        changes = decode_changes(run["changes"]) or {}
        backend = self._worktree_backend(run)
        if backend is not None:
            if not run["base"]:
                return None  # never made on its host
            if changes.get("dirty"):
                return f"its worktree on the host holds uncommitted changes ({run['worktree']})"
            merged = changes.get("merged")
            if isinstance(merged, dict) and merged.get("tip") == changes.get("head"):
                return None
            if changes.get("commits") == 0:
                return None
            repo = worktrees.repo_top(os.getcwd())
            backend.fetch_branch(run, repo)
        else:
            if run["worktree"] and worktrees.worktree_dirty(
                str(run["worktree"]), self._worktree_settings()
            ):
                return f"its worktree {run['worktree']} has uncommitted changes"
            repo = self._repo_for(run)
        if worktrees.is_merged(repo, run):
            return None
        branch = str(run["branch"])
        count = worktrees.git(repo, "rev-list", "--count", f"{run['base']}..{branch}").stdout
        n = int(count.strip() or 0)
        return f"{branch} holds {n} commit{'s' * (n != 1)} not merged"

    def _remove_worktree(self, run: Run, *, force: bool) -> None:
        backend = self._worktree_backend(run)
        branch = str(run["branch"])
        if backend is not None:
            if run["base"]:
                backend.remove_worktree(run, force=force)
            with contextlib.suppress(OrchError, worktrees.GitError):
                repo = worktrees.repo_top(os.getcwd())
                worktrees.remove(repo, None, branch, force=force)  # the copy fetched home
        else:
            repo = self._repo_for(run)
            worktrees.remove(repo, run["worktree"], branch, force=force)
        worktrees.record_note(self.store, self.store.get_run(run["run_id"]), discarded=True)

    def discard(self, name: str, *, force: bool = False) -> Run:
        """Remove agent ``name``'s worktree and branch. Without ``force`` it refuses while the
        branch holds work not merged into its base's branch, or the worktree uncommitted
        changes. Never while the agent runs."""
        run = self.refresh([self.store.require(name)])[0]
        if not run["branch"]:
            raise OrchError(f"agent {name!r} has no worktree")
        if run["status"] not in FINAL:
            raise OrchError(f"agent {name!r} is still {run['status']}; cancel it first")
        if (decode_changes(run["changes"]) or {}).get("discarded"):
            raise OrchError(f"agent {name!r}'s worktree was already discarded")
        if not force:
            lost = self._unmerged(run)
            if lost:
                raise OrchError(
                    f"not discarding {name!r}: {lost}; merge it, or orch discard {name} --force "
                    "to throw the work away"
                )
        self._remove_worktree(run, force=True)
        return self.store.get_run(run["run_id"])

    def free_names(self, prefix: str, count: int) -> list[str]:
        """The first ``count`` names ``prefixN`` that no listed (non-archived) run uses."""
        taken = {r["name"] for r in self.store.runs()}
        out: list[str] = []
        i = 0
        while len(out) < count:
            i += 1
            candidate = f"{prefix}{i}"
            if candidate not in taken:
                out.append(validate_name(candidate))
        return out


def check_message(text: str, *, what: str = "message") -> str:
    """``text`` if it can be sent or posted; else :class:`OrchError` (empty, over
    :data:`MAX_TASK_BYTES` bytes, not UTF-8)."""
    try:
        return check_task(text)
    except OrchError as exc:
        raise OrchError(str(exc).replace("the task", f"the {what}")) from None


def tree_order(runs: list[Run]) -> list[tuple[int, Run]]:
    """``runs`` as a tree by ``parent_run``: ``(level, run)`` in display order, each run
    under the run that launched it (when that run is among ``runs``), siblings oldest first."""
    by_id = {r["run_id"]: r for r in runs}
    children: dict[int | None, list[Run]] = {}
    for run in runs:
        parent = run["parent_run"] if run["parent_run"] in by_id else None
        children.setdefault(parent, []).append(run)
    out: list[tuple[int, Run]] = []

    def walk(parent: int | None, level: int) -> None:
        for run in children.get(parent, []):
            out.append((level, run))
            walk(run["run_id"], level + 1)

    walk(None, 0)
    return out


def _recorded_spec(run: Run) -> dict[str, Any]:
    """The run's launch spec as recorded in its run directory (``spec.json``); ``{}`` when it
    cannot be read (gone, damaged, or no object)."""
    try:
        spec = json.loads(Path(run["run_dir"], "spec.json").read_text())
    except (OSError, ValueError):
        return {}
    return spec if isinstance(spec, dict) else {}


def _spec_env(spec: Mapping[str, Any], key: str) -> str | None:
    """A variable of the agent environment in a recorded spec (None: unknown)."""
    env = spec.get("env")
    value = env.get(key) if isinstance(env, dict) else None
    return value if isinstance(value, str) else None


def orch_tools(request: LaunchRequest, role: Role | None) -> bool:
    """Whether the agent gets orch's MCP server: asked for (``--orch-tools``), or its role's
    tools name orch's (:meth:`Role.wants_orch_tools`)."""
    return request.orch_tools or bool(role and role.wants_orch_tools())


def _carried_options(spec: Mapping[str, Any]) -> dict[str, object]:
    """Launch options of a recorded spec that a resumed run keeps: an interactive agent stays
    interactive."""
    options = spec.get("options")
    interactive = isinstance(options, dict) and bool(options.get("interactive"))
    return {"interactive": True} if interactive else {}


def transcript_cwd(session_id: str) -> str | None:
    """Find a Claude Code session's working directory from its transcript under ~/.claude."""
    projects = Path.home() / ".claude" / "projects"
    for path in projects.glob(f"*/{session_id}.jsonl"):
        try:
            with open(path, encoding="utf-8") as fh:
                for _, line in zip(range(50), fh):
                    try:
                        cwd = json.loads(line).get("cwd")
                    except (ValueError, AttributeError):
                        continue
                    if cwd:
                        return str(cwd)
        except OSError:
            continue
    return None

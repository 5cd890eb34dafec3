"""The values the core, admission, plugins and backends hand each other.

* :class:`Run`: one agent run as the store records it (``store.py`` returns these), the
  backend's handle already decoded from its JSON column.
* :class:`LaunchRequest`: what a face (the CLI, the slash commands, a plugin) asks the core to
  start, checked once when it is built.
* ``Handle``: a backend's note of where its agent runs (a JSON object only that backend reads).
* The statuses (defined in :mod:`orch_plugins.store`, which the hooks and the supervisor import
  without paying for ``typing``; re-exported here).

Importing this module costs ``typing`` and ``dataclasses``; the hooks and the supervisor only
name these types under ``TYPE_CHECKING``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeAlias, TypedDict

from orch_plugins.errors import OrchError
from orch_plugins.store import (
    ACTIVE,
    CANCELLED,
    COMPLETED,
    FAILED,
    FINAL,
    LOST,
    QUEUED,
    RUNNING,
    STALLED,
    STATUS_FIELDS,
    STATUSES,
    TIMED_OUT,
    validate_name,
)

__all__ = [
    "ACTIVE",
    "CANCELLED",
    "COMPLETED",
    "FAILED",
    "FINAL",
    "JSON",
    "LOST",
    "MAX_TASK_BYTES",
    "QUEUED",
    "RUNNING",
    "STALLED",
    "STATUSES",
    "STATUS_FIELDS",
    "TIMED_OUT",
    "Handle",
    "JSONObject",
    "LaunchRequest",
    "Run",
    "check_task",
]

#: A value that survives ``json.dumps`` / ``json.loads`` unchanged.
JSON: TypeAlias = "str | int | float | bool | list[JSON] | dict[str, JSON] | None"
#: A JSON object: the public status object of a run (``orch status --json``).
JSONObject: TypeAlias = "dict[str, JSON]"

#: A backend's note of where its agent runs: a JSON object, stored in the run's record (encoded
#: by the store, decoded once when a record is read), so any later process (``orch status``
#: tomorrow) can find the agent again. Only the backend that wrote it looks inside.
Handle: TypeAlias = "dict[str, object]"

#: Tasks above this are refused: claude's context could not hold them anyway.
MAX_TASK_BYTES = 16 * 1024 * 1024


class Run(TypedDict):
    """One agent run as recorded in the store's ``runs`` table, one key per column.

    Times are epoch seconds (float), durations milliseconds; ``usage`` is Claude Code's token
    usage as JSON text; ``cancel_requested`` and ``archived`` are 0 or 1. ``handle`` is the
    backend's :data:`Handle`, decoded (None until the backend has started the run, or when
    the stored text is not a JSON object). The public, documented shape of a run is
    :func:`orch_plugins.store.public` of it (what ``orch status --json`` prints).
    """

    run_id: int
    name: str
    status: str
    task: str
    role: str | None
    backend: str
    model: str | None
    cwd: str
    timeout: float | None
    retries: int
    attempt: int
    max_parallel: int
    session_id: str | None
    parent: str | None
    launched_by: str | None
    created_at: float
    started_at: float | None
    ended_at: float | None
    last_activity: float | None
    exit_code: int | None
    cost_usd: float | None
    num_turns: int | None
    tool_calls: int
    duration_ms: int | None
    usage: str | None
    error: str | None
    run_dir: str
    output_path: str
    log_path: str
    handle: Handle | None
    cancel_requested: int
    archived: int
    #: The agent's claude process (pid, start time in clock ticks since boot), once started.
    claude_pid: int | None
    claude_start: int | None
    #: The run's ``orch_agent_ended`` event: 0 not yet claimed, 1 claimed by the process that
    #: fires it (see :mod:`orch_plugins.events`), 2 no plugin listened as the run started.
    end_announced: int
    #: The agent's git worktree (``--worktree``), on the machine it ran on: its path, its
    #: branch (``orch/NAME``), the base commit it was branched from, the branch that base was
    #: (``--base main``, or the branch checked out at launch; None for a detached HEAD), and
    #: the change summary against the base as JSON text (``store.decode_changes``). All None
    #: without a worktree.
    worktree: str | None
    branch: str | None
    base: str | None
    base_branch: str | None
    changes: str | None
    #: Tokens summed over every model the run used (Claude Code's result event, ``modelUsage``)
    #: and, per model, ``{model: {cost_usd, input_tokens, ...}}`` as JSON text.
    input_tokens: int | None
    output_tokens: int | None
    cache_read_tokens: int | None
    cache_creation_tokens: int | None
    models: str | None
    #: Claude Code's own spending cap for the run (``--max-budget-usd``), US dollars.
    max_budget_usd: float | None
    #: The watchdog: seconds without a stream event before the run is stopped as ``stalled``.
    idle_timeout: float | None
    #: Rate-limit retries (429, 529) Claude Code reported; the time of the last one; 1 while
    #: its claude is held until admission lets its retry go (see ``Store.may_go_on``).
    api_retries: int
    rate_limited_at: float | None
    parked: int
    #: What an interactive agent waits for a person for (Claude Code's Notification), since when.
    waiting_for: str | None
    waiting_since: float | None
    #: The run of the agent that launched this one (None: a person or the orchestrator did).
    parent_run: int | None
    #: 1 for a run no agent launched, its launcher's depth + 1 otherwise (``max_depth``).
    depth: int
    #: The order in which run ends were recorded (1, 2, ...; None while active): what
    #: finished-agent notices follow, never the wall clock.
    end_seq: int | None


def check_task(task: str) -> str:
    """``task`` if it can be an agent's prompt; else :class:`OrchError` (empty, larger than
    :data:`MAX_TASK_BYTES` bytes of UTF-8, or not encodable as UTF-8: a lone surrogate)."""
    if not isinstance(task, str) or not task.strip():
        raise OrchError("the task is empty")
    size = len(task.encode("utf-8", "surrogatepass"))
    if size > MAX_TASK_BYTES:
        raise OrchError(f"the task is {size} bytes; the limit is {MAX_TASK_BYTES}")
    try:
        task.encode("utf-8")
    except UnicodeEncodeError:
        raise OrchError("the task is not valid UTF-8") from None
    return task


@dataclass(frozen=True)
class LaunchRequest:
    """A request to start one agent, as a face received it; checked when it is built.

    ``name``: the agent's name (:func:`orch_plugins.store.validate_name`). ``task``: its prompt
    (:func:`check_task`). ``role``, ``backend``: names (None: the configured default; resolved
    by the core, which knows the plugins). ``model``: a Claude model name (None: the role's,
    else Claude Code's default). ``cwd``: the working directory, made absolute and checked to
    exist (None: where the core runs, or for ``source`` the source's own directory).
    ``timeout``: seconds, > 0 (None: no limit). ``retries``: whole-run retries after
    transient API errors, >= 0. ``max_parallel``: at most this many agents running at once
    while this one waits to start, >= 1 (None: the configured value). ``options``: the
    backend's launch options as given (``{"interactive": True}``, ``{"host": "h1"}``); the
    backend checks and converts them (``Backend.check_options``) before the run is recorded.
    ``source``: an agent name or Claude Code session id whose context the agent starts from
    (a fork, ``orch launch --from``). ``keep_children``: leave what the agent started
    running when the run ends (a role's ``keep_children`` does too). ``worktree``: run in a
    git worktree of its own on branch ``orch/NAME`` (None: as the role says, see
    ``Role.worktree``; False: never). ``base``: the revision that worktree starts from (None:
    ``HEAD``; implies ``worktree``). ``max_budget_usd``: US
    dollars, > 0, handed to Claude Code's ``--max-budget-usd`` (None: no cap).
    ``idle_timeout``: seconds, > 0, without a stream event before the agent is stopped as
    ``stalled`` (None: the configured ``idle_timeout``, else no watchdog). ``orch_tools``:
    the agent's Claude Code starts orch's MCP server (``orch mcp``) and gets its tools (a
    role whose tools name ``mcp__orch__…`` does too); without it the server stays off for the
    agent (see :func:`orch_plugins.claude.build_argv`).

    Raises :class:`OrchError` with a one-line message on the first bad field.
    """

    name: str
    task: str
    role: str | None = None
    backend: str | None = None
    model: str | None = None
    cwd: str | None = None
    timeout: float | None = None
    retries: int = 0
    max_parallel: int | None = None
    options: Mapping[str, object] = field(default_factory=dict)
    source: str | None = None
    keep_children: bool = False
    worktree: bool | None = None
    base: str | None = None
    max_budget_usd: float | None = None
    idle_timeout: float | None = None
    orch_tools: bool = False

    def __post_init__(self) -> None:
        validate_name(self.name)
        if self.base is not None:
            if self.worktree is False:
                raise OrchError("--base is for a worktree: drop --no-worktree or --base")
            if not self.base.strip() or self.base.startswith("-") or "\0" in self.base:
                raise OrchError(f"--base {self.base!r} is not a git revision")
            object.__setattr__(self, "worktree", True)
        check_task(self.task)
        if self.timeout is not None and not self.timeout > 0:
            raise OrchError("--timeout must be a positive number of seconds")
        if self.max_budget_usd is not None and not self.max_budget_usd > 0:
            raise OrchError("--max-budget-usd must be a positive number of US dollars")
        if self.idle_timeout is not None and not self.idle_timeout > 0:
            raise OrchError("--idle-timeout must be a positive number of seconds")
        if self.retries < 0:
            raise OrchError("--retries must be 0 or more")
        if self.max_parallel is not None and self.max_parallel < 1:
            raise OrchError("--max-parallel must be at least 1")
        if self.cwd is not None:
            workdir = Path(os.fspath(self.cwd)).expanduser().resolve()
            if not workdir.is_dir():
                raise OrchError(f"working directory {str(workdir)!r} does not exist")
            object.__setattr__(self, "cwd", str(workdir))
        object.__setattr__(self, "options", dict(self.options))

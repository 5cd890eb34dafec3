"""``orch mcp``: orch's operations as MCP tools, for Claude Code sessions (stdio transport).

Built on the official ``mcp`` Python SDK (``MCPServer``, the 2.x name of FastMCP), an optional
extra: ``pip install 'orch-plugins[mcp]'``. Each tool is a thin face of the core, like the CLI:
it calls the same :class:`~orch_plugins.core.Orchestrator` methods, returns the same records
(``orch status --json``'s status object for an agent), and an error comes back as a tool error
whose text is the CLI's one line (``orch: error: …``), nothing else.

Tools: ``launch``, ``parallel``, ``status``, ``wait``, ``output``, ``logs``, ``resume``,
``cancel``, ``roles``, ``send``, ``board_post``, ``board_read``. Resource: an agent's output,
``orch://agents/{name}/output``.

The project is the server's working directory (Claude Code starts it in the project), found by
the same rule as ``orch`` itself (``ORCH_STATE_DIR``, else the nearest ``.orchestrate``).
Inside an agent (``ORCH_RUN_ID`` in its environment) what it launches is recorded as its
children, and what it posts or sends is signed with its name.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import CallToolResult, TextContent

from orch_plugins.config import Config, load_config
from orch_plugins.core import Orchestrator, WaitTimeout, tree_order
from orch_plugins.errors import OrchError
from orch_plugins.model import ACTIVE, FINAL, LaunchRequest, Run
from orch_plugins.store import Store, iso, public

#: The server's name in ``.mcp.json``: its tools are ``mcp__orch__TOOL`` in Claude Code.
SERVER_NAME = "orch"
#: ``wait`` gives up after this many seconds unless told otherwise (an MCP call should return).
WAIT_DEFAULT = 600.0
#: ``logs`` returns at most this many lines unless told otherwise.
LOG_LINES = 50

INSTRUCTIONS = """\
orch runs Claude Code sub-agents in the background. launch starts one (or parallel many) \
and returns at once; wait blocks until agents end (with a timeout) and says which ended and \
how; output gives an agent's result; status lists agents (tree=true: who launched whom); \
send gives a running agent a message as its next turn; board_post / board_read share \
findings between agents. Task text goes in as given: no shell quoting."""

F = TypeVar("F", bound=Callable[..., Any])


class _Faces:
    """The configuration and plugins, loaded once per server; a fresh store connection and
    orchestrator per call (tools run in worker threads, and ``wait`` blocks in one)."""

    def __init__(self) -> None:
        self._config: Config | None = None
        self._lock = threading.Lock()

    def orch(self) -> Orchestrator:
        with self._lock:
            if self._config is None:
                self._config = load_config()
        from orch_plugins.plugins import get_plugins

        return Orchestrator(Store.open(), self._config, get_plugins())


_faces = _Faces()


def _tool(fn: F) -> F:
    """Run a tool body; an :class:`OrchError` becomes a tool error whose text is the CLI's
    line exactly (a result with ``isError``: a raised ``ToolError`` would reach the model
    prefixed with ``Error executing tool NAME:``)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except OrchError as exc:
            line = f"orch: error: {exc}"
            return CallToolResult(is_error=True, content=[TextContent(type="text", text=line)])

    return wrapper  # type: ignore[return-value]


def _agents(runs: list[Run]) -> dict[str, Any]:
    return {"agents": [public(r) for r in runs]}


def _closing(fn: Callable[[Orchestrator], Any]) -> Any:
    orch = _faces.orch()
    try:
        return fn(orch)
    finally:
        orch.store.close()


# -- the tools -----------------------------------------------------------------------------------


def launch(
    name: str,
    task: str,
    role: str | None = None,
    backend: str | None = None,
    model: str | None = None,
    cwd: str | None = None,
    timeout: float | None = None,
    retries: int = 0,
    interactive: bool = False,
    source: str | None = None,
    orch_tools: bool = False,
) -> dict[str, Any]:
    """Start one agent in the background and return at once: its status object (as
    `orch status --json` prints it). `task` is the agent's prompt, passed as given (quotes,
    $(...) and newlines are text). `source`: an agent name or session id to fork the context
    of. `interactive`: a tmux session a person can attach to. `orch_tools`: the agent gets
    these tools too (to launch helpers, send, use the board); otherwise only its role's."""
    request = LaunchRequest(
        name=name,
        task=task,
        role=role,
        backend=backend,
        model=model,
        cwd=cwd,
        timeout=timeout,
        retries=retries,
        options={"interactive": True} if interactive else {},
        source=source,
        orch_tools=orch_tools,
    )
    return _closing(lambda orch: public(orch.launch(request)))


def parallel(
    tasks: list[str],
    roles: list[str | None] | None = None,
    prefix: str = "agent",
    backend: str | None = None,
    model: str | None = None,
    timeout: float | None = None,
    orch_tools: bool = False,
) -> dict[str, Any]:
    """Start one agent per task, named PREFIX1, PREFIX2, ... (the first free numbers);
    `roles`, when given, one per task in order; `orch_tools` as for launch. Returns
    {"agents": [status objects]}."""
    if roles is not None and len(roles) != len(tasks):
        raise OrchError(f"roles names {len(roles)} roles for {len(tasks)} tasks")
    role_list = roles if roles is not None else [None] * len(tasks)

    def run(orch: Orchestrator) -> dict[str, Any]:
        names = orch.free_names(prefix, len(tasks))
        requests = [
            LaunchRequest(
                name=n,
                task=t,
                role=r,
                backend=backend,
                model=model,
                timeout=timeout,
                orch_tools=orch_tools,
            )
            for n, t, r in zip(names, tasks, role_list)
        ]
        return _agents(orch.launch_many(requests))

    return _closing(run)


def status(names: list[str] | None = None, all: bool = False, tree: bool = False) -> dict[str, Any]:
    """Agents' status objects (default: every agent's newest run): {"agents": [...]}.
    `all`: also archived and earlier runs. `tree`: each agent after the agent that launched
    it (parent_run, depth tell the tree)."""

    def run(orch: Orchestrator) -> dict[str, Any]:
        runs = orch.status(names or [], include_all=all)
        if tree:
            runs = [r for _, r in tree_order(runs)]
        return _agents(runs)

    return _closing(run)


def wait(
    names: list[str] | None = None, any: bool = False, timeout: float = WAIT_DEFAULT
) -> dict[str, Any]:
    """Block until the agents end (default: every queued and running one), or `any` one of
    them, or `timeout` seconds pass. Returns {"ended": [status objects], "pending": [names],
    "timed_out": bool}; each ended agent's `status` says how it ended."""

    def run(orch: Orchestrator) -> dict[str, Any]:
        wanted = names or [r["name"] for r in orch.store.runs(statuses=ACTIVE)]
        timed_out = False
        try:
            runs = orch.wait(wanted, any_=any, timeout=timeout) if wanted else []
        except WaitTimeout:
            timed_out = True
            runs = orch.status(wanted)
        return {
            "ended": [public(r) for r in runs if r["status"] in FINAL],
            "pending": [r["name"] for r in runs if r["status"] not in FINAL],
            "timed_out": timed_out,
        }

    return _closing(run)


def output(name: str) -> dict[str, Any]:
    """An agent's final result: {"name", "status", "output", "error"}. An agent still queued
    or running has none yet (an error)."""
    return _closing(lambda orch: _output(orch, name))


def _output(orch: Orchestrator, name: str) -> dict[str, Any]:
    [run] = orch.status([name])
    text = orch.read_output(run)
    return {"name": name, "status": run["status"], "output": text, "error": run["error"]}


def logs(name: str, lines: int = LOG_LINES) -> dict[str, Any]:
    """The last `lines` lines of an agent's progress, as `orch logs` shows it (tool calls,
    messages, turns, result): {"name", "status", "text"}."""
    from orch_plugins.progress import LogReader

    def run(orch: Orchestrator) -> dict[str, Any]:
        agent = orch.store.require(name)
        orch.fetch_files(agent)
        reader = LogReader(agent["log_path"], Path(agent["run_dir"]) / "live.txt")
        text = reader.read(final=True)
        tail = text.splitlines()[-max(1, lines) :]
        return {"name": name, "status": agent["status"], "text": "\n".join(tail)}

    return _closing(run)


def resume(name: str, task: str, fork: bool = False, as_name: str | None = None) -> dict[str, Any]:
    """Continue an ended agent's Claude Code session with `task` as the next prompt (it sees
    the earlier turns); `fork`: in a copy of the session, named `as_name` or NAME-fork.
    Returns the new run's status object."""
    return _closing(lambda orch: public(orch.resume(name, task, fork=fork, as_name=as_name)))


def cancel(names: list[str] | None = None, all: bool = False, tree: bool = False) -> dict[str, Any]:
    """Stop agents and everything they started; `tree`: also every agent they launched, and
    theirs. Returns {"agents": [status objects]} of the agents stopped."""
    if not names and not all:
        raise OrchError("name the agents to cancel, or pass all")
    return _closing(lambda orch: _agents(orch.cancel(names or [], all_=all, tree=tree)))


def roles() -> dict[str, Any]:
    """The roles an agent can be launched with: {"roles": [{name, description, source,
    allowed_tools, disallowed_tools, model, permission_mode}]}."""
    return _closing(lambda orch: {"roles": orch.plugins.role_summaries()})


def cost(
    names: list[str] | None = None,
    by: str = "agent",
    since: str | None = None,
    all: bool = False,
) -> dict[str, Any]:
    """What agents cost, as `orch cost --json`: {"by", "groups": [{key, runs, cost_usd,
    input_tokens, output_tokens, cache_read_tokens, cache_creation_tokens}], "total",
    "budget": {daily_usd|total_usd: {spent, limit}}}. `by`: agent, role, model, day or parent;
    `since`: an ISO 8601 date (UTC); `all`: archived and cleared runs too."""
    from orch_plugins import costs

    return _closing(
        lambda orch: costs.report(
            orch.store, orch.config, names, by=by, since=since, include_gone=all
        )
    )


def send(name: str, text: str) -> dict[str, Any]:
    """Give a running agent `text` as its next user turn (a print-mode agent gets it when
    its current turn ends; an interactive one as a paste). Returns the message record
    {message_id, run_id, sender, text, sent_at}. An ended agent refuses: resume it."""

    def run(orch: Orchestrator) -> dict[str, Any]:
        record = orch.send(name, text)
        return {**record, "sent_at": iso(record["sent_at"])}

    return _closing(run)


def board_post(text: str) -> dict[str, Any]:
    """Post `text` to the project's shared board, signed with this agent's name (or
    orchestrator): {post_id, author, run_id, session_id, text, posted_at}."""

    def run(orch: Orchestrator) -> dict[str, Any]:
        post = orch.board_post(text)
        return {**post, "posted_at": iso(post["posted_at"])}

    return _closing(run)


def board_read(since: int = 0) -> dict[str, Any]:
    """The board's posts after post id `since`, oldest first: {"posts": [...]}."""

    def run(orch: Orchestrator) -> dict[str, Any]:
        posts = orch.board_read(since)
        return {"posts": [{**p, "posted_at": iso(p["posted_at"])} for p in posts]}

    return _closing(run)


TOOLS: tuple[Callable[..., dict[str, Any]], ...] = (
    launch,
    parallel,
    status,
    wait,
    output,
    logs,
    resume,
    cancel,
    roles,
    cost,
    send,
    board_post,
    board_read,
)


def agent_output(name: str) -> str:
    """An agent's final result (its newest run's output file)."""
    try:
        return str(_closing(lambda orch: _output(orch, name))["output"])
    except OrchError as exc:
        raise ToolError(f"orch: error: {exc}") from None


def build_server() -> MCPServer:
    """The server with every tool of :data:`TOOLS` and the agent-output resource."""
    server: MCPServer = MCPServer(SERVER_NAME, instructions=INSTRUCTIONS)
    for fn in TOOLS:
        server.add_tool(_tool(fn), name=fn.__name__, structured_output=True)
    server.resource(
        "orch://agents/{name}/output",
        name="agent-output",
        description="An agent's final result",
        mime_type="text/markdown",
    )(agent_output)
    return server


def main() -> None:
    """Serve on stdin/stdout until the client closes them."""
    build_server().run("stdio")

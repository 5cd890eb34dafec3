"""Agent commands: launch, parallel, status, wait, output, logs, resume, cancel, clear."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from orch_plugins.cli.backend_options import OPTION_OPT, WithBackendFlags, backend_and_options
from orch_plugins.errors import OrchError

if TYPE_CHECKING:
    from orch_plugins.core import Orchestrator
    from orch_plugins.model import JSON, LaunchRequest, Run

app = typer.Typer()

ROLE_OPT = typer.Option(
    None, "--role", "-r", metavar="ROLE", help="Role template (see 'orch roles')."
)
BACKEND_OPT = typer.Option(
    None, "--backend", "-b", metavar="BACKEND", help="Backend (see 'orch backends')."
)
TIMEOUT_OPT = typer.Option(
    None, "--timeout", metavar="SECONDS", help="Stop the agent after this many seconds."
)
RETRIES_OPT = typer.Option(0, "--retries", metavar="N", help="Retries after transient API errors.")
MODEL_OPT = typer.Option(None, "--model", "-m", metavar="MODEL", help="Claude model for the agent.")
CWD_OPT = typer.Option(
    None, "--cwd", metavar="DIR", help="Working directory of the agent (default: here)."
)
MAXPAR_OPT = typer.Option(None, "--max-parallel", metavar="N", help="Run at most N agents at once.")
BUDGET_OPT = typer.Option(
    None,
    "--max-budget-usd",
    metavar="USD",
    help="Stop the agent once it has spent this much (Claude Code's own --max-budget-usd).",
)
IDLE_OPT = typer.Option(
    None,
    "--idle-timeout",
    metavar="SECONDS",
    help="Stop the agent (status 'stalled') after this long without a stream event.",
)
JSON_OPT = typer.Option(False, "--json", help="Print JSON.")
TASK_FILE_OPT = typer.Option(
    None,
    "--task-file",
    metavar="FILE",
    help="Read the task from FILE (deleted once recorded if in .orch-tasks/).",
)
#: A directory of hand-over files: what Claude Code's Write tool wrote for ``--task-file``
#: (the /orchestrate command's tasks). orch deletes such a file once its task is recorded.
HANDOVER_DIR = ".orch-tasks"
WORKTREE_OPT = typer.Option(
    False, "--worktree", help="Run in a git worktree of its own, on branch orch/NAME."
)
NO_WORKTREE_OPT = typer.Option(
    False, "--no-worktree", help="Run in place even if the role asks for a worktree."
)
BASE_OPT = typer.Option(
    None,
    "--base",
    metavar="REF",
    help="Branch the worktree from REF instead of HEAD (implies --worktree).",
)
KEEP_OPT = typer.Option(
    False,
    "--keep-children",
    help="Leave what the agent started (servers, watchers) running when it ends.",
)
TOOLS_OPT = typer.Option(
    False,
    "--orch-tools",
    help="Give the agent orch's MCP tools (launch helpers, send, post); or name them in its role.",
)


def _request(
    ctx: typer.Context,
    name: str,
    task: str,
    role: str | None,
    backend: str | None,
    option: list[str] | None,
    timeout: float | None,
    retries: int,
    model: str | None,
    cwd: Path | None,
    max_parallel: int | None,
    max_budget_usd: float | None = None,
    idle_timeout: float | None = None,
    *,
    source: str | None = None,
    keep_children: bool = False,
    worktree: bool | None = None,
    base: str | None = None,
    orch_tools: bool = False,
) -> LaunchRequest:
    """The launch flags that ``launch`` and ``parallel`` share, as one checked request
    (:class:`OrchError` on a bad value); the backend's own options (``-o``, declared flags)
    are checked by the backend when the core records the run."""
    from orch_plugins.model import LaunchRequest

    backend, options = backend_and_options(ctx, backend, option)
    return LaunchRequest(
        name=name,
        task=task,
        role=role,
        backend=backend,
        options=options,
        timeout=timeout,
        retries=retries,
        model=model,
        cwd=str(cwd) if cwd else None,
        max_parallel=max_parallel,
        source=source,
        keep_children=keep_children,
        worktree=worktree,
        base=base,
        max_budget_usd=max_budget_usd,
        idle_timeout=idle_timeout,
        orch_tools=orch_tools,
    )


def _worktree_choice(worktree: bool, no_worktree: bool) -> bool | None:
    """``--worktree`` True, ``--no-worktree`` False, neither None (the role decides)."""
    if worktree and no_worktree:
        raise OrchError("give --worktree or --no-worktree, not both")
    return True if worktree else False if no_worktree else None


def _orch() -> Orchestrator:
    from orch_plugins.core import Orchestrator

    return Orchestrator()


def _public(run: Run) -> dict[str, JSON]:
    from orch_plugins.store import public

    return public(run)


def _read_task(task: str, what: str = "task") -> str:
    if task != "-":
        return task
    data = sys.stdin.buffer.read()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise OrchError(f"the {what} on stdin is not valid UTF-8") from None


def _task_or_file(
    task: str | None, task_file: Path | None, what: str = "task", flag: str = "--task-file"
) -> str:
    """The task (or ``what``) from the argument (``-``: stdin) or from ``flag``, byte for
    byte."""
    if (task is None) == (task_file is None):
        raise typer.BadParameter(f"give the {what}, or {flag} FILE (not both)")
    if task is not None:
        return _read_task(task, what)
    assert task_file is not None
    try:
        data = task_file.read_bytes()
    except OSError as exc:
        raise OrchError(f"cannot read the {what} file {task_file}: {exc.strerror}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise OrchError(f"the {what} file {task_file} is not valid UTF-8") from None


def _hand_over_done(task_file: Path | None) -> None:
    """Delete a hand-over task file (and its directory once empty) after its run is recorded."""
    if task_file is None or task_file.resolve().parent.name != HANDOVER_DIR:
        return
    import contextlib

    with contextlib.suppress(OSError):
        task_file.unlink()
        task_file.resolve().parent.rmdir()


def _echo_json(data: Any) -> None:
    # Indented JSON goes through the pure-Python encoder (~100 ms for 1,000 runs): only for people.
    typer.echo(json.dumps(data, indent=2 if sys.stdout.isatty() else None, ensure_ascii=False))


def _launched_line(run: Run) -> str:
    where = f" ({run['status']})" if run["status"] != "running" else ""
    return f"{run['name']}: launched{where}, run {run['run_id']}, output {run['output_path']}"


@app.command(cls=WithBackendFlags)
def launch(
    ctx: typer.Context,
    name: str = typer.Argument(
        ..., metavar="NAME", help="Agent name: letters, digits, '.', '_', '-'."
    ),
    task: str | None = typer.Argument(
        None, metavar="TASK", help="The task; '-' reads it from stdin."
    ),
    task_file: Path | None = TASK_FILE_OPT,
    role: str | None = ROLE_OPT,
    backend: str | None = BACKEND_OPT,
    timeout: float | None = TIMEOUT_OPT,
    retries: int = RETRIES_OPT,
    model: str | None = MODEL_OPT,
    cwd: Path | None = CWD_OPT,
    from_: str | None = typer.Option(
        None,
        "--from",
        metavar="SOURCE",
        help="Start from a fork of this agent's (or session id's) context.",
    ),
    max_parallel: int | None = MAXPAR_OPT,
    max_budget_usd: float | None = BUDGET_OPT,
    idle_timeout: float | None = IDLE_OPT,
    option: list[str] | None = OPTION_OPT,
    keep_children: bool = KEEP_OPT,
    orch_tools: bool = TOOLS_OPT,
    worktree: bool = WORKTREE_OPT,
    no_worktree: bool = NO_WORKTREE_OPT,
    base: str | None = BASE_OPT,
    wait: bool = typer.Option(False, "--wait", help="Wait for the agent; print its output."),
    as_json: bool = JSON_OPT,
) -> None:
    """Start one agent in the background and return at once."""
    flags = (
        backend,
        option,
        timeout,
        retries,
        model,
        cwd,
        max_parallel,
        max_budget_usd,
        idle_timeout,
    )
    text = _task_or_file(task, task_file)
    request = _request(
        ctx,
        name,
        text,
        role,
        *flags,
        source=from_,
        keep_children=keep_children,
        worktree=_worktree_choice(worktree, no_worktree),
        base=base,
        orch_tools=orch_tools,
    )
    orch = _orch()
    run = orch.launch(request)
    _hand_over_done(task_file)
    _report_launched([run], as_json=as_json, single=True, wait=wait, orch=orch)


def _report_launched(
    runs: list[Run], *, as_json: bool, single: bool, wait: bool, orch: Orchestrator
) -> None:
    """Print what was launched; a run its backend could not even start fails the command."""
    _warn_if_unheard(orch)
    failed = [r for r in runs if r["status"] == "failed"]
    if wait and not failed:
        _finish_wait(orch, [r["name"] for r in runs], as_json=as_json, single=single)
        return
    if as_json:
        data = [_public(r) for r in runs]
        typer.echo(json.dumps(data[0] if single else data, ensure_ascii=False))
    else:
        for run in runs:
            typer.echo(_launched_line(run))
    for run in failed:
        print(f"orch: error: {run['name']}: {run['error']}", file=sys.stderr)
    if failed:
        raise typer.Exit(1)


@app.command(cls=WithBackendFlags)
def parallel(
    ctx: typer.Context,
    tasks: list[str] = typer.Argument(
        ..., metavar="TASK...", help="One agent per task; '-' reads one from stdin."
    ),
    role: str | None = ROLE_OPT,
    roles: str | None = typer.Option(
        None, "--roles", metavar="ROLE,...", help="Comma-separated roles, one per task, in order."
    ),
    prefix: str = typer.Option(
        "agent", "--prefix", metavar="PREFIX", help="Names are PREFIX1, PREFIX2, …"
    ),
    backend: str | None = BACKEND_OPT,
    timeout: float | None = TIMEOUT_OPT,
    retries: int = RETRIES_OPT,
    model: str | None = MODEL_OPT,
    cwd: Path | None = CWD_OPT,
    max_parallel: int | None = MAXPAR_OPT,
    max_budget_usd: float | None = BUDGET_OPT,
    idle_timeout: float | None = IDLE_OPT,
    option: list[str] | None = OPTION_OPT,
    keep_children: bool = KEEP_OPT,
    orch_tools: bool = TOOLS_OPT,
    worktree: bool = WORKTREE_OPT,
    no_worktree: bool = NO_WORKTREE_OPT,
    base: str | None = BASE_OPT,
    wait: bool = typer.Option(False, "--wait", help="Wait for all of them."),
    as_json: bool = JSON_OPT,
) -> None:
    """Start one agent per task, named with the first free numbers."""
    role_list = role_per_task(role, roles, len(tasks))
    choice = _worktree_choice(worktree, no_worktree)
    texts = [_read_task(t) for t in tasks]
    orch = _orch()
    flags = (
        backend,
        option,
        timeout,
        retries,
        model,
        cwd,
        max_parallel,
        max_budget_usd,
        idle_timeout,
    )
    runs = launch_tasks(
        orch,
        texts,
        role_list,
        prefix=prefix,
        make=lambda n, t, r: _request(
            ctx,
            n,
            t,
            r,
            *flags,
            keep_children=keep_children,
            worktree=choice,
            base=base,
            orch_tools=orch_tools,
        ),
    )
    _report_launched(runs, as_json=as_json, single=False, wait=wait, orch=orch)


def _warn_if_unheard(orch: Orchestrator) -> None:
    """One line on stderr when the Claude Code session launching agents will not be told when
    they finish: its hooks never recorded it (started where they do not run)."""
    import os

    sid = os.environ.get("CLAUDE_CODE_SESSION_ID")
    if not sid or os.environ.get("ORCH_RUN_ID") or orch.store.session(sid) is not None:
        return
    from orch_plugins.cli.integration import hooks_problem

    why = hooks_problem(Path.cwd()) or "orch's hooks did not record it"
    print(
        f"orch: warning: this Claude Code session will not be told when agents finish: {why}",
        file=sys.stderr,
    )


def role_per_task(role: str | None, roles: str | None, n: int) -> list[str | None]:
    """One role per task from ``--role R`` (all) or ``--roles R1,R2`` (in order)."""
    if role and roles:
        raise OrchError("give --role or --roles, not both")
    if not roles:
        return [role] * n
    role_list = [r.strip() or None for r in roles.split(",")]
    if len(role_list) != n:
        raise OrchError(f"--roles names {len(role_list)} roles for {n} tasks")
    return role_list


def launch_tasks(
    orch: Orchestrator,
    texts: list[str],
    roles: list[str | None],
    *,
    prefix: str = "agent",
    make: Callable[[str, str, str | None], LaunchRequest] | None = None,
) -> list[Run]:
    """One agent per task, named PREFIX1, PREFIX2, … (the first free numbers), all checked,
    then queued, then started at once, so a backend that can batch starts them in few calls.
    ``make(name, task, role)`` builds each request (default: only those three set).
    Returns the runs' records; :class:`OrchError` (nothing recorded) for a bad task."""
    if make is None:
        from orch_plugins.model import LaunchRequest

        make = LaunchRequest
    names = orch.free_names(prefix, len(texts))
    return orch.launch_many([make(n, t, r) for n, t, r in zip(names, texts, roles)])


def _age(run: Run) -> str:
    start = run.get("started_at") or run.get("created_at")
    end = run.get("ended_at") or time.time()
    secs = max(0.0, end - start) if start else 0.0
    return f"{secs:.0f}s" if secs < 120 else f"{secs / 60:.0f}m"


def _table(runs: list[Run], levels: list[int] | None = None) -> str:
    """The status table; ``levels`` (``--tree``): each name indented under its launcher's."""
    from orch_plugins.progress import money
    from orch_plugins.store import shown_status

    # A BRANCH column only when some agent has a worktree: "orch/x +10 -3" (lines against its
    # base; "*": uncommitted changes in it).
    branches = any(r.get("branch") for r in runs)
    head = ("NAME", "STATUS", "ROLE", "BACKEND", "TIME", "TURNS", "COST")
    rows = [(*head, *(("BRANCH",) if branches else ()), "TASK / ERROR")]
    for i, r in enumerate(runs):
        cost = money(r.get("cost_usd"))
        detail = r["error"] if r.get("error") and r["status"] != "completed" else r["task"]
        status = shown_status(r)
        if r.get("waiting_for") and status == "running":
            status, detail = "waiting", f"waiting: {r['waiting_for']}"
        detail = " ".join(str(detail).split())
        level = levels[i] if levels else 0
        indent = "  " * (level - 1) + "└─ " if level else ""
        rows.append(
            (
                indent + r["name"] + (" (archived)" if r.get("archived") else ""),
                status,
                r.get("role") or "-",
                r["backend"],
                _age(r),
                str(r.get("num_turns") if r.get("num_turns") is not None else "-"),
                cost,
                *((_branch_cell(r),) if branches else ()),
                detail[:60] + ("…" if len(detail) > 60 else ""),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row[:-1], widths)) + "  " + row[-1]
        for row in rows
    )


def _branch_cell(run: Run) -> str:
    from orch_plugins.store import decode_changes

    if not run.get("branch"):
        return "-"
    changes = decode_changes(run.get("changes")) or {}
    if "files" not in changes:
        return str(run["branch"])
    mark = "*" if changes.get("dirty") else ""
    lines = f"+{changes.get('insertions', 0)} -{changes.get('deletions', 0)}"
    return f"{run['branch']} {lines}{mark}"


@app.command()
def status(
    names: list[str] | None = typer.Argument(
        None, metavar="NAME...", help="Agents to show (default: all)."
    ),
    show_all: bool = typer.Option(
        False, "--all", "-a", help="Include archived runs and earlier runs of each name."
    ),
    tree: bool = typer.Option(
        False, "--tree", help="Show each agent under the agent that launched it."
    ),
    as_json: bool = JSON_OPT,
) -> None:
    """Show agents: one line each, or with --json one JSON array of an object each."""
    orch = _orch()
    runs = orch.status(names or [], include_all=show_all)
    levels = None
    if tree:
        from orch_plugins.core import tree_order

        ordered = tree_order(runs)
        runs = [run for _, run in ordered]
        levels = [level for level, _ in ordered]
    if as_json:
        _echo_json([_public(r) for r in runs])
        return
    if runs:
        typer.echo(_table(runs, levels=levels))
        typer.echo(total_line(runs))
    else:
        typer.echo("no agents")
    from orch_plugins.cli.costs import admission_line

    line = admission_line(orch)
    if line:
        typer.echo(line)


def total_line(runs: list[Run]) -> str:
    """``total: $0.29 for 3 agents (in 57k, out 6 tokens)``: the runs listed, summed."""
    from orch_plugins.progress import money, plural

    costs = [c for r in runs if (c := r.get("cost_usd")) is not None]
    tokens_in = sum(r.get("input_tokens") or 0 for r in runs)
    tokens_out = sum(r.get("output_tokens") or 0 for r in runs)
    spent = money(sum(costs)) if costs else "-"
    return (
        f"total: {spent} for {plural(len(runs), 'agent')} "
        f"({tokens(tokens_in)} in, {tokens(tokens_out)} out)"
    )


def tokens(n: int) -> str:
    """A token count for people: ``812``, ``19k``, ``1.2M``."""
    if n < 10_000:
        return f"{n}"
    if n < 1_000_000:
        return f"{n / 1000:.0f}k"
    return f"{n / 1_000_000:.1f}M"


def _ended_line(run: Run) -> str:
    """``NAME: STATUS`` and, unless it completed, ``: ERROR``."""
    tail = f": {run['error']}" if run.get("error") and run["status"] != "completed" else ""
    return f"{run['name']}: {run['status']}{tail}"


def _finish_wait(orch: Orchestrator, names: list[str], *, as_json: bool, single: bool) -> None:
    """``--wait`` of launch/resume (``single``) and parallel: with ``--json`` the ended run
    records, shaped as without ``--wait`` (one object for one agent, an array for parallel);
    else one agent's output, or a ``NAME: STATUS`` line per agent (parallel, or an agent that
    did not complete)."""
    runs = orch.wait(names)
    ok = all(r["status"] == "completed" for r in runs)
    if as_json:
        data = [_public(r) for r in runs]
        _echo_json(data[0] if single and len(data) == 1 else data)
    elif single and len(runs) == 1 and ok:
        _print_output(orch, runs[0])  # as 'orch output' does: remote files synced first
    else:
        for r in runs:
            typer.echo(_ended_line(r))
    if not ok:
        raise typer.Exit(1)


@app.command()
def wait(
    names: list[str] | None = typer.Argument(
        None, metavar="NAME...", help="Agents to wait for (default: all queued and running)."
    ),
    any_: bool = typer.Option(False, "--any", help="Return when the first one ends."),
    timeout: float | None = typer.Option(
        None, "--timeout", metavar="SECONDS", help="Give up after this many seconds (exit 124)."
    ),
    as_json: bool = JSON_OPT,
) -> None:
    """Wait for agents to end. Exit 0 only if every awaited agent completed (124: timed out)."""
    from orch_plugins.core import WaitTimeout

    orch = _orch()
    try:
        runs = orch.wait(names or [], any_=any_, timeout=timeout)
    except WaitTimeout as exc:
        print(f"orch: {exc}", file=sys.stderr)
        raise typer.Exit(124) from None
    ended = [r for r in runs if r["status"] not in ("queued", "running")]
    if as_json:
        _echo_json([_public(r) for r in runs])
    else:
        if not runs:
            typer.echo("nothing to wait for")
        for r in runs:
            typer.echo(_ended_line(r))
    judged = ended if any_ else runs
    if not all(r["status"] == "completed" for r in judged):
        raise typer.Exit(1)


@app.command()
def output(
    names: list[str] = typer.Argument(..., metavar="NAME...", help="Agent name(s)."),
    path: bool = typer.Option(False, "--path", help="Print the output files' paths only."),
) -> None:
    """Print agents' final results (their newest runs); several get a '== NAME ==' header."""
    orch = _orch()
    runs = orch.status(names)
    if path:
        for run in runs:
            typer.echo(run["output_path"])
        return
    if len(runs) == 1:
        if not _print_output(orch, runs[0]):
            raise typer.Exit(1)
        return
    ok = True
    for run in runs:
        typer.echo(f"== {run['name']} ({run['status']}) ==")
        try:
            ok = _print_output(orch, run) and ok
        except OrchError as exc:
            print(f"orch: error: {exc}", file=sys.stderr)
            ok = False
    if not ok:
        raise typer.Exit(1)


def _print_output(orch: Orchestrator, run: Run) -> bool:
    """Print one run's result; False (and the reason on stderr) unless it completed."""
    name = run["name"]
    text = orch.read_output(run)
    sys.stdout.write(text if text.endswith("\n") else text + "\n")
    sys.stdout.flush()
    if run["status"] != "completed":
        print(f"orch: agent {name!r} {run['status']}: {run['error'] or '-'}", file=sys.stderr)
        return False
    return True


@app.command()
def logs(
    name: str = typer.Argument(..., metavar="NAME", help="Agent name."),
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing while it runs."),
    raw: bool = typer.Option(False, "--raw", help="Print the raw stream-json events."),
) -> None:
    """Show an agent's progress: tool calls, turns, result (with -f, its text as it is written)."""
    from orch_plugins.progress import LogReader

    orch = _orch()
    run = orch.store.require(name)
    reader = LogReader(run["log_path"], Path(run["run_dir"]) / "live.txt", raw=raw, live=follow)
    while True:
        orch.fetch_files(run)
        ended = run["status"] not in ("queued", "running")
        # An ended run is read once more, to its end, and then left: whether or not it has a
        # log (cancelled while queued, a launch that failed, an interactive agent).
        sys.stdout.write(reader.read(final=ended))
        if not follow and not ended and not raw:
            line = reader.writing()
            if line:
                sys.stdout.write(line + "\n")
        sys.stdout.flush()
        if ended and follow:
            typer.echo(f"[{run['status']}]" + (f" {run['error']}" if run["error"] else ""))
        if ended or not follow:
            return
        time.sleep(0.2)
        run = orch.refresh([orch.store.get_run(run["run_id"])])[0]


@app.command(cls=WithBackendFlags)
def resume(
    ctx: typer.Context,
    name: str = typer.Argument(..., metavar="NAME", help="Agent whose session to continue."),
    task: str | None = typer.Argument(
        None, metavar="TASK", help="The next prompt; '-' reads stdin."
    ),
    task_file: Path | None = TASK_FILE_OPT,
    fork: bool = typer.Option(False, "--fork", help="Continue in a fork (a new session id)."),
    as_name: str | None = typer.Option(
        None,
        "--as",
        metavar="NEWNAME",
        help="Name of the new agent (default: NAME, or NAME-fork with --fork).",
    ),
    max_budget_usd: float | None = typer.Option(
        None,
        "--max-budget-usd",
        metavar="USD",
        help="Stop the agent once this run has spent this much (default: the earlier run's).",
    ),
    backend: str | None = typer.Option(
        None,
        "--backend",
        "-b",
        metavar="BACKEND",
        help="Run it on this backend (default: the agent's own).",
    ),
    option: list[str] | None = OPTION_OPT,
    cwd: Path | None = typer.Option(
        None, "--cwd", metavar="DIR", help="Run it in DIR (default: where the agent ran)."
    ),
    wait: bool = typer.Option(False, "--wait", help="Wait for it; print its output."),
    as_json: bool = JSON_OPT,
) -> None:
    """Continue an agent's Claude Code session with a new prompt (it sees the earlier turns)."""
    text = _task_or_file(task, task_file)
    backend, options = backend_and_options(ctx, backend, option)
    orch = _orch()
    run = orch.resume(
        name,
        text,
        fork=fork,
        as_name=as_name,
        max_budget_usd=max_budget_usd,
        backend=backend,
        options=options,
        cwd=str(cwd) if cwd else None,
    )
    _hand_over_done(task_file)
    _report_launched([run], as_json=as_json, single=True, wait=wait, orch=orch)


@app.command()
def cancel(
    names: list[str] | None = typer.Argument(None, metavar="NAME...", help="Agents to stop."),
    all_: bool = typer.Option(False, "--all", help="Stop every queued and running agent."),
    tree: bool = typer.Option(
        False, "--tree", help="Also stop every agent they launched, and theirs."
    ),
    as_json: bool = JSON_OPT,
) -> None:
    """Stop agents and their whole process tree; they end 'cancelled'."""
    if not names and not all_:
        raise OrchError("name the agents to cancel, or pass --all")
    runs = _orch().cancel(names or [], all_=all_, tree=tree)
    if as_json:
        _echo_json([_public(r) for r in runs])
    elif not runs:
        typer.echo("nothing to cancel")
    for r in [] if as_json else runs:
        typer.echo(f"{r['name']}: {r['status']}")


@app.command()
def clear(
    archive: bool = typer.Option(
        False, "--archive", help="Keep ended runs, hidden from 'orch status' but shown by --all."
    ),
) -> None:
    """Forget ended agents (running and queued ones are kept, and so are worktrees holding
    unmerged or uncommitted work, with their agents)."""
    kept: list[tuple[Run, str]] = []
    n = _orch().clear(archive=archive, kept=kept)
    from orch_plugins.progress import plural

    typer.echo(f"{'archived' if archive else 'removed'} {plural(n, 'ended run')}")
    for run, why in kept:
        typer.echo(
            f"kept {run['name']}'s worktree and branch {run['branch']}: {why} "
            f"(orch merge {run['name']}, or orch discard {run['name']} --force)"
        )


def _text_or_file(text: str | None, text_file: Path | None, what: str) -> str:
    """A message's or post's text from the argument (``-``: stdin) or ``--file``."""
    return _task_or_file(text, text_file, what, "--file")


TEXT_FILE_OPT = typer.Option(
    None, "--file", metavar="FILE", help="Read the text from FILE (deleted if in .orch-tasks/)."
)


@app.command()
def send(
    name: str = typer.Argument(..., metavar="NAME", help="A running agent."),
    text: str | None = typer.Argument(None, metavar="TEXT", help="The message; '-' reads stdin."),
    text_file: Path | None = TEXT_FILE_OPT,
    as_json: bool = JSON_OPT,
) -> None:
    """Give a running agent a message as its next user turn (recorded, shown in orch logs)."""
    message = _text_or_file(text, text_file, "message")
    record = _orch().send(name, message)
    _hand_over_done(text_file)
    if as_json:
        _echo_json(record)
    else:
        typer.echo(f"{name}: message {record['message_id']} sent")


board_app = typer.Typer(help="The project's shared board: agents post findings for each other.")
app.add_typer(board_app, name="board")


def _post_json(post: dict[str, Any]) -> dict[str, Any]:
    from orch_plugins.store import iso

    return {**post, "posted_at": iso(post["posted_at"])}


@board_app.command("post")
def board_post(
    text: str | None = typer.Argument(None, metavar="TEXT", help="The post; '-' reads stdin."),
    text_file: Path | None = TEXT_FILE_OPT,
    as_json: bool = JSON_OPT,
) -> None:
    """Post to the board, signed with your agent's name (or orchestrator / user)."""
    post = _orch().board_post(_text_or_file(text, text_file, "post"))
    _hand_over_done(text_file)
    if as_json:
        _echo_json(_post_json(post))
    else:
        typer.echo(f"posted {post['post_id']} as {post['author']}")


@board_app.command("read")
def board_read(
    since: int = typer.Option(0, "--since", metavar="ID", help="Only posts after this post id."),
    as_json: bool = JSON_OPT,
) -> None:
    """Read the board, oldest post first."""
    from orch_plugins.store import iso

    posts = _orch().board_read(since)
    if as_json:
        _echo_json([_post_json(p) for p in posts])
        return
    if not posts:
        typer.echo("no posts")
    for post in posts:
        typer.echo(f"#{post['post_id']} {post['author']} at {iso(post['posted_at'])}:")
        typer.echo("".join(f"  {line}\n" for line in post["text"].splitlines()).rstrip("\n"))

"""The one place that builds claude's command lines and environments: an agent's
(:func:`build_argv`, :func:`agent_env`), an interactive agent's (:func:`interactive_argv`), the
orchestrator's (``orch start``: :func:`orchestrator_argv`, :func:`orchestrator_env`); and what
``orch doctor`` checks about the installed claude (its version against the tested range, its
credentials against the API)."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from orch_plugins import procs
from orch_plugins.roles import Role

#: Set by a Claude Code session in its Bash tool's children. A nested ``claude`` started with
#: them takes itself for a sub-process: ``CLAUDE_CODE_CHILD_SESSION`` makes an interactive one
#: write no transcript, so its session could never be resumed.
UNSET_ENV = (
    "CLAUDECODE",
    "CLAUDE_CODE_ENTRYPOINT",
    "CLAUDE_CODE_SSE_PORT",
    "CLAUDE_CODE_CHILD_SESSION",
    "CLAUDE_CODE_SESSION_ID",
    "CLAUDE_CODE_EXECPATH",
    "CLAUDE_EFFORT",
    "AI_AGENT",
    "TRACEPARENT",
)

#: Set by :func:`agent_env` for one agent (``ORCH_TOOLS``: ``1`` when the agent gets orch's
#: MCP server, else ``0``): a process that is no agent (the orchestrator, a tmux server) must
#: not carry them, or its sessions would be taken for that agent's.
TOOLS_VAR = "ORCH_TOOLS"
AGENT_ENV = (*procs.AGENT_VARS, TOOLS_VAR)

#: orch's MCP server's name in ``.mcp.json`` (``install.MCP_SERVER``, ``mcp_server.SERVER_NAME``).
MCP_SERVER = "orch"
#: ``--settings`` for an agent without orch's tools: Claude Code does not start the project's
#: ``orch`` server for it (``disabledMcpjsonServers``; read from ``--settings`` by 2.1.197 and
#: 2.1.332, checked here), which would cost the agent about 2 CPU-seconds of imports.
NO_ORCH_TOOLS = {"disabledMcpjsonServers": [MCP_SERVER]}


def build_argv(
    claude_bin: str,
    *,
    role: Role | None = None,
    model: str | None = None,
    resume_session: str | None = None,
    fork: bool = False,
    interactive: bool = False,
    max_budget_usd: float | None = None,
    orch_tools: bool = False,
) -> list[str]:
    """claude's argv. The prompt is never in it: it goes on stdin (``-p``, as the first
    stream-json user turn), so task text never meets a shell or an argv length limit. A role
    adds its system prompt, its tool list (``--tools`` limits what is offered,
    ``--allowedTools`` pre-approves) and its permission mode; without a role Claude Code's own
    defaults and the user's settings apply. ``max_budget_usd`` becomes Claude Code's own
    ``--max-budget-usd`` (it stops the session once that much is spent). Without
    ``orch_tools`` the project's orch MCP server stays off for the agent (:data:`NO_ORCH_TOOLS`;
    the plugin form's server sees ``ORCH_TOOLS=0`` and exits at once)."""
    argv = [claude_bin]
    if not interactive:
        # Partial messages: the supervisor keeps the text being written for orch logs -f.
        # Turns on stdin, kept open: the prompt is the first; orch send adds more
        # (LaunchSpec.input_turns tells the supervisor).
        argv += ["-p", "--output-format", "stream-json", "--verbose", "--include-partial-messages"]
        argv += ["--input-format", "stream-json"]
    if role is not None:
        if role.system_prompt:
            argv += ["--append-system-prompt", role.system_prompt]
        offered = role.offered_tools()
        if offered is not None:
            # --allowedTools only pre-approves; --tools is what limits the tools on offer.
            argv += ["--tools", ",".join(offered)]
            argv += ["--allowedTools", ",".join(role.allowed_tools)]
        if role.disallowed_tools:
            argv += ["--disallowedTools", ",".join(role.disallowed_tools)]
        # Always explicit: claude -p's own default mode changed in Claude Code 2.1.302.
        argv += ["--permission-mode", role.permission_mode or "default"]
    model = model or (role.model if role else None)
    if model:
        argv += ["--model", model]
    if max_budget_usd is not None:
        argv += ["--max-budget-usd", f"{max_budget_usd:g}"]
    if not orch_tools:
        argv = with_settings(argv, NO_ORCH_TOOLS)
    if resume_session:  # last: the supervisor fills the retry's session id in here
        argv += ["--resume", resume_session]
        if fork:
            argv.append("--fork-session")
    return argv


def with_settings(argv: Sequence[str], settings: Mapping[str, Any]) -> list[str]:
    """``argv`` with ``settings`` merged (top-level keys) into its ``--settings`` JSON, or
    ``--settings`` added: Claude Code reads only one ``--settings``."""
    argv = list(argv)
    if "--settings" in argv:
        at = argv.index("--settings") + 1
        argv[at] = json.dumps({**json.loads(argv[at]), **settings})
    else:
        argv += ["--settings", json.dumps(settings)]
    return argv


#: Stands for the session id in :func:`retry_argv`: only the supervisor learns it, from the
#: stream, and puts it in before a retry (``supervisor.SESSION_ID_SLOT``, the same text).
SESSION_ID_SLOT = "{session_id}"


def retry_argv(
    claude_bin: str,
    *,
    role: Role | None,
    model: str | None,
    interactive: bool,
    max_budget_usd: float | None = None,
    orch_tools: bool = False,
) -> list[str]:
    """claude's argv for a retry that continues the session the failed attempt recorded: the
    run's options with ``--resume`` :data:`SESSION_ID_SLOT`, never the run's own resume or
    fork."""
    return build_argv(
        claude_bin,
        role=role,
        model=model,
        resume_session=SESSION_ID_SLOT,
        interactive=interactive,
        max_budget_usd=max_budget_usd,
        orch_tools=orch_tools,
    )


def agent_env(
    *,
    run_id: int,
    name: str,
    state_dir: str,
    token: str,
    fork_of: str | None = None,
    orch_tools: bool = False,
) -> dict[str, str]:
    """Variables added to the agent's environment: the hooks use them to attach the session id
    to the right record (``ORCH_FORK_OF``: the session a fork was made from, never its own;
    empty for a run that is no fork, so it does not inherit a forked parent's);
    ``ORCH_RUN_ID`` with ``ORCH_RUN_TOKEN`` (random, one per run) marks every process the
    agent starts, so they are found and stopped when the run ends (see
    :mod:`orch_plugins.procs`); and the auto-updater must not npm-install behind our back."""
    return {
        "DISABLE_AUTOUPDATER": "1",
        "ORCH_AGENT": name,
        "ORCH_RUN_ID": str(run_id),
        "ORCH_RUN_TOKEN": token,
        "ORCH_STATE_DIR": state_dir,
        "ORCH_FORK_OF": fork_of or "",
        TOOLS_VAR: "1" if orch_tools else "0",
    }


def clean_env(environ: Mapping[str, str]) -> dict[str, str]:
    """``environ`` without a parent Claude Code session's variables (:data:`UNSET_ENV`) and an
    agent's (:data:`AGENT_ENV`): for a process that is nobody's agent (the orchestrator, a
    tmux server that will hold agents' windows)."""
    return {k: v for k, v in environ.items() if k not in UNSET_ENV and k not in AGENT_ENV}


# -- an interactive agent -------------------------------------------------------------------------

#: An interactive agent's task longer than this (bytes) goes to claude as a pointer to its
#: file: one argv string holds at most 128 KiB.
INTERACTIVE_ARG_LIMIT = 100_000


def interactive_argv(
    argv: Sequence[str], *, prompt: str, prompt_path: str, stop_file: str
) -> list[str]:
    """An interactive agent's whole command line: ``argv`` (:func:`build_argv` with
    ``interactive=True``), orch's hooks passed with ``--settings`` (:func:`hook_settings`), and
    the task as the first prompt after ``--`` (no shell ever parses it): the text itself, or
    for one over :data:`INTERACTIVE_ARG_LIMIT` bytes or holding NUL, a pointer to
    ``prompt_path``, which holds it."""
    if len(prompt.encode("utf-8")) > INTERACTIVE_ARG_LIMIT or "\0" in prompt:
        prompt = f"Your task is in the file {prompt_path}. Read all of it, then carry it out."
    return [*with_settings(argv, hook_settings(stop_file)), "--", prompt]


def hook_settings(stop_file: str) -> dict[str, Any]:
    """``--settings`` for an interactive agent: SessionStart and Stop run orch_plugins.claude_hooks
    from this very installation (no ``orch install`` needed; a user-level install also firing
    is harmless, both record the same), and Stop also copies its payload to ``stop_file``
    (written aside and renamed, so the supervisor never reads half of it), unless it is a
    sub-agent's (``agent_id``). ``Notification`` (the session waits for a person: a
    permission prompt, idle input) marks the run waiting, with Claude Code's message;
    ``PostToolUse`` and ``UserPromptSubmit`` (the person answered, the agent goes on) and
    ``Stop`` clear it."""
    import shlex

    # A sub-agent's stop (a payload with agent_id) is not the end of the session's turn.
    handover = (
        "import json, os, sys\n"
        "p = sys.argv[1]; t = p + '.tmp'; d = sys.stdin.buffer.read()\n"
        "try: j = json.loads(d)\n"
        "except ValueError: j = {}\n"
        "if not (isinstance(j, dict) and j.get('agent_id')):\n"
        "    open(t, 'wb').write(d); os.replace(t, p)\n"
    )
    py = shlex.quote(sys.executable)
    copy = f"{py} -S -c {shlex.quote(handover)} {shlex.quote(stop_file)}"
    return {
        "hooks": {
            "SessionStart": [{"hooks": [orch_hook_entry("SessionStart")]}],
            "Notification": [{"hooks": [orch_hook_entry("Notification")]}],
            "PostToolUse": [{"hooks": [orch_hook_entry("PostToolUse")]}],
            "UserPromptSubmit": [{"hooks": [orch_hook_entry("UserPromptSubmit")]}],
            "Stop": [
                {
                    "hooks": [
                        orch_hook_entry("Stop"),
                        {"type": "command", "command": copy, "timeout": 10},
                    ]
                }
            ],
        }
    }


def orch_hook_entry(event: str) -> dict[str, Any]:
    """A ``settings.json`` hook entry that runs :mod:`orch_plugins.claude_hooks` for ``event`` with
    this interpreter and this installation's package (nothing needs to be installed)."""
    import shlex

    parent = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    orch_hook = (
        f"import sys; sys.path.insert(0, {parent!r}); "
        "from orch_plugins.claude_hooks import main; sys.exit(main())"
    )
    command = f"{shlex.quote(sys.executable)} -S -c {shlex.quote(orch_hook)} {event}"
    return {"type": "command", "command": command, "timeout": 10}


# -- the orchestrator (orch start) ----------------------------------------------------------------

#: Appended to the orchestrator's system prompt by ``orch start``.
ORCHESTRATOR_PROMPT = """\
You are the orchestrator of a team of Claude Code agents, driven through the `orch` command \
(run it with the Bash tool; it needs no permission prompt). Split work that has independent \
parts into tasks and give each to its own agent instead of doing it all yourself:
- To start one agent in the background, write its task with the Write tool to \
`.orch-tasks/NAME.md` (in the current directory), then run \
`orch launch NAME --role ROLE --task-file .orch-tasks/NAME.md`; orch records the task and \
deletes the file. Never put task text in a shell command. `orch roles` lists roles.
- `orch wait NAME…` waits for agents: run it with the Bash tool's run_in_background option, \
so the session stays free. Each new prompt also lists the agents that ended since the previous \
one (name, status, first line of the result, output path).
- `orch status`, `orch output NAME`, `orch logs NAME`, `orch cancel NAME`, \
`orch resume NAME --task-file .orch-tasks/NAME.md` (continue an agent's session with the \
prompt in that file; `--fork` for a copy), \
`orch launch NAME --from SESSION_OR_AGENT --task-file …` (start from a fork of that \
session's context), `orch sessions` (known Claude Code sessions), `orch cost` (what \
agents cost, and the project budget: stay inside it).
The /orchestrate commands (`/orchestrate GOAL`, `/orchestrate:status`, …) do the common \
steps. When agents finish, read their outputs and give the user one summary: per agent what \
it found or changed, then conclusions, conflicts and next steps."""


#: What ``orch start`` lets the orchestrator do without asking: run orch, write the task
#: hand-over files that ``orch launch --task-file`` reads (and deletes), and call orch's MCP
#: tools (``orch mcp``, registered as ``orch`` in the project's ``.mcp.json``).
ORCHESTRATOR_TOOLS = "Bash(orch:*),Edit(./.orch-tasks/**),mcp__orch__*"


def orchestrator_argv(
    claude_bin: str,
    *,
    plugin_dir: str | None = None,
    hook_events: Sequence[str] = (),
    extra: Sequence[str] = (),
) -> list[str]:
    """The orchestrator's command line: claude with :data:`ORCHESTRATOR_PROMPT` appended to
    its system prompt and :data:`ORCHESTRATOR_TOOLS` pre-approved; the pack loaded as a plugin
    from ``plugin_dir``, or else orch's hooks for ``hook_events`` passed with ``--settings``
    (for where claude would not run the installed ones); then ``extra``, the user's own."""
    argv = [claude_bin, "--append-system-prompt", ORCHESTRATOR_PROMPT]
    argv += ["--allowedTools", ORCHESTRATOR_TOOLS]
    if plugin_dir:
        argv += ["--plugin-dir", plugin_dir]
    elif hook_events:
        hooks = {event: [{"hooks": [orch_hook_entry(event)]}] for event in hook_events}
        argv += ["--settings", json.dumps({"hooks": hooks})]
    return [*argv, *extra]


def orchestrator_env(environ: Mapping[str, str], *, state_dir: str) -> dict[str, str]:
    """The orchestrator's environment: ``environ`` cleaned (:func:`clean_env`: the
    orchestrator is nobody's agent), ``ORCH_STATE_DIR`` for its hooks, ``ORCH_PYTHON`` and
    ``PATH`` so the plugin form's hooks and the orch commands use this very installation."""
    env = clean_env(environ)
    env["ORCH_STATE_DIR"] = state_dir
    env.setdefault("ORCH_PYTHON", os.path.abspath(sys.executable))
    bindir = os.path.dirname(os.path.abspath(sys.executable))
    on_path = env.get("PATH", "").split(os.pathsep)
    if os.path.exists(os.path.join(bindir, "orch")) and bindir not in on_path:
        env["PATH"] = env.get("PATH", "") + os.pathsep + bindir
    return env


# -- what orch doctor checks about claude -------------------------------------------------------

#: Claude Code's switches to a cloud provider: with one set it does not use the Anthropic API.
PROVIDER_ENV = {
    "CLAUDE_CODE_USE_BEDROCK": "Amazon Bedrock",
    "CLAUDE_CODE_USE_VERTEX": "Google Vertex AI",
    "CLAUDE_CODE_USE_FOUNDRY": "Microsoft Foundry",
}
DEFAULT_BASE_URL = "https://api.anthropic.com"


def parse_version(text: str) -> tuple[int, ...] | None:
    """``(2, 1, 197)`` from ``claude --version``'s ``2.1.197 (Claude Code)``; None if absent."""
    import re

    m = re.search(r"(?<![\d.])(\d+)\.(\d+)\.(\d+)(?![\d.])", text)
    return tuple(int(p) for p in m.groups()) if m else None


def tested_range_note(version_text: str) -> tuple[bool | None, str]:
    """Is a ``claude --version`` output within the releases the tests cover
    (:data:`orch_plugins.CLAUDE_CODE_TESTED`, oldest to newest, both included)? Returns
    ``(True, note)`` inside it, ``(None, note)`` (a warning) outside it or without a number."""
    from orch_plugins import CLAUDE_CODE_TESTED, CLAUDE_CODE_VERSION

    lo, hi = CLAUDE_CODE_TESTED[0], CLAUDE_CODE_TESTED[-1]
    version = parse_version(version_text)
    if version is None:
        return None, f"no version number in its --version output (tested: {lo} to {hi})"
    lowest, highest = parse_version(lo), parse_version(hi)
    if lowest is not None and highest is not None and lowest <= version <= highest:
        return True, f"within the tested range {lo} to {hi}"
    return None, (
        f"outside the tested range {lo} to {hi}: agents may meet changes the tests never saw "
        f"(npm install -g @anthropic-ai/claude-code@{CLAUDE_CODE_VERSION})"
    )


def check_api(
    env: Mapping[str, str], claude: str | None = None, timeout: float = 10.0
) -> tuple[bool | None, str]:
    """Can Claude Code reach the API with the credentials in ``env`` (what agents inherit),
    without spending tokens? Returns ``(ok, detail)``; ``ok`` None is a warning.

    * A cloud provider switch (:data:`PROVIDER_ENV`): not checked, that SDK's credentials.
    * ``ANTHROPIC_AUTH_TOKEN`` (sent as ``Authorization: Bearer``) or ``ANTHROPIC_API_KEY``
      (``x-api-key``): ``GET {ANTHROPIC_BASE_URL}/v1/models?limit=1``, which lists models and
      costs nothing; 401/403 means the key is refused, a connection error that the API (or
      proxy) cannot be reached. A gateway without that endpoint (404) is a warning.
    * Neither: ``claude auth status --json`` (Claude Code's own answer: a ``claude auth login``,
      an ``apiKeyHelper``, a key in its settings), which cannot be verified without a request
      that spends tokens.
    """
    import urllib.error
    import urllib.request

    for var, provider in PROVIDER_ENV.items():
        if env.get(var, "").strip().lower() not in ("", "0", "false", "no"):
            return True, f"not checked: Claude Code uses {provider} ({var}) and its credentials"
    headers = {"anthropic-version": "2023-06-01"}
    sources = []
    if env.get("ANTHROPIC_AUTH_TOKEN"):
        headers["Authorization"] = f"Bearer {env['ANTHROPIC_AUTH_TOKEN']}"
        sources.append("ANTHROPIC_AUTH_TOKEN")
    if env.get("ANTHROPIC_API_KEY"):
        headers["x-api-key"] = env["ANTHROPIC_API_KEY"]
        sources.append("ANTHROPIC_API_KEY")
    if not sources:
        return _login_status(env, claude)
    base = (env.get("ANTHROPIC_BASE_URL") or DEFAULT_BASE_URL).rstrip("/")
    source = " and ".join(sources)
    request = urllib.request.Request(f"{base}/v1/models?limit=1", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout):
            pass
    except urllib.error.HTTPError as exc:
        why = f"HTTP {exc.code}{_api_error(exc)}"
        if exc.code in (401, 403):
            return False, (
                f"{base} refuses the key in {source} ({why}): agents would fail at their "
                "first request"
            )
        if exc.code == 404:
            return None, f"{base} has no /v1/models ({why}): the key in {source} is unchecked"
        return False, f"{base}/v1/models answered {why}"
    except (urllib.error.URLError, OSError, ValueError) as exc:
        where = " (ANTHROPIC_BASE_URL)" if env.get("ANTHROPIC_BASE_URL") else ""
        return False, f"cannot reach {base}{where}: {getattr(exc, 'reason', exc)}"
    return True, f"{base} accepts the key in {source} (GET /v1/models: no tokens spent)"


def _api_error(exc: Any) -> str:
    """``: TYPE: MESSAGE`` from an API error body, or nothing."""
    import json

    try:
        error = json.loads(exc.read().decode("utf-8", "replace"))["error"]
        return f": {error['type']}: {error['message']}"
    except (OSError, ValueError, KeyError, TypeError):
        return ""


def _login_status(env: Mapping[str, str], claude: str | None) -> tuple[bool | None, str]:
    """No key in the environment: ask Claude Code whether it has credentials of its own."""
    import json
    import subprocess

    none = (
        "no credentials: neither ANTHROPIC_API_KEY nor ANTHROPIC_AUTH_TOKEN is set, and Claude "
        "Code is not logged in (claude auth login)"
    )
    if claude is None:
        return False, none
    try:
        proc = subprocess.run(
            [claude, "auth", "status", "--json"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=30,
            env={**env, "DISABLE_AUTOUPDATER": "1"},
        )
        status = json.loads(proc.stdout)
        logged_in, method = status["loggedIn"], status.get("authMethod", "?")
    except (OSError, subprocess.TimeoutExpired, ValueError, KeyError, TypeError) as exc:
        return None, f"could not tell: 'claude auth status' gave no answer ({exc})"
    if not logged_in:
        return False, none
    source = status.get("apiKeySource")
    how = f"{method}{f' from {source}' if source else ''}"
    return True, f"Claude Code has credentials ({how}); checking them would spend tokens"

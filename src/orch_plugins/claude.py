"""The one place that builds claude's command line and environment for an agent, and what
``orch doctor`` checks about the installed claude (its version against the tested range, its
credentials against the API)."""

from __future__ import annotations

from collections.abc import Mapping
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

#: Set by :func:`agent_env` for one agent: a process that is no agent (the orchestrator, a tmux
#: server) must not carry them, or its sessions would be taken for that agent's.
AGENT_ENV = procs.AGENT_VARS


def build_argv(
    claude_bin: str,
    *,
    role: Role | None = None,
    model: str | None = None,
    resume_session: str | None = None,
    fork: bool = False,
    interactive: bool = False,
) -> list[str]:
    """claude's argv. The prompt is never in it: it goes on stdin (``-p``), so task text never
    meets a shell or an argv length limit. A role adds its system prompt, its tool list
    (``--tools`` limits what is offered, ``--allowedTools`` pre-approves) and its permission
    mode; without a role Claude Code's own defaults and the user's settings apply."""
    argv = [claude_bin]
    if not interactive:
        # Partial messages: the supervisor keeps the text being written for orch logs -f.
        argv += ["-p", "--output-format", "stream-json", "--verbose", "--include-partial-messages"]
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
    if resume_session:
        argv += ["--resume", resume_session]
        if fork:
            argv.append("--fork-session")
    return argv


def agent_env(
    *, run_id: int, name: str, state_dir: str, token: str, fork_of: str | None = None
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
    }


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
    if parse_version(lo) <= version <= parse_version(hi):  # type: ignore[operator]
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

"""The one place that builds claude's command line and environment for an agent."""

from __future__ import annotations

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
        argv += ["-p", "--output-format", "stream-json", "--verbose"]
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


def agent_env(*, run_id: int, name: str, state_dir: str) -> dict[str, str]:
    """Variables added to the agent's environment: the hooks use them to attach the session id
    to the right record, and the auto-updater must not npm-install behind our back."""
    return {
        "DISABLE_AUTOUPDATER": "1",
        "ORCH_AGENT": name,
        "ORCH_RUN_ID": str(run_id),
        "ORCH_STATE_DIR": state_dir,
    }

"""Agent roles: templates that set an agent's system prompt, tools, permissions and framing.

Built-in roles are registered by an ordinary plugin (``orch_plugins.roles.builtin``) exactly as a
third-party plugin registers its own; ``.claude/agents/*.md`` files become roles through another
(``orch_plugins.roles.claude_agents``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from orch_plugins.errors import OrchError

#: ``--permission-mode`` values that both the pinned Claude Code (2.1.197) and the newest tested
#: one (2.1.332) accept. ``default`` is the mode Claude Code 2.1.200+ calls "manual" in its CLI;
#: ``default`` stays its config value and is still accepted, while 2.1.197 refuses ``manual``.
PERMISSION_MODES = ("default", "acceptEdits", "plan", "auto", "dontAsk", "bypassPermissions")
#: Other spellings a role (or an agent file) may use, and the mode each means.
PERMISSION_MODE_ALIASES = {"manual": "default"}


def tool_base_name(entry: str) -> str:
    """``"Bash(git diff:*)"`` -> ``"Bash"``: the tool a permission rule is about."""
    return entry.split("(", 1)[0].strip()


@dataclass(frozen=True)
class Role:
    """One agent template.

    ``task_template`` frames the task: ``{task}`` is replaced by the task text (plain string
    replacement, so braces in a task are safe). ``allowed_tools`` is the role's tool list: it
    limits the built-in tools the agent is offered (``--tools``, base names: ``Bash(git log:*)``
    offers ``Bash``) and pre-approves each entry as written (``--allowedTools``); empty means
    Claude Code's default set, none pre-approved. ``permission_mode`` is always passed
    (``--permission-mode``): ``None`` and ``"manual"`` mean ``"default"``.
    """

    name: str
    description: str = ""
    system_prompt: str = ""
    allowed_tools: tuple[str, ...] = ()
    disallowed_tools: tuple[str, ...] = ()
    permission_mode: str | None = "default"
    model: str | None = None
    task_template: str = "{task}"
    source: str = ""
    #: Leave what the agent started (a dev server, a watcher) running when its run ends.
    keep_children: bool = False
    #: Run in a git worktree of its own (``orch launch --worktree``) unless the launch says
    #: ``--no-worktree``; in a project that is not a git repository the agent runs in place.
    worktree: bool = False

    def __post_init__(self) -> None:
        mode = self.permission_mode or "default"
        object.__setattr__(self, "permission_mode", PERMISSION_MODE_ALIASES.get(mode, mode))
        object.__setattr__(self, "allowed_tools", tuple(self.allowed_tools))
        object.__setattr__(self, "disallowed_tools", tuple(self.disallowed_tools))

    def frame(self, task: str) -> str:
        return self.task_template.replace("{task}", task)

    def offered_tools(self) -> list[str] | None:
        """The built-in tools to offer (``--tools``), or ``None`` for Claude Code's default set.

        MCP tools (``mcp__…``) are left out: ``--tools`` covers built-in tools only, and the
        project's MCP servers stay connected, so listed MCP tools are still offered (and
        pre-approved). An empty list (every entry an MCP tool) offers no built-in tool.
        """
        if not self.allowed_tools:
            return None
        names = [tool_base_name(t) for t in self.allowed_tools]
        return list(dict.fromkeys(n for n in names if n and not n.startswith("mcp__")))

    def wants_orch_tools(self) -> bool:
        """Whether the role's tools name orch's MCP tools (``mcp__orch__*``,
        ``mcp__orch__launch``, …): its agents then get orch's MCP server (``orch mcp``), which
        every other agent runs without."""
        return any(
            tool_base_name(t) == "mcp__orch" or tool_base_name(t).startswith("mcp__orch__")
            for t in self.allowed_tools
        )

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["allowed_tools"] = list(self.allowed_tools)
        data["disallowed_tools"] = list(self.disallowed_tools)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Role:
        """The inverse of :meth:`to_json`; unknown keys (from a newer orch) are ignored.

        Raises ``TypeError``/``ValueError`` for data that is not a role."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


class RoleRegistry:
    """Collects roles from plugins; duplicate names fail loudly, naming both owners."""

    def __init__(self) -> None:
        self._roles: dict[str, Role] = {}
        self._owners: dict[str, str] = {}
        self._user_files: set[str] = set()
        self._overridden: dict[str, str] = {}
        self.current_owner = "?"

    def add(self, role: Role, *, user_file: bool = False) -> None:
        """Register a role. ``user_file`` marks a role from the user's own ``.claude/agents``
        file: it overrides a plugin's role of the same name (people keep a personal
        ``tester.md``; refusing every ``orch`` call for that would punish them), whatever the
        order plugins run in. Two plugins, or two user files, with one name fail loudly."""
        if not isinstance(role, Role):
            raise OrchError(f"plugin {self.current_owner} registered {role!r}, not a Role")
        if role.permission_mode not in PERMISSION_MODES:
            raise OrchError(
                f"role {role.name!r} from {self.current_owner}: unknown permission mode "
                f"{role.permission_mode!r}"
            )
        # A role read from a file names the file: "built-in ...claude_agents" alone does not
        # tell a user which of their agent files clashes.
        owner = f"{self.current_owner} ({role.source})" if role.source else self.current_owner
        if role.name in self._roles:
            theirs = role.name in self._user_files
            if user_file and not theirs:
                self._overridden[role.name] = self._owners[role.name]
            elif theirs and not user_file:
                self._overridden[role.name] = owner
                return
            else:
                raise OrchError(
                    f"role name {role.name!r} is registered twice: by {self._owners[role.name]} "
                    f"and by {owner}"
                )
        if user_file:
            self._user_files.add(role.name)
        self._roles[role.name] = role
        self._owners[role.name] = owner

    def overridden(self, name: str) -> str | None:
        """Who registered a role that the user's agent file of the same name replaced."""
        return self._overridden.get(name)

    def get(self, name: str) -> Role | None:
        return self._roles.get(name)

    def owner(self, name: str) -> str:
        return self._owners[name]

    def names(self) -> list[str]:
        return sorted(self._roles)

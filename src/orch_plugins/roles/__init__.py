"""Agent roles: templates that set an agent's system prompt, tools, permissions and framing.

Built-in roles are registered by an ordinary plugin (``orch_plugins.roles.builtin``) exactly as a
third-party plugin registers its own; ``.claude/agents/*.md`` files become roles through another
(``orch_plugins.roles.claude_agents``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from orch_plugins.errors import OrchError

PERMISSION_MODES = ("default", "acceptEdits", "plan", "bypassPermissions", "dontAsk")


@dataclass(frozen=True)
class Role:
    """One agent template.

    ``task_template`` frames the task: ``{task}`` is replaced by the task text (plain string
    replacement, so braces in a task are safe). ``allowed_tools`` become ``--allowedTools``;
    in ``claude -p`` a tool that is not allowed is refused rather than prompted for.
    """

    name: str
    description: str = ""
    system_prompt: str = ""
    allowed_tools: tuple[str, ...] = ()
    disallowed_tools: tuple[str, ...] = ()
    permission_mode: str | None = None
    model: str | None = None
    task_template: str = "{task}"
    source: str = ""

    def frame(self, task: str) -> str:
        return self.task_template.replace("{task}", task)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["allowed_tools"] = list(self.allowed_tools)
        data["disallowed_tools"] = list(self.disallowed_tools)
        return data


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
        if role.permission_mode and role.permission_mode not in PERMISSION_MODES:
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

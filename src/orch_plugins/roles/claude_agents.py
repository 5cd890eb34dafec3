"""Roles from Claude Code's own sub-agent files: ``.claude/agents/*.md`` (project, then user).

A project file wins over a user file of the same name, as in Claude Code, and an agent file
wins over a plugin's role of the same name (see :meth:`RoleRegistry.add`). The front matter keys
used are ``name``, ``description``, ``tools`` (comma-separated) and ``model`` (``inherit`` means
none); the body becomes the appended system prompt. A file that cannot be read or parsed is
skipped with a warning rather than breaking every ``orch`` command.
"""

from __future__ import annotations

import logging
from pathlib import Path

from orch_plugins.hookspecs import hookimpl
from orch_plugins.roles import Role, RoleRegistry
from orch_plugins.store import find_project_dir

log = logging.getLogger(__name__)


def parse_agent_file(path: Path) -> Role | None:
    text = path.read_text(encoding="utf-8")
    meta: dict[str, str] = {}
    body = text
    if text.startswith("---"):
        head, sep, rest = text[3:].partition("\n---")
        if not sep:
            raise ValueError("front matter is not closed with '---'")
        body = rest.partition("\n")[2]
        for line in head.splitlines():
            key, colon, value = line.partition(":")
            if colon and key.strip() and not line.startswith((" ", "\t")):
                meta[key.strip()] = value.strip().strip("'\"")
    name = meta.get("name") or path.stem
    tools = tuple(t.strip() for t in meta.get("tools", "").split(",") if t.strip())
    model = meta.get("model") or None
    return Role(
        name=name,
        description=meta.get("description", ""),
        system_prompt=body.strip(),
        allowed_tools=tools,
        model=None if model == "inherit" else model,
        source=str(path),
    )


def agent_dirs() -> list[Path]:
    return [find_project_dir() / ".claude" / "agents", Path.home() / ".claude" / "agents"]


@hookimpl
def orch_register_roles(registry: RoleRegistry) -> None:
    seen: dict[str, Role] = {}
    for directory in agent_dirs():
        if not directory.is_dir():
            continue
        for path in sorted(directory.glob("*.md")):
            try:
                role = parse_agent_file(path)
            except (OSError, UnicodeDecodeError, ValueError) as exc:
                log.warning("skipping agent file %s: %s", path, exc)
                continue
            if role and role.name not in seen:
                seen[role.name] = role
    for role in seen.values():
        registry.add(role, user_file=True)

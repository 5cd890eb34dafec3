"""Roles from Claude Code's own sub-agent files: ``.claude/agents/*.md`` (project, then user).

Read the way Claude Code reads them (checked against 2.1.197 and 2.1.332 with the same files):

- The front matter is the text between a first line ``---`` and the next ``---``, parsed as
  YAML (1.2 scalars: ``on``/``yes`` stay strings). A UTF-8 BOM and CRLF line ends are
  ignored; bytes that are not UTF-8 become U+FFFD.
- Front matter that is not valid YAML is parsed once more with every ``key: value`` line whose
  value YAML would stumble on (``Use when: …``, ``#``, an unclosed ``[``) quoted as a string.
- A file without a string ``name`` and a string ``description`` in its front matter is no
  agent (a file without front matter included): Claude Code ignores it, and so does orch.
- ``tools`` and ``disallowedTools``: a YAML list or a string, split at commas and spaces
  outside parentheses (``Bash(git diff:*)`` stays whole); empty or absent means every tool.
- ``model``: ``inherit`` means none; ``permissionMode``: ``manual`` means ``default``, an
  unknown one is reported and ``default`` is used.
- The body (stripped) becomes the appended system prompt.

A project file wins over a user file of the same name, as in Claude Code, and an agent file
wins over a plugin's role of the same name (see :meth:`RoleRegistry.add`). PyYAML is imported
only when an agent file is read, so commands that need no role stay fast.
"""

from __future__ import annotations

import logging
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

from orch_plugins.hookspecs import hookimpl
from orch_plugins.roles import PERMISSION_MODE_ALIASES, PERMISSION_MODES, Role, RoleRegistry
from orch_plugins.store import find_project_dir

log = logging.getLogger(__name__)

#: Claude Code's front matter rule: the closing ``---`` is the first one after the opening line,
#: wherever it stands (``description: a---b`` ends the front matter after ``a``, there too).
_FRONT_MATTER = re.compile(r"\A---\s*\n(.*?)---\s*\n?", re.S)
#: A top-level ``key: value`` line, the only kind the second parse quotes.
_KEY_LINE = re.compile(r"^([A-Za-z_-]+):[ \t]+(.+?)[ \t]*$")
#: What makes a plain YAML value fail or change meaning: ``: `` and `` #`` inside it, or an
#: indicator character at its start.
_AWKWARD = re.compile(r":\s|\s#|^[\[\]{}&*!|>'\"%@`,?#-]")
_BLOCK_HEADER = re.compile(r"^[|>][+-]?[0-9]?[+-]?$")


class AgentFileError(ValueError):
    """An agent file that Claude Code would not load either; the message says why."""


def _quote_awkward_values(front: str) -> str:
    """Quote every top-level value that plain YAML would misread; leave the rest alone."""
    out = []
    for line in front.split("\n"):
        match = _KEY_LINE.match(line)
        if match:
            key, value = match.groups()
            quoted = len(value) > 1 and value[0] == value[-1] and value[0] in "'\""
            collection = (value[0], value[-1]) in (("[", "]"), ("{", "}"))
            if (
                not quoted
                and not collection
                and not _BLOCK_HEADER.match(value)
                and _AWKWARD.search(value)
            ):
                escaped = value.replace("\\", "\\\\").replace('"', '\\"')
                line = f'{key}: "{escaped}"'
        out.append(line)
    return "\n".join(out)


@lru_cache(maxsize=1)
def _yaml_loader() -> Any:
    """PyYAML's safe loader with YAML 1.2 booleans (``true``/``false`` only), as Claude Code's
    JavaScript parser reads them: ``description: on`` is the string ``on``."""
    import yaml

    base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    bool_tag = "tag:yaml.org,2002:bool"

    # base is CSafeLoader when PyYAML was built with libyaml, else SafeLoader: a class chosen at
    # run time, which mypy cannot take as a base.
    class Loader(base):  # type: ignore[misc,valid-type]
        pass

    Loader.yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag != bool_tag]
        for first, resolvers in base.yaml_implicit_resolvers.items()
    }
    Loader.add_implicit_resolver(
        bool_tag, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
    )
    return Loader


def parse_front_matter(text: str) -> tuple[dict[str, Any], str] | None:
    """``(front matter, body)`` of an agent file's text, or ``None`` without front matter.

    Front matter that is never closed, or is not YAML even after quoting awkward values, raises
    ``AgentFileError`` (Claude Code ignores such a file silently; orch says why).
    """
    text = text.removeprefix("\ufeff").replace("\r\n", "\n")
    match = _FRONT_MATTER.match(text)
    if match is None:
        if re.match(r"---\s*\n", text):
            raise AgentFileError("front matter is not closed with '---'")
        return None
    import yaml

    front, body = match.group(1), text[match.end() :]
    try:
        data = yaml.load(front, Loader=_yaml_loader())
    except yaml.YAMLError:
        try:
            data = yaml.load(_quote_awkward_values(front), Loader=_yaml_loader())
        except yaml.YAMLError as exc:
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise AgentFileError(f"front matter is not YAML ({first})") from None
    return (data if isinstance(data, dict) else {}), body


def split_tools(value: Any) -> tuple[str, ...]:
    """A ``tools`` value (list or string) as tool entries: split at commas and whitespace
    outside parentheses, so ``"Read Grep, Bash(git diff:*)"`` gives three."""
    items = value if isinstance(value, list) else [value]
    out: list[str] = []
    for item in items:
        if not isinstance(item, str):
            continue
        depth, current = 0, ""
        for char in item:
            depth += {"(": 1, ")": -1}.get(char, 0)
            if depth <= 0 and (char == "," or char.isspace()):
                if current:
                    out.append(current)
                current, depth = "", 0
            else:
                current += char
        if current:
            out.append(current)
    return tuple(out)


def parse_agent_file(path: Path) -> Role | None:
    """The role an agent file defines, or ``None`` when Claude Code would not load it.

    Raises ``OSError`` when it cannot be read and ``AgentFileError`` for front matter that is
    there but unusable (not YAML, no ``name`` or ``description``)."""
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        log.warning("agent file %s is not UTF-8: read with U+FFFD for bad bytes", path)
        text = raw.decode("utf-8", "replace")
    parsed = parse_front_matter(text)
    if parsed is None:
        log.debug("%s has no front matter: not an agent", path)
        return None
    meta, body = parsed
    name, description = meta.get("name"), meta.get("description")
    if not isinstance(name, str) or not name.strip():
        raise AgentFileError("its front matter has no 'name' (Claude Code ignores it too)")
    if not isinstance(description, str) or not description.strip():
        raise AgentFileError("its front matter has no 'description' (Claude Code ignores it too)")
    model = meta.get("model")
    model = model.strip() if isinstance(model, str) and model.strip() else None
    mode = meta.get("permissionMode")
    if mode is not None:
        mode = PERMISSION_MODE_ALIASES.get(str(mode), str(mode))
        if mode not in PERMISSION_MODES:
            log.warning(
                "agent file %s: unknown permissionMode %r; using 'default' (known: %s)",
                path,
                meta["permissionMode"],
                ", ".join(PERMISSION_MODES),
            )
            mode = None
    return Role(
        name=name.strip(),
        description=description.strip(),
        system_prompt=body.strip(),
        allowed_tools=split_tools(meta.get("tools")),
        disallowed_tools=split_tools(meta.get("disallowedTools")),
        permission_mode=mode,
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
            except (OSError, ValueError) as exc:
                log.warning("skipping agent file %s: %s", path, exc)
                continue
            if role and role.name not in seen:
                seen[role.name] = role
    for role in seen.values():
        registry.add(role, user_file=True)

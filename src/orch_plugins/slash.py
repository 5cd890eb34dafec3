"""The arguments of the ``/orchestrate:COMMAND`` slash commands, exactly as the person typed them.

Claude Code hands a slash command's arguments to the model as text (``$ARGUMENTS``). Having the
model copy them into a shell command is how a task starting with ``-``, holding a quote, a
``$(…)`` or the line that ends a here-document broke the commands, or reached a shell. So the
arguments never pass through the model or a shell: orch's ``UserPromptSubmit`` hook saves them
from the prompt (:func:`orch_plugins.claude_hooks.save_command_args`), the command's text has the
model run ``orch slash COMMAND`` (no arguments), and this module reads them back for that
session (``CLAUDE_CODE_SESSION_ID``) and parses them:

=========  =====================================================================
launch     ``NAME [--role ROLE] [--] TASK``
parallel   ``[--role ROLE | --roles R1,R2,…] [--] TASK | TASK …`` (or one per line)
resume     ``NAME [--fork] [--as NEWNAME] [--] PROMPT``
cancel     ``NAME … | --all``
output     ``NAME …``
=========  =====================================================================

Options are recognised only before the text; everything after them (or after ``--``) is the
task, verbatim but for the whitespace around it. In ``parallel``, tasks are separated by new
lines, or by a ``|`` with whitespace on both sides: ``a | b`` is two tasks, ``a||b`` one.
"""

from __future__ import annotations

import os
import re

from orch_plugins.claude_hooks import SLASH_COMMANDS, slash_dir
from orch_plugins.errors import OrchError

#: A ``|`` standing alone between whitespace (or a line's ends) separates parallel tasks.
TASK_SEPARATOR = re.compile(r"(?<!\S)\|(?!\S)")


class NotSaved(OrchError):
    """No arguments were saved for this session and command."""


def claim(command: str, session_id: str) -> str:
    """The arguments the hook saved for ``/orchestrate:COMMAND`` in this session, once.

    The file is renamed to ``….used`` as it is read, so running the command twice never
    launches twice. Raises :class:`NotSaved` (saying which) when there is nothing to read.
    """
    if command not in SLASH_COMMANDS:
        known = ", ".join(sorted(SLASH_COMMANDS))
        raise OrchError(f"unknown slash command {command!r} (one of {known})")
    path = os.path.join(slash_dir(), f"{session_id}.{command}")
    used = path + ".used"
    try:
        os.replace(path, used)
    except FileNotFoundError:
        if os.path.exists(used):
            raise NotSaved(
                f"the arguments of the last /orchestrate:{command} were already used; "
                "type the command again to run it again"
            ) from None
        raise NotSaved(
            f"no arguments of /orchestrate:{command} were saved for this Claude Code session"
        ) from None
    with open(used, "rb") as fh:
        data = fh.read()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise OrchError("the command's arguments are not valid UTF-8") from None


def _next_word(text: str, pos: int) -> tuple[str, int, int] | None:
    """The next whitespace-separated word at or after ``pos``: ``(word, start, end)``."""
    start = pos
    while start < len(text) and text[start].isspace():
        start += 1
    if start == len(text):
        return None
    end = start
    while end < len(text) and not text[end].isspace():
        end += 1
    return text[start:end], start, end


def split_args(
    text: str, *, names: int = 0, flags: tuple[str, ...] = (), valued: tuple[str, ...] = ()
) -> tuple[list[str], dict[str, str | bool], str]:
    """``(leading names, options, rest)`` of a command's arguments.

    ``names`` leading words are taken as names; ``flags`` (``--fork``) and ``valued``
    options (``--role R`` or ``--role=R``) are recognised among them, before the rest; ``--``
    ends them. The rest is the text after the last of these, stripped of surrounding
    whitespace and otherwise untouched.
    """
    words: list[str] = []
    options: dict[str, str | bool] = {}
    pos = 0
    while (found := _next_word(text, pos)) is not None:
        word, _, end = found
        key, eq, value = word.partition("=")
        if word == "--":
            pos = end
            break
        if word in flags:
            options[word] = True
        elif key in valued:
            if not eq:
                following = _next_word(text, end)
                if following is None:
                    raise OrchError(f"{key} needs a value")
                value, _, end = following
            if not value:
                raise OrchError(f"{key} needs a value")
            options[key] = value
        elif len(words) < names:
            words.append(word)
        else:
            break
        pos = end
    if len(words) < names:
        raise OrchError("name the agent first (letters, digits, '.', '_', '-')")
    return words, options, text[pos:].strip()


def value(options: dict[str, str | bool], key: str) -> str | None:
    """A valued option's text from :func:`split_args` (None when not given)."""
    found = options.get(key)
    return found if isinstance(found, str) else None


def split_tasks(text: str) -> list[str]:
    """Parallel tasks: one per line, and within a line split at a spaced ``|``."""
    tasks = [
        part.strip()
        for line in text.splitlines()
        for part in TASK_SEPARATOR.split(line)
        if part.strip()
    ]
    if not tasks:
        raise OrchError("no tasks given (separate tasks with new lines or ' | ')")
    return tasks

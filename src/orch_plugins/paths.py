"""Where a project's orch state lives: the one rule, for ``orch``, the store and the hooks.

``os`` only: the hooks run on every Claude Code event and import this before anything else.

The rule: ``ORCH_STATE_DIR`` when set (``~`` expanded, made absolute); else ``.orchestrate`` in
the project directory, which is the nearest directory at or above the start (Claude Code's
``$CLAUDE_PROJECT_DIR``, else the current directory) holding ``.orchestrate``, else ``.git``,
else ``.claude``, else the start itself. The home directory is never a project: a
``~/.claude`` (Claude Code's own) or a dotfiles ``~/.git`` must not turn every directory
below it into one project. ``orch`` creates the state directory when it needs one; the hooks
use it only when it exists (:func:`existing_state_dir`).
"""

from __future__ import annotations

import os

STATE_DIR_NAME = ".orchestrate"
#: What marks a project's root, strongest first.
PROJECT_MARKERS = (STATE_DIR_NAME, ".git", ".claude")


def project_dir(start: str | os.PathLike[str] | None = None) -> str:
    """The project directory for ``start`` (default: ``$CLAUDE_PROJECT_DIR``, else the current
    directory), by the rule above; an absolute path with symlinks resolved."""
    if start is None:
        start = os.environ.get("CLAUDE_PROJECT_DIR") or os.getcwd()
    here = os.path.realpath(start)
    home = os.path.realpath(os.path.expanduser("~"))
    for marker in PROJECT_MARKERS:
        path = here
        while True:
            if path != home and os.path.exists(os.path.join(path, marker)):
                return path
            parent = os.path.dirname(path)
            if parent == path:
                break
            path = parent
    return here


def state_dir(start: str | os.PathLike[str] | None = None) -> str:
    """The state directory: ``$ORCH_STATE_DIR``, else ``<project>/.orchestrate`` (which may
    not exist yet)."""
    env = os.environ.get("ORCH_STATE_DIR")
    if env:
        return os.path.realpath(os.path.expanduser(env))
    return os.path.join(project_dir(start), STATE_DIR_NAME)


def existing_state_dir(start: str | os.PathLike[str] | None = None) -> str | None:
    """:func:`state_dir` when it is a directory, else None (what the hooks use: they never
    create one)."""
    path = state_dir(start)
    return path if os.path.isdir(path) else None

"""User configuration: ``config.toml`` in the platformdirs config directory, then environment.

Precedence, highest first: command-line flag, environment variable, ``config.toml``, default.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orch_plugins.errors import OrchError

APP_NAME = "orch-plugins"


def boolean(raw: object) -> bool:
    """A true/false setting from TOML (a boolean) or the environment (``1``/``0``, ``true``/
    ``false``, ``yes``/``no``, ``on``/``off``); ``ValueError`` for anything else."""
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError(raw)


#: key -> (environment variable, type or converter, default)
SETTINGS: dict[str, tuple[str, Callable[[Any], Any], Any]] = {
    "claude_bin": ("ORCH_CLAUDE_BIN", str, None),
    "default_backend": ("ORCH_DEFAULT_BACKEND", str, "subprocess"),
    "default_role": ("ORCH_DEFAULT_ROLE", str, None),
    # 4: what one API key sustains before rate limits start (docs/configuration.md).
    "max_parallel": ("ORCH_MAX_PARALLEL", int, 4),
    "max_depth": ("ORCH_MAX_DEPTH", int, 2),
    "max_agents": ("ORCH_MAX_AGENTS", int, 64),
    "retry_backoff": ("ORCH_RETRY_BACKOFF", float, 2.0),
    "kill_grace": ("ORCH_KILL_GRACE", float, 5.0),
    "result_grace": ("ORCH_RESULT_GRACE", float, 3.0),
    "containment": ("ORCH_CONTAINMENT", str, "auto"),
    "idle_timeout": ("ORCH_IDLE_TIMEOUT", float, None),
    "keep_transcripts": ("ORCH_KEEP_TRANSCRIPTS", boolean, True),
}
#: ``[budget]`` keys: US dollars the project may spend per UTC day, and in all.
BUDGET_KEYS = ("daily_usd", "total_usd")
CONTAINMENTS = ("auto", "tree")


def config_path() -> Path:
    env = os.environ.get("ORCH_CONFIG")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return platformdirs.user_config_path(APP_NAME) / "config.toml"


@dataclass
class Config:
    claude_bin: str | None = None
    default_backend: str = "subprocess"
    default_role: str | None = None
    max_parallel: int = 4
    #: How deep agents may launch agents: 1 = only people and the orchestrator launch, 2 = an
    #: agent may launch helpers, which may not launch their own.
    max_depth: int = 2
    #: At most this many live (queued or running) agents in the project.
    max_agents: int = 64
    retry_backoff: float = 2.0
    kill_grace: float = 5.0
    result_grace: float = 3.0
    #: How a run's processes are held together: ``auto`` (a cgroup where possible) or ``tree``.
    containment: str = "auto"
    #: The watchdog's default (seconds without a stream event; None: off).
    idle_timeout: float | None = None
    #: Keep a copy of each run's session transcript in its run directory, so a resume or fork
    #: elsewhere (another directory, host or node) keeps the context.
    keep_transcripts: bool = True
    #: ``[budget]``: ``daily_usd`` and ``total_usd`` when set (US dollars).
    budget: dict[str, float] = field(default_factory=dict)
    #: ``[backends.NAME]`` tables, handed to each backend's constructor.
    backends: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: ``[hosts.NAME]`` tables (remote backends).
    hosts: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: The ``[worktree]`` table (``dir``, ``copy``; see :mod:`orch_plugins.worktrees`).
    worktree: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    def resolve_claude(self) -> str:
        """The absolute path of the claude binary, so agents never depend on PATH or shims."""
        wanted = self.claude_bin or "claude"
        found = shutil.which(os.path.expanduser(wanted))
        if not found:
            from orch_plugins import CLAUDE_CODE_TESTED, CLAUDE_CODE_VERSION

            raise OrchError(
                f"claude binary {wanted!r} not found: install Claude Code {CLAUDE_CODE_VERSION} "
                f"(npm install -g @anthropic-ai/claude-code@{CLAUDE_CODE_VERSION}; tested "
                f"{CLAUDE_CODE_TESTED[0]} to {CLAUDE_CODE_TESTED[-1]}) or set ORCH_CLAUDE_BIN / "
                "claude_bin in config.toml"
            )
        return os.path.abspath(found)


def _load_toml(path: Path) -> dict[str, Any]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        return {}
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise OrchError(f"cannot read config {path}: {exc}") from None


def load_config() -> Config:
    path = config_path()
    data = _load_toml(path)
    cfg = Config(path=path)
    for key, (env, typ, _default) in SETTINGS.items():
        raw = os.environ.get(env)
        source = f"${env}"
        if raw is None and key in data:
            raw, source = data[key], f"{key} in {path}"
        if raw is None:
            continue
        try:
            value = typ(raw)
        except (TypeError, ValueError):
            raise OrchError(
                f"{source}: expected {getattr(typ, '__name__', typ)}, got {raw!r}"
            ) from None
        if key in ("max_parallel", "max_depth", "max_agents") and value < 1:
            raise OrchError(f"{source}: {key} must be at least 1")
        if key == "result_grace" and not 0 <= value <= 3600:
            raise OrchError(f"{source}: result_grace must be between 0 and 3600 seconds")
        if key == "idle_timeout" and not value > 0:
            raise OrchError(f"{source}: idle_timeout must be a positive number of seconds")
        if key == "containment" and value not in CONTAINMENTS:
            raise OrchError(f"{source}: containment must be one of {', '.join(CONTAINMENTS)}")
        setattr(cfg, key, value)
    for table in ("backends", "hosts", "worktree"):
        value = data.get(table, {})
        if not isinstance(value, dict):
            raise OrchError(f"[{table}] in {path} must be a table")
        setattr(cfg, table, value)
    budget = data.get("budget", {})
    if not isinstance(budget, dict):
        raise OrchError(f"[budget] in {path} must be a table")
    for key, raw in budget.items():
        if key not in BUDGET_KEYS:
            raise OrchError(f"[budget] in {path}: unknown key {key!r} ({', '.join(BUDGET_KEYS)})")
        if isinstance(raw, bool) or not isinstance(raw, (int, float)) or not raw > 0:
            raise OrchError(f"[budget] {key} in {path}: expected a positive number, got {raw!r}")
        cfg.budget[key] = float(raw)
    return cfg

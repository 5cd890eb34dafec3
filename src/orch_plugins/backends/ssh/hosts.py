"""Remote hosts for the ssh backend: a ``[hosts.NAME]`` table checked into a :class:`Host`,
and the directory name a project gets on every host."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orch_plugins.backend import project_name
from orch_plugins.errors import OrchError

#: Keys of a ``[hosts.NAME]`` table.
HOST_KEYS = frozenset(
    {
        "ssh",
        "max_parallel",
        "workdir",
        "claude",
        "python",
        "base_dir",
        "ssh_config",
        "ssh_options",
        "env",
        "forward_env",
        "repo",
    }
)


DEST_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.@:%+\[\]-]*")


SSH_OPTION_RE = re.compile(r"[A-Za-z][A-Za-z0-9]*[= ]\S.*")


ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass
class Host:
    """One remote host, from its ``[hosts.NAME]`` table (or a bare ``--host`` destination)."""

    name: str
    destination: str
    max_parallel: int = 4
    workdir: str | None = None
    claude: str = "claude"
    python: str = "python3"
    base_dir: str = "~/.orch-remote"
    ssh_config: str | None = None
    ssh_options: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    forward_env: list[str] = field(default_factory=list)
    #: A clone of the project on the host: ``--worktree`` agents get their worktree made there.
    repo: str | None = None

    @classmethod
    def from_table(cls, name: str, table: dict[str, Any]) -> Host:
        """Validate a config table; a typo fails loudly rather than being ignored."""
        where = f"[hosts.{name}]"
        if not isinstance(table, dict):
            raise OrchError(f"{where} must be a table")
        unknown = sorted(set(table) - HOST_KEYS)
        if unknown:
            known = ", ".join(sorted(HOST_KEYS))
            raise OrchError(f"{where}: unknown key(s) {', '.join(unknown)}; known: {known}")
        host = cls(name=name, destination=str(table.get("ssh", name)))
        for key in ("workdir", "claude", "python", "base_dir", "ssh_config", "repo"):
            if key in table:
                if not isinstance(table[key], str) or not table[key]:
                    raise OrchError(f"{where}: {key} must be a non-empty string")
                setattr(host, key, table[key])
        if "max_parallel" in table:
            mp = table["max_parallel"]
            if not isinstance(mp, int) or isinstance(mp, bool) or mp < 1:
                raise OrchError(f"{where}: max_parallel must be an integer of at least 1")
            host.max_parallel = mp
        opts = table.get("ssh_options", [])
        if not isinstance(opts, list) or not all(
            isinstance(o, str) and SSH_OPTION_RE.fullmatch(o) for o in opts
        ):
            raise OrchError(f'{where}: ssh_options must be a list of "Option=value" strings')
        host.ssh_options = list(opts)
        env = table.get("env", {})
        if not isinstance(env, dict) or not all(
            isinstance(v, str) and ENV_NAME_RE.fullmatch(k) for k, v in env.items()
        ):
            raise OrchError(f'{where}: env must be a table of NAME = "value" strings')
        host.env = dict(env)
        fwd = table.get("forward_env", [])
        if not isinstance(fwd, list) or not all(
            isinstance(n, str) and ENV_NAME_RE.fullmatch(n) for n in fwd
        ):
            raise OrchError(f"{where}: forward_env must be a list of variable names")
        host.forward_env = list(fwd)
        host.check_destination()
        return host

    def check_destination(self) -> None:
        # ssh would take a leading "-" for an option; spaces would split the argument.
        if not DEST_RE.fullmatch(self.destination):
            raise OrchError(f"invalid ssh destination {self.destination!r} for host {self.name!r}")


def project_id(state_dir: str) -> str:
    """A stable, readable directory name for this project on remote hosts: the project's name
    and a digest of this machine and state directory, so two orchestrators never collide."""
    import hashlib
    import socket

    path = Path(state_dir).resolve()
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", project_name(path))[:40].lstrip(".-") or "project"
    digest = hashlib.sha1(f"{socket.gethostname()}:{path}".encode()).hexdigest()[:10]
    return f"{safe}-{digest}"

"""The backend interface and the values it exchanges with the core.

A backend starts a *supervisor* (``orch_plugins.supervisor``) somewhere — a detached local
process, a tmux window, a remote host — and the supervisor runs ``claude`` and writes everything
it learns into the store. So a backend only answers what the store cannot know: is the agent's
process still alive, stop it, (for remote backends) bring its files back.
"""

from __future__ import annotations

import abc
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from orch_plugins.errors import OrchError

#: A backend's note of where its agent runs: JSON-serialisable, stored in the run's record, so any
#: later process (``orch status`` tomorrow) can find the agent again.
Handle = dict[str, Any]


def project_name(state_dir: str | Path) -> str:
    """The project's directory name, for readable names of per-project things (a tmux session,
    a directory on a remote host): the parent of ``<project>/.orchestrate``, else the state
    directory's own name (``ORCH_STATE_DIR=/x/state`` gives ``state``). Not unique: pair it
    with a digest of the resolved state directory."""
    path = Path(state_dir).resolve()
    return path.parent.name if path.name == ".orchestrate" else path.name


@dataclass
class LaunchSpec:
    """Everything a supervisor needs to run one agent, written to ``<run_dir>/spec.json``."""

    run_id: int
    name: str
    argv: list[str]
    env: dict[str, str]
    cwd: str
    run_dir: str
    state_dir: str
    prompt_path: str
    output_path: str
    log_path: str
    timeout: float | None = None
    retries: int = 0
    retry_backoff: float = 2.0
    kill_grace: float = 5.0
    #: Seconds claude may linger after its result event before its process tree is stopped.
    result_grace: float = 3.0
    resume_from: Handle | None = None
    #: Claude processes earlier runs of the resumed session may have left running, as
    #: ``{"pid", "start_time", "run_id"}``: the supervisor stops those still alive (same pid
    #: and start time) before it starts claude.
    previous_claudes: list[dict[str, Any]] = field(default_factory=list)
    #: Variables removed from the inherited environment before claude starts.
    unset_env: list[str] = field(default_factory=list)
    #: Backend-specific launch options (for example ``{"interactive": True}``).
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def spec_path(self) -> Path:
        return Path(self.run_dir) / "spec.json"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class Backend(abc.ABC):
    """Where agents run. Subclass, set ``name``, register through ``orch_register_backends``."""

    #: The name users pass to ``--backend``.
    name: ClassVar[str]
    #: One line for ``orch backends``.
    description: ClassVar[str] = ""

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        self.config = config or {}

    @abc.abstractmethod
    def launch(self, spec: LaunchSpec) -> Handle:
        """Start the supervisor for ``spec`` without waiting for it; return its handle.

        ``spec.json`` is already written. Must return quickly (the launching command and the
        orchestrator must never block on an agent).
        """

    @abc.abstractmethod
    def is_alive(self, handle: Handle) -> bool:
        """Whether the agent's supervisor still runs (false for a reused PID)."""

    @abc.abstractmethod
    def cancel(self, handle: Handle, grace: float) -> None:
        """Stop the agent's whole process tree: SIGTERM, then SIGKILL after ``grace`` seconds.

        The supervisor records ``cancelled`` itself when it can; the core records it otherwise.
        """

    def launch_many(self, specs: list[LaunchSpec]) -> list[Handle]:
        """Start several agents; one handle per spec, in order. Override when one call can
        start many (tmux batches its windows); the core calls it only for backends that do,
        and launches one by one otherwise.

        Raise only when none was started: the core then fails them all, and never retries
        them one by one (that could run an agent twice).
        """
        return [self.launch(spec) for spec in specs]

    def resume(self, spec: LaunchSpec, source: Handle) -> Handle:
        """Start a run that continues (or forks) the session of the run behind ``source``.

        ``spec.argv`` already carries ``-r SESSION`` (and ``--fork-session``). The default
        simply launches; a remote backend overrides this to go back to the host that holds the
        session.
        """
        return self.launch(spec)

    def statuses(self, handles: list[Handle]) -> list[bool]:
        """Liveness of many agents at once; override when one call can answer for all."""
        return [self.is_alive(h) for h in handles]

    def collect(self, runs: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
        """News about running agents whose supervisor cannot write the store (remote hosts).

        Called by every status read with this backend's running runs, before :meth:`statuses`.
        Returns ``{run_id: fields}``; the core records the fields, and a ``status`` among them
        that is final ends the run. Local backends return nothing: their supervisors write the
        store themselves.
        """
        return {}

    def sync(self, run: dict[str, Any]) -> None:  # noqa: B027 - optional hook
        """Bring a remote run's files (log, output) into ``run['run_dir']``; local: nothing.

        Called before ``orch output`` and ``orch logs`` read them.
        """


class BackendRegistry:
    """Collects backend classes from plugins; duplicate names fail loudly."""

    def __init__(self) -> None:
        self._classes: dict[str, type[Backend]] = {}
        self._owners: dict[str, str] = {}
        self.current_owner = "?"

    def add(self, cls: type[Backend]) -> None:
        if not (isinstance(cls, type) and issubclass(cls, Backend)):
            raise OrchError(f"plugin {self.current_owner} registered {cls!r}, not a Backend class")
        name = getattr(cls, "name", None)
        if not isinstance(name, str) or not name:
            raise OrchError(f"backend {cls.__qualname__} from {self.current_owner} has no name")
        if name in self._classes:
            raise OrchError(
                f"backend name {name!r} is registered twice: by {self._owners[name]} and by "
                f"{self.current_owner}"
            )
        self._classes[name] = cls
        self._owners[name] = self.current_owner

    def get(self, name: str) -> type[Backend] | None:
        return self._classes.get(name)

    def owner(self, name: str) -> str:
        return self._owners[name]

    def names(self) -> list[str]:
        return sorted(self._classes)

"""The backend interface and the values it exchanges with the core.

A backend starts a *supervisor* (``orch_plugins.supervisor``) somewhere — a detached local
process, a tmux window, a remote host — and the supervisor runs ``claude`` and writes everything
it learns into the store. So a backend only answers what the store cannot know: is the agent's
process still alive (:meth:`Backend.poll`), stop it, (for remote backends) what happened over
there and bring its files back (:meth:`Backend.fetch_files`). It gets what it needs to know
about the user's setup in a :class:`BackendContext`; it never reads config.toml or opens the
store itself.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple

from orch_plugins.errors import OrchError
from orch_plugins.model import Handle, Run

if TYPE_CHECKING:
    from orch_plugins.config import Config

__all__ = [
    "Backend",
    "BackendContext",
    "BackendRegistry",
    "Handle",
    "LaunchSpec",
    "RunUpdate",
    "project_name",
]


@dataclass(frozen=True)
class BackendContext:
    """What the core hands a backend when it makes one, instead of the backend reading
    config.toml or opening the store itself.

    ``state_dir``: the orch state directory of the project (the store lives there; a backend
    may keep files of its own beside it, never touch the store). ``config``: the backend's own
    ``[backends.NAME]`` table (``{}`` when absent). ``hosts``: the ``[hosts.*]`` tables, by
    name, in file order, as written (a backend that runs agents elsewhere validates them).
    """

    state_dir: Path
    config: Mapping[str, Any] = field(default_factory=dict)
    hosts: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, name: str, config: Config, state_dir: str | Path) -> BackendContext:
        """The context of backend ``name`` under the user's ``config``."""
        return cls(Path(state_dir), dict(config.backends.get(name) or {}), dict(config.hosts))


@dataclass
class RunUpdate:
    """What :meth:`Backend.poll` learnt about one running run.

    ``alive``: False only when the backend knows the agent's supervisor is gone; the core then
    records the run ``lost`` unless it ended properly (``fields`` or the store say so). When
    the backend cannot tell (a host out of reach), True. ``fields``: store fields to record
    (progress such as ``num_turns``, an ``error`` note, a new ``handle`` as the :data:`Handle`
    itself); a ``status`` among them that is final ends the run with the other fields.
    """

    alive: bool = True
    fields: Mapping[str, object] = field(default_factory=dict)


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
    #: The Claude Code session this run resumes or forks (``argv`` has ``-r`` with it); the
    #: supervisor puts its transcript where claude looks before claude starts (see
    #: :attr:`resume_transcript`). None: a new session.
    resume_session: str | None = None
    #: A copy of that session's transcript (gzip, or plain JSON lines), absolute or relative
    #: to ``run_dir``: the ``transcript.jsonl.gz`` the newest run of the session kept. The
    #: supervisor puts it (or, when larger, a transcript this machine already holds) at
    #: ``~/.claude/projects/<cwd key>/<session>.jsonl``. A backend whose agents run elsewhere
    #: ships this file with the run and rewrites the field to where it put it (ssh: into the
    #: remote run directory, as ``transcript.jsonl.gz``). None: only what the machine has.
    resume_transcript: str | None = None
    #: At the run's end the supervisor keeps a gzip copy of the session's transcript as
    #: ``run_dir/transcript.jsonl.gz`` (config ``keep_transcripts``); a remote backend brings
    #: it home with the run's other files.
    keep_transcript: bool = True
    #: Claude processes earlier runs of the resumed session may have left running, as
    #: ``{"pid", "start_time", "run_id"}``: the supervisor stops those still alive (same pid
    #: and start time) before it starts claude.
    previous_claudes: list[dict[str, int | None]] = field(default_factory=list)
    #: Variables removed from the inherited environment before claude starts.
    unset_env: list[str] = field(default_factory=list)
    #: Backend-specific launch options (for example ``{"interactive": True}``).
    options: dict[str, OptionValue] = field(default_factory=dict)
    #: Where admission decided the run goes, for a backend with places (:meth:`Backend.places`);
    #: set on the spec handed to ``launch``/``resume``, never written to ``spec.json``.
    place: str | None = None
    #: Leave what the agent started running when the run ends (claude itself is still stopped
    #: on cancel and timeout).
    keep_children: bool = False
    #: ``"auto"``: a cgroup for the run where the machine allows one, plus the process tree
    #: and the environment marker; ``"tree"``: no cgroup.
    containment: str = "auto"
    #: claude's argv for a retry that continues the session: ``argv`` without its own
    #: ``--resume``/``--fork-session``; the supervisor appends ``--resume SESSION_ID``.
    retry_argv: list[str] | None = None
    #: The agent's git worktree (``--worktree``), for the supervisor: ``path``, ``branch``,
    #: ``base`` (a commit; a revision when ``create``), ``base_branch``, ``repo``, ``copy``
    #: (patterns), ``task_line`` (for the commit message), ``create`` (make it before claude
    #: starts: a backend with :attr:`Backend.makes_worktrees` fills ``repo`` and ``path``).
    #: None: none.
    worktree: dict[str, Any] | None = None
    #: The watchdog: seconds without a stream event from claude before the run is stopped
    #: (whole process tree) and ends ``stalled``; None: no watchdog.
    idle_timeout: float | None = None
    #: claude reads user turns as stream-json lines on stdin (``--input-format stream-json``
    #: in both argvs): the supervisor writes the prompt as the first and keeps stdin open
    #: for ``orch send``. False: the prompt file is claude's stdin.
    input_turns: bool = False

    @property
    def spec_path(self) -> Path:
        return Path(self.run_dir) / "spec.json"

    def to_json(self) -> dict[str, Any]:
        """What ``spec.json`` holds (the supervisor's input): every field but :attr:`place`."""
        data = asdict(self)
        del data["place"]
        return data


#: The types a launch option can have, and its values once checked (:meth:`LaunchOption.convert`).
OptionType = type[str] | type[int] | type[float] | type[bool]
OptionValue = str | int | float | bool
#: Words ``-o KEY=VALUE`` accepts for a ``bool`` launch option.
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


@dataclass(frozen=True)
class LaunchOption:
    """A launch option a backend declares: a key of :attr:`LaunchSpec.options`.

    Users give it as ``orch launch -o KEY=VALUE`` (any backend), or as ``flag`` when the
    backend declares one (``--host HOST``): ``orch launch`` and ``orch parallel`` then show
    that flag with ``help`` and ``metavar``. ``type`` is ``str``, ``int``, ``float`` or ``bool``
    (a ``bool`` flag takes no value). ``selects_backend``: giving the flag picks this backend
    when ``--backend`` names none (``--host`` implies ``--backend ssh``).
    """

    key: str
    help: str
    type: OptionType = str
    flag: str | None = None
    metavar: str | None = None
    selects_backend: bool = False

    def convert(self, value: object, backend: str) -> OptionValue:
        """``value`` as this option's type (text from ``-o`` is converted); ``OrchError``
        naming the option when it does not fit."""
        if self.type is bool:
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in _TRUE or text in _FALSE:
                return text in _TRUE
            raise OrchError(
                f"launch option {self.key!r} of backend {backend!r} is true or false, not {value!r}"
            )
        if isinstance(value, (str, int, float)) and type(value) is self.type:
            return value
        convert: Callable[[str], str | int | float] = self.type
        try:
            return convert(str(value))
        except ValueError:
            raise OrchError(
                f"launch option {self.key!r} of backend {backend!r} must be "
                f"{self.type.__name__}, not {value!r}"
            ) from None


class DoctorCheck(NamedTuple):
    """One line of ``orch doctor``: where (``local`` or a host name), what was checked, ok
    (``None`` is a warning, which does not fail the doctor) and what was found or what to do."""

    where: str
    what: str
    ok: bool | None
    detail: str


def log_event(path: str, event: Mapping[str, object]) -> None:
    """Append ``event`` as one JSON line to the event log at ``path`` (best effort: a log
    that cannot be written loses the line, never the message)."""
    import contextlib
    import json

    line = json.dumps(event, ensure_ascii=False).encode("utf-8") + b"\n"
    with contextlib.suppress(OSError), open(path, "ab") as log:
        log.write(line)


class Backend(abc.ABC):
    """Where agents run. Subclass, set ``name``, register through ``orch_register_backends``."""

    #: The name users pass to ``--backend``.
    name: ClassVar[str]
    #: One line for ``orch backends``.
    description: ClassVar[str] = ""
    #: The launch options this backend takes (see :class:`LaunchOption`); any other key in
    #: ``LaunchSpec.options`` is refused before the run is recorded.
    options: ClassVar[tuple[LaunchOption, ...]] = ()
    #: What one of its places is called in notes (``waiting: every host is busy``).
    place_kind: ClassVar[str] = "place"
    #: True when agents run on another machine: a ``--worktree`` is then made there, by the
    #: supervisor, in the clone the backend names (it fills ``spec.worktree["repo"]`` and
    #: ``["path"]``), and :meth:`fetch_branch` / :meth:`remove_worktree` reach it. False: the
    #: core makes worktrees in the local checkout before the run is recorded.
    makes_worktrees: ClassVar[bool] = False

    def __init__(self, context: BackendContext) -> None:
        self.context = context
        #: The backend's ``[backends.NAME]`` table (``context.config``).
        self.config = context.config

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

    def poll(self, runs: Sequence[Run]) -> dict[int, RunUpdate]:
        """What this backend knows about its running ``runs`` (store records, each with its
        handle decoded): ``{run_id: RunUpdate}``, one call for all of them. Called by every
        status read and ``orch wait`` poll; it answers from this call alone (nothing carried
        over from an earlier one). A run left out of the answer is taken as still running,
        nothing new.

        The default asks :meth:`is_alive` for each. Override when one call can answer for all
        (one ssh round trip per host), or when the supervisors cannot write the store
        themselves (remote hosts): then return their progress and endings as ``fields``.
        """
        out = {}
        for run in runs:
            handle = run["handle"]
            if handle is not None:
                out[run["run_id"]] = RunUpdate(alive=self.is_alive(handle))
        return out

    def places(self, spec: LaunchSpec) -> dict[str, int] | None:
        """Where this run may go, and how many agents each place holds at once:
        ``{place: limit}``, in the order to prefer on a tie. Admission counts what runs in
        each place (:meth:`place_of`), picks one with room and sets ``spec.place`` before
        :meth:`launch`/:meth:`resume`; when none has room the run waits (deferred). Raise
        ``OrchError`` when the run can go nowhere (it fails with the message). Called in the
        claiming transaction: answer from the context and the spec, without network calls.

        None (the default): no places; only the global ``max_parallel`` applies.
        """
        return None

    def place_of(self, handle: Handle) -> str | None:
        """The place a running agent holds, from the handle :meth:`launch` returned (for a
        backend with :meth:`places`)."""
        return None

    def fetch_files(self, run: Run) -> None:  # noqa: B027 - optional hook
        """Bring a remote run's files (log, output) into ``run['run_dir']``; local: nothing.

        Called before ``orch output`` and ``orch logs`` read them.
        """

    def fetch_branch(self, run: Run, repo: str) -> None:  # noqa: B027 - optional hook
        """Bring the run's branch (``run['branch']``) from where its worktree is into the local
        repository ``repo``, as ``refs/heads/BRANCH``, before ``orch diff``/``orch merge``
        read it (a backend with :attr:`makes_worktrees`); local: nothing. ``OrchError`` when
        it cannot."""

    def remove_worktree(self, run: Run, *, force: bool) -> None:
        """Remove the run's worktree and branch where they are (``orch discard``, ``orch
        clear``; a backend with :attr:`makes_worktrees`). The core has checked that nothing
        unmerged is lost unless ``force``."""
        raise OrchError(f"backend {self.name!r} cannot remove worktrees it made")

    def send(self, run: Run, text: str, event: Mapping[str, object]) -> None:
        """Deliver ``text`` to the running agent of ``run`` as its next user turn (``orch
        send``; the core has checked the run is live and records the message), then add
        ``event`` (the message as a JSON object: ``type`` ``orch``, ``subtype`` ``message``,
        ``from``, ``at``, ``text``) to the agent's event log where that log is written, so
        ``orch logs`` shows it in its place.

        The default serves a print-mode agent whose run directory is on this machine: the text
        goes into the run's inbox, which its supervisor drains when the agent's turn ends
        (:func:`orch_plugins.supervisor.post_message`). Raise ``OrchError`` with a one-line
        reason when the agent cannot take it (an interactive agent this backend cannot type
        into)."""
        if (run["handle"] or {}).get("interactive"):
            raise OrchError(f"backend {self.name!r} cannot type into an interactive agent")
        from orch_plugins.supervisor import post_message

        why = post_message(run["run_dir"], text)
        if why:
            raise OrchError(f"agent {run['name']!r} {why}")
        log_event(run["log_path"], event)

    @classmethod
    def check_options(cls, options: Mapping[str, object]) -> dict[str, OptionValue]:
        """The launch options of a new run, checked against :attr:`options` and converted to
        their declared types; ``OrchError`` (one line, nothing recorded) for an unknown key or
        a value that does not fit. Override to check more (say, values that exclude each
        other), calling this first."""
        declared = {o.key: o for o in cls.options}
        out: dict[str, OptionValue] = {}
        for key, value in options.items():
            option = declared.get(key)
            if option is None:
                takes = ", ".join(sorted(declared)) or "none"
                raise OrchError(
                    f"backend {cls.name!r} has no launch option {key!r} (it takes: {takes})"
                )
            out[key] = option.convert(value, cls.name)
        return out

    def doctor(self, hosts: Sequence[str]) -> list[DoctorCheck]:
        """What ``orch doctor`` should also check for this backend: its own tools, and each of
        ``hosts`` (the names given with ``--host`` or ``--all-hosts``) that it can reach.
        Default: nothing. A check that cannot run is a failed check, not an exception."""
        return []


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

    def __getitem__(self, name: str) -> type[Backend]:
        return self._classes[name]

    def owner(self, name: str) -> str:
        return self._owners[name]

    def names(self) -> list[str]:
        return sorted(self._classes)

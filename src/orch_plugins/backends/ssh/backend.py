"""The ssh backend: agents on remote hosts, reached with the user's own OpenSSH client.

A remote agent is a detached supervisor in its own session on the host, writing
``state.json``, ``events.jsonl`` and ``output.md`` in its run directory
(``BASE/<project-id>/runs/<run>-<name>-<token>``). It outlives the connection and the
orchestrator. Status for all agents of a host is one ssh call (:meth:`SshBackend.poll`), which
also brings the files of ended runs home; :meth:`SshBackend.fetch_files` brings a running one's
log. How a call travels: :mod:`orch_plugins.backends.ssh.transport`.

Placement is admission's (:mod:`orch_plugins.admission`): this backend only says where a run
may go (:meth:`SshBackend.places`: the named host, the host that holds a resumed session, else
every ``[hosts.*]`` table, each with its ``max_parallel``) and which host a running agent holds
(:meth:`SshBackend.place_of`); admission picks the host and hands it over as ``spec.place``.
See docs/backends.md, "Remote hosts over ssh".
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, cast

from orch_plugins.admission import WAITING
from orch_plugins.backend import (
    Backend,
    BackendContext,
    DoctorCheck,
    Handle,
    LaunchOption,
    LaunchSpec,
    RunUpdate,
)
from orch_plugins.backends.ssh.hosts import HOST_KEYS, Host, project_id
from orch_plugins.backends.ssh.transport import SshError, SshTransport
from orch_plugins.backends.subprocess import LocalHandle, run_mark
from orch_plugins.errors import OrchError
from orch_plugins.model import Run
from orch_plugins.store import FINAL, atomic_write
from orch_plugins.supervisor import TRANSCRIPT_COPY

log = logging.getLogger(__name__)

#: state.json fields recorded in the store: a remote host never chooses column names.
STATE_FIELDS = (
    "session_id",
    "attempt",
    "num_turns",
    "tool_calls",
    "last_activity",
    "exit_code",
    "cost_usd",
    "duration_ms",
    "usage",
    "error",
    "ended_at",
    "claude_pid",
    "claude_start",
    "worktree",
    "branch",
    "base",
    "base_branch",
    "changes",
    # The cost ledger's figures and the rate-limit retries seen (issue 13).
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_creation_tokens",
    "models",
    "api_retries",
)


PROGRESS_FIELDS = (
    "session_id",
    "attempt",
    "num_turns",
    "tool_calls",
    "last_activity",
    "claude_pid",
    "claude_start",
    "worktree",
    "base",
    "base_branch",
)


#: Prefix of the note this backend puts in a running run's ``error`` while its host is out of
#: reach (cleared, like admission's ``waiting:`` note, when news arrives).
UNREACHABLE = "status unknown: "


#: When this process last asked each host for status, and synced each run (monotonic).
_LAST_POLL: dict[str, float] = {}


_LAST_SYNC: dict[int, float] = {}


#: Beside a local run directory: its remote files are all here, no need to ask again.
SYNCED = ".ssh-synced"
#: In a remote run directory: the transcript copy shipped with a resume or fork (not the
#: supervisor's own ``transcript.jsonl.gz``, which the run keeps at its end).
RESUME_TRANSCRIPT = "resume-transcript.jsonl.gz"


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return -1


class SshHandle(LocalHandle, total=False):
    """What the ssh backend keeps in a handle: the host's name in config and the ``ssh``
    destination it had at launch, the run's directory and working directory on the host, the
    remote supervisor's PID and start time, the host's boot id (``/proc/sys/kernel/random/
    boot_id``: a restarted host has lost the run) and the run's mark."""

    host: str
    destination: str
    remote_dir: str
    boot_id: str | None
    cwd: str


def ssh_handle(handle: Handle) -> SshHandle:
    """The ssh backend's view of a handle it wrote."""
    return cast(SshHandle, handle)


class SshBackend(Backend):
    name = "ssh"
    description = "agents on remote hosts over your OpenSSH client (--host, [hosts.*] pools)"
    place_kind = "host"
    makes_worktrees = True
    options = (
        LaunchOption(
            "host",
            "Remote host for the ssh backend (implies --backend ssh).",
            flag="--host",
            metavar="HOST",
            selects_backend=True,
        ),
    )

    def __init__(self, context: BackendContext) -> None:
        super().__init__(context)
        self._hosts: dict[str, Host] | None = None
        #: How calls reach hosts (``[backends.ssh]`` settings).
        self.transport = SshTransport(self.config)

    @property
    def poll_interval(self) -> float:
        """Within one process, ask a host at most this often (``orch wait`` loops fast)."""
        return float(self.config.get("poll_interval", 1.0))

    def host_defaults(self) -> dict[str, Any]:
        """Host keys set in ``[backends.ssh]``: defaults for every host (``ssh_config`` once)."""
        return {k: v for k, v in self.config.items() if k in HOST_KEYS and k != "ssh"}

    def hosts(self) -> dict[str, Host]:
        """``[hosts.*]`` from config.toml, validated, in file order."""
        if self._hosts is None:
            defaults = self.host_defaults()
            self._hosts = {
                name: Host.from_table(
                    name, {**defaults, **table} if isinstance(table, dict) else table
                )
                for name, table in self.context.hosts.items()
            }
        return self._hosts

    def host(self, name: str, destination: str | None = None) -> Host:
        """A configured host, or an ssh destination used as is (``--host myserver`` works with
        nothing but ``~/.ssh/config``)."""
        configured = self.hosts().get(name)
        if configured is not None:
            return configured
        return Host.from_table(name, {**self.host_defaults(), "ssh": destination or name})

    def places(self, spec: LaunchSpec) -> dict[str, int]:
        """The hosts this run may go to, each with its ``max_parallel``: the ``host`` option,
        else every ``[hosts.*]`` table in file order. A resume or fork that takes its
        session's transcript along (``spec.resume_transcript``) may go anywhere, its source's
        host first (preferred on a tie: the files the agent made are there); one without it,
        or one that continues in its worktree, only to the host that holds them (its
        source's). ``OrchError`` when there is none, or a pinned run is asked elsewhere."""
        wanted = spec.options.get("host")
        pinned = _pinned_to(spec)
        if pinned is not None:
            host, why = pinned
            if not host:
                raise OrchError(f"{why}, and that session was not recorded on a remote host")
            if wanted and wanted != host:
                raise OrchError(f"{why}, so it continues on host {host!r}, not {wanted!r}")
            wanted = host
        if wanted:
            chosen = self.host(str(wanted))
            return {chosen.name: chosen.max_parallel}
        hosts = self.hosts()
        if not hosts:
            raise OrchError(
                "no remote hosts: pass --host HOST, or add [hosts.NAME] tables to "
                'config.toml (see the README\'s "Remote hosts over ssh")'
            )
        first = ssh_handle(spec.resume_from or {}).get("host")
        ordered = sorted(hosts.values(), key=lambda h: h.name != first)  # stable: file order
        return {h.name: h.max_parallel for h in ordered}

    def place_of(self, handle: Handle) -> str | None:
        return str(handle["host"]) if handle.get("host") else None

    def launch(self, spec: LaunchSpec) -> Handle:
        """Start on the host admission chose (``spec.place``; else the first it may use)."""
        return self._start(spec, self.host(spec.place or next(iter(self.places(spec)))), None)

    def resume(self, spec: LaunchSpec, source: Handle) -> Handle:
        """Start where admission placed the run: on its source's host in the source's
        directory; on another host (its transcript travels with it) in that host's
        ``workdir``, as a new launch."""
        host = spec.place or next(iter(self.places(spec)))
        same = host == ssh_handle(source).get("host")
        return self._start(spec, self.host(host), ssh_handle(source).get("cwd") if same else None)

    def is_alive(self, handle: Handle) -> bool:
        """One status call to the agent's host. An unreachable host counts as alive: we cannot
        tell, and must not call its agents lost because a network is down."""
        if not handle.get("remote_dir"):
            return False
        name = str(handle["host"])
        result = self._status_calls({name: [{"run_id": 0, "handle": handle}]}, files=False)[name]
        if isinstance(result, SshError):
            return True
        entry = result[0]["runs"].get("0", {})
        return bool(entry.get("alive")) or _final(entry)

    def poll(self, runs: Sequence[Run]) -> dict[int, RunUpdate]:
        """One status call per host for all its running agents: liveness, progress, endings,
        and the files of those that ended. An unreachable host's agents count as alive, with a
        note in their ``error``. A host asked less than ``poll_interval`` ago by this process
        is not asked again (``orch wait`` polls fast): its agents are left out, nothing new."""
        updates: dict[int, RunUpdate] = {}
        jobs: dict[str, list[dict[str, Any]]] = {}
        for run in runs:
            handle = run["handle"]
            if not handle:
                continue
            if handle.get("remote_dir"):
                jobs.setdefault(str(handle["host"]), []).append({"run": run, "handle": handle})
            else:
                updates[run["run_id"]] = RunUpdate(alive=False)  # never started anywhere
        now = time.monotonic()
        for name in list(jobs):
            if now - _LAST_POLL.get(name, -1e9) < self.poll_interval:
                del jobs[name]
            else:
                _LAST_POLL[name] = now
        for name, result in self._status_calls(jobs, files=False).items():
            for job in jobs[name]:
                run = job["run"]
                if isinstance(result, SshError):
                    note = f"{UNREACHABLE}{result}"
                    fields = {"error": note} if run.get("error") != note else {}
                    updates[run["run_id"]] = RunUpdate(alive=True, fields=fields)
                    continue
                reply, blobs = result
                entry = reply["runs"].get(str(run["run_id"]), {})
                self._store_files(run, job, entry, blobs)
                fields = self._news(run, entry) or {}
                if fields.get("status") in FINAL:  # its files came home in this answer
                    (Path(run["run_dir"]) / SYNCED).touch()
                alive = bool(entry.get("alive")) or _final(entry)
                updates[run["run_id"]] = RunUpdate(alive=alive, fields=fields)
        return updates

    def fetch_files(self, run: Run) -> None:
        """Bring the run's log (from where the local copy ends) and output home."""
        handle = run["handle"]
        if not handle or not handle.get("remote_dir"):
            return
        marker = Path(run["run_dir"]) / SYNCED
        if run["status"] in FINAL and marker.exists():
            return
        now = time.monotonic()
        if run["status"] not in FINAL:  # orch logs -f asks every 0.2 s
            if now - _LAST_SYNC.get(run["run_id"], -1e9) < self.poll_interval:
                return
            _LAST_SYNC[run["run_id"]] = now
        name = str(handle["host"])
        job = {"run": run, "handle": handle}
        result = self._status_calls({name: [job]}, files=True)[name]
        if isinstance(result, SshError):
            log.warning("cannot fetch %s's files: %s", run["name"], result)
            return
        reply, blobs = result
        self._store_files(run, job, reply["runs"].get(str(run["run_id"]), {}), blobs)
        if run["status"] in FINAL:
            marker.touch()

    def send(self, run: Run, text: str, event: Mapping[str, object]) -> None:
        """Into the run's inbox on its host (see :meth:`Backend.send`): the text and the log
        event travel as files of one request, never on a command line. Not retried: a broken
        connection may have delivered it, and a message must not arrive twice."""
        handle = run["handle"] or {}
        if handle.get("interactive"):
            raise OrchError(f"backend {self.name!r} cannot type into an interactive agent")
        if not handle.get("remote_dir"):
            raise OrchError(f"agent {run['name']!r} has not started on a host")
        host = self.host(str(handle["host"]), ssh_handle(handle).get("destination"))
        message = text.encode("utf-8")
        note = json.dumps(dict(event), ensure_ascii=False).encode("utf-8")
        request = {
            "cmd": "send",
            "run": _remote_run(handle),
            "files": [["message.txt", len(message)], ["event.json", len(note)]],
        }
        try:
            self.transport.call(host, request, message + note, retry=False)
        except SshError as exc:
            if exc.kind == "refused":
                raise OrchError(f"agent {run['name']!r} {exc.detail}") from None
            raise OrchError(f"cannot send to {run['name']!r} on {host.name}: {exc}") from None

    def cancel(self, handle: Handle, grace: float) -> None:
        if not handle.get("remote_dir"):
            return  # never started anywhere
        host = self.host(str(handle["host"]), ssh_handle(handle).get("destination"))
        run = _remote_run(handle)
        run.update({k: handle[k] for k in ("run_id", "token", "keep_children") if k in handle})
        request = {"cmd": "cancel", "run": run, "grace": grace}
        try:
            self.transport.call(host, request, timeout=grace + 60)
        except SshError as exc:
            log.warning(
                "could not stop the agent in %s: %s (it may still run there)",
                handle["remote_dir"],
                exc,
            )

    def _git_ssh(self, run: Run) -> tuple[Host, dict[str, str]]:
        """The run's host, and the environment that makes git reach it with the same ssh
        settings as every other call (config file, options, the shared connection): each
        argument quoted, since git hands ``GIT_SSH_COMMAND`` to a shell."""
        import shlex

        handle = run["handle"] or {}
        if not handle.get("host"):
            raise OrchError(f"agent {run['name']!r} has not started on a host")
        host = self.host(str(handle["host"]), ssh_handle(handle).get("destination"))
        argv = self.transport.ssh_argv(host, "true")[:-4]  # without -T -- DEST COMMAND
        return host, {"GIT_SSH_COMMAND": shlex.join(argv), "GIT_SSH_VARIANT": "ssh"}

    def fetch_branch(self, run: Run, repo: str) -> None:
        """``git fetch`` the run's branch from its worktree on the host into ``repo`` (as
        ``refs/heads/BRANCH``: the host's branch is the agent's work, the local one a copy)."""
        from orch_plugins.supervisor import GitError, git

        host, env = self._git_ssh(run)
        branch = str(run["branch"])
        url = f"ssh://{host.destination}{run['worktree']}"
        refspec = f"+refs/heads/{branch}:refs/heads/{branch}"
        try:
            git(repo, "fetch", "--quiet", "--no-tags", "--", url, refspec, env=env, timeout=600)
        except GitError as exc:
            raise OrchError(f"cannot fetch {branch} from host {host.name}: {exc}") from None

    def remove_worktree(self, run: Run, *, force: bool) -> None:
        """Remove the worktree and branch on the host (``git worktree remove``, ``git branch
        -D``, run there by the remote helper)."""
        handle = run["handle"] or {}
        host = self.host(str(handle.get("host")), ssh_handle(handle).get("destination"))
        request = {
            "cmd": "worktree_remove",
            "path": run["worktree"],
            "repo": host.repo,
            "branch": run["branch"],
            "force": force,
        }
        try:
            self.transport.call(host, request)
        except SshError as exc:
            raise OrchError(
                f"cannot remove {run['name']}'s worktree on {host.name}: {exc}"
            ) from None

    def doctor(self, hosts: Sequence[str]) -> list[DoctorCheck]:
        """The OpenSSH client, when any host is configured; then each of ``hosts`` (see
        :func:`check_host`)."""
        from orch_plugins.backends.ssh.doctor import check_host

        checks = []
        if self.context.hosts:
            ssh = shutil.which("ssh")
            detail = ssh or "the OpenSSH client 'ssh' is not installed"
            checks.append(DoctorCheck("local", "ssh", bool(ssh), detail))
        for name in hosts:
            try:
                results = check_host(name, self)
            except OrchError as exc:
                results = [("config", False, str(exc))]
            checks.extend(DoctorCheck(name, what, ok, detail) for what, ok, detail in results)
        return checks

    def _start(self, spec: LaunchSpec, host: Host, cwd: str | None) -> Handle:
        """Ship spec, prompt and supervisor in one call; the host starts it detached."""
        import secrets

        project = project_id(spec.state_dir)
        base = host.base_dir.rstrip("/") or "/"
        env = {k: v for k, v in spec.env.items() if k != "ORCH_STATE_DIR"}  # a local path
        env.update(host.env)
        env.update({k: os.environ[k] for k in host.forward_env if k in os.environ})
        data = spec.to_json()
        data["env"] = env
        data["options"] = {**spec.options, "report": "file", "host": host.name}
        workdir = cwd or host.workdir
        if spec.worktree and spec.worktree.get("create"):
            # Made by the supervisor on the host, in the clone the host's table names.
            if not host.repo:
                raise OrchError(
                    f"host {host.name!r} has no clone for worktrees: set repo = "
                    f'"/path/to/clone" in [hosts.{host.name}], or launch without --worktree'
                )
            stem = spec.worktree["branch"].removeprefix("orch/")
            data["worktree"] = {
                **spec.worktree,
                "repo": host.repo,
                "path": f"{base}/{project}/worktrees/{stem}",
            }
            workdir = host.repo
        files = [("prompt.txt", Path(spec.prompt_path).read_bytes())]
        if spec.resume_transcript:
            # The session's transcript travels with the run; the supervisor on the host puts
            # it where claude looks. Unreadable here: the host says so (or uses its own).
            data["resume_transcript"] = RESUME_TRANSCRIPT
            try:
                files.append((RESUME_TRANSCRIPT, Path(spec.resume_transcript).read_bytes()))
            except OSError as exc:
                log.warning("%s: cannot ship the transcript copy: %s", spec.name, exc)
        spec_bytes = json.dumps(data).encode()
        files.insert(0, ("spec.json", spec_bytes))
        request = {
            "cmd": "launch",
            "run_dir": f"{base}/{project}/runs/{spec.run_id}-{spec.name}-{secrets.token_hex(3)}",
            "claude": host.claude,
            "workdir": workdir,
            "default_workdir": f"{base}/{project}/work",
            "files": [[name, len(blob)] for name, blob in files],
        }
        reply, _ = self.transport.call(host, request, b"".join(blob for _, blob in files))
        return {
            "host": host.name,
            "destination": host.destination,
            "remote_dir": reply["remote_dir"],
            "pid": reply["pid"],
            "start_time": reply["start_time"],
            "boot_id": reply["boot_id"],
            "cwd": reply["cwd"],
            **run_mark(spec),
        }

    def _status_calls(
        self, jobs: dict[str, list[dict[str, Any]]], *, files: bool
    ) -> dict[str, tuple[dict[str, Any], list[bytes]] | SshError]:
        """One status call per host, hosts in parallel; a failing host is reported, not raised."""
        results: dict[str, tuple[dict[str, Any], list[bytes]] | SshError] = {}

        def ask(name: str) -> None:
            entries = []
            for job in jobs[name]:
                run, handle = job.get("run"), job["handle"]
                entry = {"id": run["run_id"] if run else job["run_id"], **_remote_run(handle)}
                if run:
                    job["log_size"] = max(0, _size(run["log_path"]))
                    entry.update(
                        log_size=job["log_size"],
                        out_size=_size(run["output_path"]),
                        transcript_size=_size(str(Path(run["run_dir"], TRANSCRIPT_COPY))),
                        files=files,
                    )
                    if files:  # orch logs: the text being written too
                        head, job["live_size"] = _live_state(Path(run["run_dir"]) / "live.txt")
                        entry.update(live_head=head, live_size=job["live_size"])
                entries.append(entry)
            try:
                first = jobs[name][0]["handle"]
                host = self.host(name, first.get("destination"))
                results[name] = self.transport.call(host, {"cmd": "status", "runs": entries})
            except SshError as exc:
                log.warning("%s", exc)
                results[name] = exc
            except OrchError as exc:  # a host removed from the config, or made invalid
                results[name] = SshError(Host(name, name), "ssh", str(exc))

        if len(jobs) == 1:
            ask(next(iter(jobs)))
        else:
            threads = [threading.Thread(target=ask, args=(name,)) for name in jobs]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        return results

    @staticmethod
    def _store_files(
        run: Run, job: dict[str, Any], entry: dict[str, Any], blobs: list[bytes]
    ) -> None:
        """Write what came home. The remote log is append-only, so bytes are written at their
        own offset: two processes syncing at once write the same bytes, never twice."""
        if "log" in entry:
            offset = 0 if entry.get("log_reset") else int(job.get("log_size", 0))
            fd = os.open(run["log_path"], os.O_WRONLY | os.O_CREAT, 0o644)
            try:
                if entry.get("log_reset"):
                    os.ftruncate(fd, 0)
                os.pwrite(fd, blobs[entry["log"]], offset)
            finally:
                os.close(fd)
        if "output" in entry:
            atomic_write(Path(run["output_path"]), blobs[entry["output"]])
        if "transcript" in entry:  # the copy the run kept at its end (see supervisor)
            try:
                atomic_write(Path(run["run_dir"], TRANSCRIPT_COPY), blobs[entry["transcript"]])
            except OSError as exc:  # a full disk: the run's record matters more
                log.warning("cannot keep %s's transcript copy: %s", run["name"], exc)
        live = Path(run["run_dir"]) / "live.txt"
        if entry.get("live_gone"):
            with contextlib.suppress(OSError):
                live.unlink()
        elif "live" in entry:
            if entry.get("live_reset"):  # another message, or none here yet
                atomic_write(live, blobs[entry["live"]])
            else:
                fd = os.open(live, os.O_WRONLY | os.O_CREAT, 0o644)
                try:
                    os.pwrite(fd, blobs[entry["live"]], int(job.get("live_size", 0)))
                finally:
                    os.close(fd)

    @staticmethod
    def _news(run: Run, entry: dict[str, Any]) -> dict[str, Any] | None:
        state: dict[str, Any] = entry["state"] if isinstance(entry.get("state"), dict) else {}
        if state.get("status") in FINAL:
            fields = {k: state[k] for k in STATE_FIELDS if k in state}
            fields["status"] = state["status"]
            return fields
        if not entry.get("alive"):
            tail = (entry.get("supervisor_log") or "").strip().splitlines()
            if tail:
                log.warning(
                    "remote supervisor of %s ended without a result: %s", run["name"], tail[-1]
                )
            # The core sees it dead and records it lost; which claude it ran is kept, so a
            # resume there can stop that claude if it lives on.
            claude = {
                k: state[k]
                for k in ("claude_pid", "claude_start")
                if state.get(k) is not None and state[k] != run.get(k)
            }
            return claude or None
        fields = {k: state[k] for k in PROGRESS_FIELDS if k in state and state[k] != run.get(k)}
        if run.get("error") and str(run["error"]).startswith((WAITING, UNREACHABLE)):
            fields["error"] = None
        return fields or None


def _pinned_to(spec: LaunchSpec) -> tuple[str | None, str] | None:
    """For a resume or fork that must go back to its source's host: (that host or None when
    the source ran on no host, why); None when it may go anywhere. It must when it continues
    in the source's worktree (it lives there) or takes no transcript copy along (the session's
    transcript is then only where it ran)."""
    if spec.resume_from is None:
        return None
    host = ssh_handle(spec.resume_from).get("host")
    if spec.worktree and not spec.worktree.get("create"):
        return host, "the agent works in its worktree on its host"
    if not spec.resume_transcript:
        return host, "no copy of the session's transcript was kept (its newest run kept none)"
    return None


def _live_state(path: Path) -> tuple[str | None, int]:
    """The message id (first line) and size of a local copy of ``live.txt``."""
    try:
        with open(path, "rb") as fh:
            head = fh.readline()
            size = os.fstat(fh.fileno()).st_size
    except OSError:
        return None, 0
    return (head.decode("utf-8", "replace").strip(), size) if head.endswith(b"\n") else (None, 0)


def _remote_run(handle: Handle) -> dict[str, Any]:
    return {
        "dir": handle["remote_dir"],
        "pid": handle.get("pid"),
        "start_time": handle.get("start_time"),
        "boot_id": handle.get("boot_id"),
    }


def _final(entry: dict[str, Any]) -> bool:
    state = entry.get("state")
    return isinstance(state, dict) and state.get("status") in FINAL

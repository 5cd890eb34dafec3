"""Processes: identity, the processes that belong to an agent, and stopping exactly those.

The one implementation, used by the supervisor, every backend and the remote helper. It imports
only os, contextlib, signal and time (ctypes when the supervisor becomes a subreaper), because
the ssh backend ships this file beside ``supervisor.py`` to hosts that have no orch-plugins.

Identity. A process is ``(pid, start_time)``: the start time (clock ticks since boot, field 22
of ``/proc/PID/stat``) tells a process from a later one that got the same pid. Every signal
goes through :func:`send`, which pins the process with a pidfd (``os.pidfd_open``, Linux 5.3,
Python 3.9) and checks the start time once pinned, so a pid that died and was reused by another
program is never signalled; without pidfds it compares the start time immediately before
``kill`` (a window of microseconds instead of the whole grace period).

What belongs to an agent (:func:`agent_processes`), the union of:

* the process tree below a root (the supervisor). The supervisor is a *child subreaper*
  (:func:`become_subreaper`), so a process that leaves its parent (``setsid cmd &``, a double
  fork, a daemon) is re-parented to the supervisor instead of to init and stays in the tree;
* processes whose environment carries the run's marker, ``ORCH_RUN_ID=<id>`` *and*
  ``ORCH_RUN_TOKEN=<random per run>`` (another project's run with the same id has another
  token): this finds them after the supervisor itself is gone (killed with -9);
* members of the run's cgroup (cgroup v2), where the supervisor could make one: membership
  that no re-parenting or cleared environment escapes, and ``cgroup.kill`` as a last, atomic
  sweep.

Processes orch itself detaches (supervisors, the admission helper, a tmux server or ssh master
started by an ``orch`` command an agent ran) are started with :func:`detached_env`: without
the agent's marker and with ``ORCH_DETACHED=1``; they and everything below them belong to no
agent's cleanup (a sub-agent has its own supervisor, its own run and its own end).
"""

from __future__ import annotations

import contextlib
import os
import signal
import time

# Not ``from typing import TYPE_CHECKING``: importing typing costs ~2.5 ms at start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from typing import Any

#: The variables that mark an agent's processes (and attach its session id to its run).
RUN_ID_VAR = "ORCH_RUN_ID"
RUN_TOKEN_VAR = "ORCH_RUN_TOKEN"
#: Every variable set for one agent only (``orch_plugins.claude.agent_env``): a process that is
#: no agent (the orchestrator, a tmux server, a supervisor) must not carry them.
AGENT_VARS = ("ORCH_AGENT", RUN_ID_VAR, RUN_TOKEN_VAR, "ORCH_FORK_OF")
#: Set on processes orch detaches on purpose: never part of an agent's cleanup.
DETACHED_VAR = "ORCH_DETACHED"
_DETACHED_ENTRY = DETACHED_VAR.encode() + b"=1"
#: Prefix of the cgroups the supervisor makes: ``orch-<run id>-<token prefix>``.
CGROUP_PREFIX = "orch-"
#: How often a termination looks for processes started since its last look (seconds).
RESCAN_INTERVAL = 0.2
#: SIGKILL sweeps after the grace period, for processes that fork while being killed.
KILL_SWEEPS = 5
#: A testing aid (the fault-injection suite, ``tests/faults``, docs/faults.md): the process that
#: reaches the step named by ``ORCH_FAULT`` SIGKILLs itself there. Read once, at import, so a
#: fault point costs one comparison with None.
FAULT = os.environ.get("ORCH_FAULT") or None


def fault(step: str) -> None:
    """Fault point ``step``: SIGKILL this process when ``ORCH_FAULT`` names it (tests only)."""
    if step == FAULT:
        os.kill(os.getpid(), signal.SIGKILL)


# -- identity -----------------------------------------------------------------------------------


def proc_stat(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name (which may hold spaces and parens):
    index 0 is the state, 1 the parent pid, 2 the process group, 3 the session, 19 the start
    time. None when there is no such process (or no procfs)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            data = fh.read().decode("ascii", "replace")
    except OSError:
        return None
    return data[data.rfind(")") + 2 :].split()


def proc_start_time(pid: int) -> int | None:
    """Start time in clock ticks since boot (field 22): a PID's identity across reuse."""
    fields = proc_stat(pid)
    return int(fields[19]) if fields else None


def pid_alive(pid: int | None, start_time: int | None) -> bool:
    """True only if PID runs, is not a zombie, and is the process that started at start_time
    (any start time when ``start_time`` is None)."""
    if not pid:
        return False
    fields = proc_stat(pid)
    if fields is None:
        if not os.path.isdir("/proc/self"):  # no procfs (macOS): best effort
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return False
            except PermissionError:
                return True
            return True
        return False
    if fields[0] in ("Z", "X"):
        return False
    return start_time is None or int(fields[19]) == int(start_time)


def _table() -> dict[int, list[str]]:
    """Every process's stat fields (see :func:`proc_stat`), by pid."""
    out: dict[int, list[str]] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return out
    for entry in entries:
        if entry.isdigit():
            fields = proc_stat(int(entry))
            if fields:
                out[int(entry)] = fields
    return out


def _environ(pid: int) -> list[bytes]:
    """The environment PID was started with, as ``NAME=VALUE`` entries ([] if unreadable)."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as fh:
            return fh.read().split(b"\0")
    except OSError:
        return []


def descendants(root: int) -> list[int]:
    """All processes below root by parent links, children before grandchildren."""
    children: dict[int, list[int]] = {}
    for pid, fields in _table().items():
        children.setdefault(int(fields[1]), []).append(pid)
    out: list[int] = []
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


# -- what belongs to an agent -------------------------------------------------------------------


def run_marker(run_id: int | str, token: str) -> list[bytes]:
    """The environment entries that mark run ``run_id``'s processes (both must be present)."""
    return [f"{RUN_ID_VAR}={run_id}".encode(), f"{RUN_TOKEN_VAR}={token}".encode()]


def detached_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for a process orch detaches (a supervisor, the admission helper, a tmux
    server, an ssh master): ``base`` (default this process's) without an agent's marker, and
    with ``ORCH_DETACHED=1``, so it is never stopped as part of the agent whose tool ran orch."""
    env = dict(os.environ if base is None else base)
    for key in AGENT_VARS:
        env.pop(key, None)
    env[DETACHED_VAR] = "1"
    return env


@contextlib.contextmanager
def detached() -> Iterator[dict[str, Any]]:
    """``subprocess.Popen`` keywords for a process orch detaches: :func:`detached_env`, and,
    when this process runs inside a run's cgroup (``orch`` called by an agent's tool), a
    ``preexec_fn`` that moves the child out to the cgroup beside it, so neither it nor what it
    starts (a tmux server's panes, an ssh master) is a member of that run::

        with procs.detached() as kw:
            subprocess.Popen(argv, ..., **kw)
    """
    join = None
    own = _own_cgroup() or ""
    mount = _cgroup2_mount()
    if mount and os.path.basename(own.rstrip("/")).startswith(CGROUP_PREFIX):
        with contextlib.suppress(OSError):
            join = CgroupJoin(os.path.dirname(os.path.normpath(mount + "/" + own.strip("/"))))
    try:
        yield {"env": detached_env(), "preexec_fn": join}
    finally:
        if join is not None:
            join.close()


def agent_processes(
    root: int | None = None,
    *,
    marker: list[bytes] | None = None,
    cgroup: str | None = None,
    group: int | None = None,
    group_marker: list[bytes] | None = None,
) -> dict[int, int]:
    """``{pid: start_time}`` of the processes that belong to an agent: the tree below ``root``,
    processes carrying every entry of ``marker`` in their environment, members of ``cgroup``
    (a cgroup v2 directory) and, for a supervisor that is gone, the members of the process
    group or session ``group`` (its pid) that carry ``group_marker`` (all when None).
    Never this process, and never a process orch detached (nor, in the tree, what is below it).
    """
    table = _table()
    me = os.getpid()
    found: dict[int, int] = {}
    detached: dict[int, bool] = {}

    def is_detached(pid: int) -> bool:
        if pid not in detached:
            detached[pid] = _DETACHED_ENTRY in _environ(pid)
        return detached[pid]

    def take(pid: int) -> None:
        fields = table.get(pid)
        if fields and pid != me and fields[0] not in ("Z", "X") and not is_detached(pid):
            found[pid] = int(fields[19])

    if root is not None:
        children: dict[int, list[int]] = {}
        for pid, fields in table.items():
            children.setdefault(int(fields[1]), []).append(pid)
        todo = [root]
        while todo:
            for child in children.get(todo.pop(), []):
                if child != me and not is_detached(child):
                    take(child)
                    todo.append(child)
    if group:
        for pid, fields in table.items():
            if group in (int(fields[2]), int(fields[3])):
                env = _environ(pid) if group_marker else []
                if not group_marker or all(entry in env for entry in group_marker):
                    take(pid)
    if cgroup:
        for pid in cgroup_pids(cgroup):
            take(pid)
    if marker:
        for pid in table:
            if pid not in found and pid != me:
                env = _environ(pid)
                if env and all(entry in env for entry in marker):
                    take(pid)
    return found


# -- signals that reach the process they mean ---------------------------------------------------


class Pinned:
    """One process, held by a pidfd where the platform has them (see :func:`pin`)."""

    __slots__ = ("fd", "pid", "start_time")

    def __init__(self, pid: int, start_time: int | None, fd: int | None) -> None:
        self.pid = pid
        self.start_time = start_time
        self.fd = fd

    def send(self, sig: int) -> bool:
        """Signal this process, never another that took its pid. False if it is gone."""
        try:
            if self.fd is not None:
                signal.pidfd_send_signal(self.fd, sig)
            elif proc_start_time(self.pid) == self.start_time:
                os.kill(self.pid, sig)
            else:
                return False
        except (ProcessLookupError, PermissionError):
            return False
        return True

    def alive(self) -> bool:
        return pid_alive(self.pid, self.start_time)

    def close(self) -> None:
        if self.fd is not None:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = None


def pin(pid: int, start_time: int | None) -> Pinned | None:
    """Hold the process ``(pid, start_time)``; None when that process is gone (the pid may now
    name another). The start time is checked *after* the pidfd is open, so the pidfd holds the
    process we meant. Without procfs (start_time None) the pid alone is taken."""
    fd = None
    if hasattr(os, "pidfd_open"):
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            return None
        except OSError:  # ENOSYS (kernel < 5.3), EPERM under some sandboxes
            fd = None
    if start_time is not None and proc_start_time(pid) != start_time:
        if fd is not None:
            os.close(fd)
        return None
    return Pinned(pid, start_time, fd)


def send(pid: int, start_time: int | None, sig: int) -> bool:
    """Send ``sig`` to the process ``(pid, start_time)`` and to no other; False if it is gone."""
    target = pin(pid, start_time)
    if target is None:
        return False
    try:
        return target.send(sig)
    finally:
        target.close()


def terminate(find: Callable[[], dict[int, int]], grace: float) -> None:
    """Stop every process ``find()`` returns (``{pid: start_time}``): SIGTERM, then SIGKILL to
    what is left after ``grace`` seconds. ``find`` is asked again while waiting, so processes
    started in the meantime are stopped too; each signal reaches the process that was found,
    never one that reused its pid."""
    held: dict[int, Pinned] = {}

    def sweep(sig: int) -> None:
        for pid, start in find().items():
            target = held.get(pid)
            if target is not None and target.start_time != start:
                target.close()
                target = None
            if target is None:
                target = pin(pid, start)
                if target is None:
                    continue
                held[pid] = target
            target.send(sig)

    try:
        sweep(signal.SIGTERM)
        deadline = time.monotonic() + grace
        next_scan = time.monotonic() + RESCAN_INTERVAL
        while time.monotonic() < deadline:
            if not any(t.alive() for t in held.values()):
                if not find():
                    return
                next_scan = 0.0
            if time.monotonic() >= next_scan:
                sweep(signal.SIGTERM)
                next_scan = time.monotonic() + RESCAN_INTERVAL
            time.sleep(0.05)
        for _ in range(KILL_SWEEPS):
            for target in held.values():
                if target.alive():
                    target.send(signal.SIGKILL)
            sweep(signal.SIGKILL)
            end = time.monotonic() + 0.5
            while time.monotonic() < end and any(t.alive() for t in held.values()):
                time.sleep(0.02)
            if not find():
                return
    finally:
        for target in held.values():
            target.close()


def terminate_tree(
    root: int, grace: float, *, include_root: bool = True, start_time: int | None = None
) -> None:
    """SIGTERM the tree below (and including) root, then SIGKILL what is left after grace.
    With ``start_time`` (the root's, as recorded), nothing is done unless the process at
    ``root`` is that one: a pid reused by another program is not its tree."""
    start = proc_start_time(root)
    if start_time is not None and start != start_time:
        return

    def find() -> dict[int, int]:
        found = agent_processes(root)
        if include_root and start is not None and pid_alive(root, start):
            found[root] = start
        return found

    terminate(find, grace)


# -- containment --------------------------------------------------------------------------------


def become_subreaper() -> bool:
    """Make this process a child subreaper (Linux 3.4, ``prctl(PR_SET_CHILD_SUBREAPER)``):
    orphans below it (``setsid cmd &``, double forks) are re-parented here, not to init, so the
    tree walk still finds them. False where it is not available."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(36, 1, 0, 0, 0) == 0  # PR_SET_CHILD_SUBREAPER
    except Exception:  # no ctypes, no libc prctl (not Linux)
        return False


def reap_orphans(keep: set[int] | frozenset[int] = frozenset()) -> None:
    """Collect the exit status of this process's dead children, except ``keep`` (children a
    ``subprocess.Popen`` still waits for): a subreaper inherits orphans, and their zombies
    would stay until it exits."""
    me = os.getpid()
    for pid, fields in _table().items():
        if fields[0] == "Z" and int(fields[1]) == me and pid not in keep:
            with contextlib.suppress(ChildProcessError, OSError):
                os.waitpid(pid, os.WNOHANG)


def _cgroup2_mount() -> str | None:
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                left, _, right = line.partition(" - ")
                if right.split(" ", 1)[0] == "cgroup2":
                    return left.split()[4]
    except OSError:
        pass
    return None


def _own_cgroup() -> str | None:
    try:
        with open("/proc/self/cgroup", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.startswith("0::"):
                    return line[3:].strip()
    except OSError:
        pass
    return None


def _systemd_owns(path: str) -> bool:
    """systemd runs this machine and has not delegated ``path`` (its rule: no cgroups made
    by others inside units it did not delegate)."""
    try:
        with open("/proc/1/comm", encoding="utf-8") as fh:
            if fh.read().strip() != "systemd":
                return False
    except OSError:
        return False
    for attr in ("trusted.delegate", "user.delegate"):
        with contextlib.suppress(OSError, AttributeError):
            if os.getxattr(path, attr) == b"1":
                return False
    return True


def cgroup_parent() -> str | None:
    """Where this process may make a run's cgroup: its own cgroup v2 directory (or, inside
    another run's cgroup, beside it), when the hierarchy is writable and not systemd's."""
    mount, own = _cgroup2_mount(), _own_cgroup()
    if not mount or own is None:
        return None
    parent = os.path.normpath(mount + "/" + own.strip("/"))
    if os.path.basename(parent).startswith(CGROUP_PREFIX):
        parent = os.path.dirname(parent)
    if _systemd_owns(parent) or not os.access(parent, os.W_OK):
        return None
    return parent


def make_cgroup(name: str) -> str | None:
    """Create the cgroup ``name`` for a run (see :func:`cgroup_parent`); None when this
    machine offers none. A process inside another run's cgroup (a supervisor started by an
    agent's ``orch launch``) first steps out of it, so that run's end does not stop it."""
    parent = cgroup_parent()
    if parent is None:
        return None
    own = _own_cgroup() or ""
    if os.path.basename(own.rstrip("/")).startswith(CGROUP_PREFIX):
        with contextlib.suppress(OSError), open(os.path.join(parent, "cgroup.procs"), "w") as fh:
            fh.write(str(os.getpid()))
    path = os.path.join(parent, name)
    try:
        os.mkdir(path)
    except FileExistsError:
        pass
    except OSError:
        return None
    return path


class CgroupJoin:
    """A ``preexec_fn`` for ``subprocess.Popen`` that moves the child into a cgroup between
    fork and exec: nothing it starts can run outside the group, and a child that cannot be
    started still fails as ``OSError`` in the parent. It only writes to a descriptor opened
    beforehand (no import, no lock taken), so it is safe in a process with threads. If the move
    fails, the child runs all the same (the tree and the marker still hold it)."""

    def __init__(self, path: str) -> None:
        self.fd: int | None = os.open(os.path.join(path, "cgroup.procs"), os.O_WRONLY)

    def __call__(self) -> None:
        try:  # noqa: SIM105 (runs between fork and exec: the least code possible)
            os.write(self.fd, b"0")  # type: ignore[arg-type]
        except (OSError, TypeError):
            pass

    def close(self) -> None:
        if self.fd is not None:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = None


def cgroup_pids(path: str) -> list[int]:
    """Processes in cgroup ``path`` and the cgroups below it (zombies are not listed)."""
    out: list[int] = []
    for dirpath, _, _ in os.walk(path):
        with contextlib.suppress(OSError), open(os.path.join(dirpath, "cgroup.procs")) as fh:
            out.extend(int(line) for line in fh if line.strip())
    return out


def cgroup_kill(path: str) -> bool:
    """SIGKILL every process in the cgroup at once (``cgroup.kill``, Linux 5.14): nothing that
    forks meanwhile escapes. A process orch detached that is still in it (one started before
    :func:`detached` moved such processes out) is first moved to the cgroup beside it; if one
    cannot be, nothing is killed this way. False where the kernel lacks it, or not done."""
    parent = os.path.join(os.path.dirname(path.rstrip("/")), "cgroup.procs")
    for pid in cgroup_pids(path):
        if _DETACHED_ENTRY in _environ(pid):
            try:
                with open(parent, "w") as fh:
                    fh.write(str(pid))
            except OSError:
                return False
    try:
        with open(os.path.join(path, "cgroup.kill"), "w") as fh:
            fh.write("1")
    except OSError:
        return False
    return True


def remove_cgroup(path: str, wait: float = 5.0) -> bool:
    """Remove an emptied cgroup (and cgroups below it), waiting up to ``wait`` seconds for
    killed members to exit (under load that takes more than a second); False if processes
    still hold it then."""
    deadline = time.monotonic() + wait
    while True:
        for dirpath, _, _ in sorted(os.walk(path), key=lambda w: -len(w[0])):
            with contextlib.suppress(OSError):
                os.rmdir(dirpath)
        if not os.path.isdir(path):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


def find_cgroup(name: str) -> str | None:
    """The cgroup called ``name`` where :func:`make_cgroup` would have put it, else anywhere
    in the cgroup v2 hierarchy (a run's cgroup, after its supervisor is gone)."""
    parent = cgroup_parent()
    if parent and os.path.isdir(os.path.join(parent, name)):
        return os.path.join(parent, name)
    mount = _cgroup2_mount()
    if not mount or not os.access(mount, os.W_OK):
        return None
    for dirpath, dirnames, _ in os.walk(mount):
        if name in dirnames:
            return os.path.join(dirpath, name)
    return None


def cgroup_name(run_id: int | str, token: str) -> str:
    """The name of run ``run_id``'s cgroup."""
    return f"{CGROUP_PREFIX}{run_id}-{token[:16]}"


def stop_run(
    run_id: int | str,
    token: str | None,
    grace: float,
    *,
    group: int | None = None,
    keep_children: bool = False,
) -> None:
    """Stop what is left of a run after its supervisor (a cancel's last sweep, or a supervisor
    killed with -9): the processes carrying the run's marker and the members of its cgroup.
    ``group`` is a dead supervisor's pid, the process group and session of its claude: with
    ``keep_children`` only that group's marked members go (claude and what it did not detach);
    for a run from before markers (no token), the group's members.

    The group is safe to use only while no process holds the pid: a pid that names a group or
    session is handed to no new process, and a pid no process holds can start no new group.
    """
    marker = run_marker(run_id, token) if token else None
    if keep_children:
        found = lambda: agent_processes(group=group, group_marker=marker)  # noqa: E731
        terminate(found, grace)
        return
    cgroup = find_cgroup(cgroup_name(run_id, token)) if token else None
    group = None if marker else group
    terminate(lambda: agent_processes(marker=marker, cgroup=cgroup, group=group), grace)
    if cgroup:
        cgroup_kill(cgroup)
        remove_cgroup(cgroup)


def stop_supervisor(
    pid: int,
    start_time: int | None,
    grace: float,
    *,
    run_id: int | str = "",
    token: str | None = None,
    keep_children: bool = False,
) -> bool:
    """Cancel a run through its supervisor ``(pid, start_time)``: SIGTERM it (it stops the
    agent's processes and records ``cancelled``), take its tree down if it is still there
    ``grace`` + 2 seconds later, then stop what is left of the run (:func:`stop_run`), also
    when the supervisor was already gone (killed with -9). Returns whether it was running."""
    was_alive = send(pid, start_time, signal.SIGTERM)
    if was_alive:
        deadline = time.monotonic() + grace + 2.0
        while pid_alive(pid, start_time):
            if time.monotonic() >= deadline:
                terminate_tree(pid, 0.5)  # a stuck supervisor: take the whole tree down
                break
            time.sleep(0.05)
        if keep_children:
            return True  # it stopped claude and kept the rest, as asked
    stop_run(
        run_id,
        token,
        0.5,
        group=None if pid_alive(pid, None) else pid,
        keep_children=keep_children,
    )
    return was_alive

"""Every signal orch sends reaches the process it means, never one that reused its pid."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from orch_plugins import procs
from orch_plugins.backend import BackendContext
from orch_plugins.backends.ssh import remote
from orch_plugins.backends.subprocess import SubprocessBackend
from orch_plugins.supervisor import retry_delay


@pytest.fixture
def stranger() -> Iterator[subprocess.Popen[bytes]]:
    """Another program, in a session and process group of its own (ids = its pid), as a
    daemon that took over a dead supervisor's pid would be."""
    proc = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


def alive(proc: subprocess.Popen[bytes]) -> bool:
    time.sleep(0.3)  # a signal, had one been sent, has landed
    return proc.poll() is None


def recorded(proc: subprocess.Popen[bytes]) -> dict[str, int]:
    """A handle recorded for an earlier process that had this pid: another start time."""
    start = procs.proc_start_time(proc.pid)
    assert start is not None
    return {"pid": proc.pid, "start_time": start - 1}


def test_cancel_never_signals_a_process_that_reused_the_pid(
    stranger: subprocess.Popen[bytes], tmp_path: Path
) -> None:
    SubprocessBackend(BackendContext(tmp_path)).cancel(recorded(stranger), 0.2)
    assert alive(stranger)


def test_remote_cancel_never_signals_a_process_that_reused_the_pid(
    stranger: subprocess.Popen[bytes], tmp_path: Path
) -> None:
    run = {"dir": str(tmp_path), **recorded(stranger)}
    reply, _ = remote.do_cancel({"run": run, "grace": 0.2}, None)
    assert reply["was_alive"] is False
    assert alive(stranger)


@pytest.mark.parametrize("pidfd", [True, False])
def test_terminate_signals_what_it_found_and_nothing_else(
    stranger: subprocess.Popen[bytes], monkeypatch: pytest.MonkeyPatch, pidfd: bool
) -> None:
    if not pidfd:  # an older kernel or Python: the start time is checked before each kill
        monkeypatch.delattr(os, "pidfd_open")
    ours = subprocess.Popen(["sleep", "60"])
    ours_start = procs.proc_start_time(ours.pid)
    assert ours_start is not None
    stale = recorded(stranger)
    procs.terminate(lambda: {ours.pid: ours_start, stale["pid"]: stale["start_time"]}, 1.0)
    assert ours.wait(5) == -signal.SIGTERM
    assert alive(stranger)


def test_a_pinned_process_that_ended_is_not_signalled_again() -> None:
    proc = subprocess.Popen(["sleep", "60"])
    target = procs.pin(proc.pid, procs.proc_start_time(proc.pid))
    assert target is not None and target.fd is not None
    try:
        proc.kill()
        proc.wait()  # reaped: the pid is free for anyone now
        assert target.send(signal.SIGKILL) is False
    finally:
        target.close()


def test_retry_delays_are_jittered_and_bounded() -> None:
    """Decorrelated jitter: many agents failing together spread their retries."""
    first = [retry_delay(2.0, 0.0) for _ in range(200)]
    assert all(2.0 <= d <= 6.0 for d in first)
    assert len({round(d, 2) for d in first}) > 100  # not in lockstep
    assert max(first) - min(first) > 3.0
    later = [retry_delay(2.0, 20.0) for _ in range(200)]
    assert all(2.0 <= d <= 60.0 for d in later) and max(later) > 30.0
    assert retry_delay(2.0, 1000.0) <= 60.0

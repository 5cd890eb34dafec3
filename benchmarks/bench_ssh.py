"""Speed of the ssh backend against a real sshd on loopback; prints figures, asserts nothing.

    python benchmarks/bench_ssh.py [--agents 20]

Starts one OpenSSH server (tests/ssh/sshd.py: needs /usr/sbin/sshd) whose "claude" is a stub
that reports a session and sleeps, launches N agents on it, and measures:

- status of N running agents on one host: one ssh round trip (target: under 100 ms with a warm
  connection), in-process (``collect`` + ``statuses``, what ``orch status`` does) and as a whole
  ``orch status --json`` command;
- the same with a cold connection (no multiplexing master yet);
- launch cost per remote agent (``orch parallel`` of N agents, and one ``orch launch``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.ssh.sshd import start_hosts  # noqa: E402

ORCH = [sys.executable, "-m", "orch_plugins.cli"]
STUB = """#!/bin/sh
cat >/dev/null
echo '{"type":"system","subtype":"init","session_id":"00000000-0000-0000-0000-0000000000%s"}'
exec sleep 300
"""


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def median(samples: list[float]) -> str:
    return f"median {ms(statistics.median(samples))} (min {ms(min(samples))})"


def run(cmd: list[str], env: dict[str, str]) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--agents", type=int, default=20)
    n = parser.parse_args().agents
    base = Path(tempfile.mkdtemp(prefix="orch-bench-ssh-"))
    stub = base / "claude-stub"
    stub.write_text(STUB % "01")
    stub.chmod(0o755)
    hosts = start_hosts(base / "hosts", {"PATH": "/usr/bin:/bin"}, names=("h1",))
    try:
        config = base / "config.toml"
        config.write_text(hosts.config_toml({"h1": {"claude": str(stub), "max_parallel": n + 5}}))
        proj = base / "proj"
        proj.mkdir()
        env = dict(
            os.environ,
            ORCH_CONFIG=str(config),
            ORCH_STATE_DIR=str(proj / ".orchestrate"),
            ORCH_CLAUDE_BIN=shutil.which("true") or "/bin/true",
            ORCH_MAX_PARALLEL=str(n + 10),
        )
        startup = [run([*ORCH, "--version"], env) for _ in range(5)]
        print(f"orch start-up (--version):              {median(startup)}")

        t = run([*ORCH, "launch", "warmup", "x", "--host", "h1"], env)
        print(f"orch launch, cold connection:           {ms(t)}")
        one = [run([*ORCH, "launch", f"one{i}", "x", "--host", "h1"], env) for i in range(3)]
        print(f"orch launch, warm connection:           {median(one)}")
        run([*ORCH, "cancel", "--all"], env)

        local_env = dict(env, ORCH_CLAUDE_BIN=str(stub), ORCH_STATE_DIR=str(base / "local"))
        t_local = run([*ORCH, "parallel", *(["task"] * n)], local_env)
        run([*ORCH, "cancel", "--all"], local_env)
        t = run([*ORCH, "parallel", *(["task"] * n), "--host", "h1"], env)
        per = (t - statistics.median(startup)) / n
        extra = (t - t_local) / n
        print(f"orch parallel, {n} remote agents:        {ms(t)} wall, {ms(per)} per agent")
        print(f"  the same {n} as local subprocesses:    {ms(t_local)} wall: ssh adds {ms(extra)}")

        os.environ.update({k: v for k, v in env.items() if k.startswith("ORCH_")})
        from orch_plugins.backend import BackendContext
        from orch_plugins.backends.ssh.backend import SshBackend
        from orch_plugins.config import load_config
        from orch_plugins.store import Store

        store = Store.open(proj / ".orchestrate", create=False)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            runs = store.runs(statuses=("running",))
            if len(runs) == n and all(r["session_id"] for r in runs):
                break
            subprocess.run([*ORCH, "status"], env=env, check=True, stdout=subprocess.DEVNULL)
        runs = store.runs(statuses=("running",))
        assert len(runs) == n, f"{len(runs)} of {n} agents running"

        def status_once() -> float:
            # poll_interval 0: every call really asks (orch wait's throttle is per process)
            config = load_config()
            context = BackendContext.of("ssh", config, store.state_dir)
            table = {**context.config, "poll_interval": 0}
            backend = SshBackend(BackendContext(store.state_dir, table, context.hosts))
            t = time.perf_counter()
            updates = backend.poll(runs)
            elapsed = time.perf_counter() - t
            assert len(updates) == n and all(u.alive for u in updates.values())
            assert not any(u.fields.get("status") for u in updates.values())
            return elapsed

        warm = [status_once() for _ in range(20)]
        print(f"status of {n} agents on one host, warm:  {median(warm)} (target < 100 ms)")
        cold = []
        for _ in range(3):
            hosts.exit_masters()
            cold.append(status_once())
        print(f"status of {n} agents on one host, cold:  {median(cold)}")
        whole = [run([*ORCH, "status", "--json"], env) for _ in range(5)]
        print(f"orch status --json ({n} remote agents):  {median(whole)}")
        run([*ORCH, "cancel", "--all"], env)
    finally:
        hosts.stop()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()

"""tmux backend figures; prints them, asserts nothing. Uses a private tmux server.

    python benchmarks/bench_tmux.py [--agents 50]

1. tmux alone: N windows running ``sleep`` created in batched calls vs one call per window.
2. The backend: N agents (real supervisors; ``/bin/sleep`` stands in for claude) through
   ``TmuxBackend.launch_many`` vs ``TmuxBackend.launch`` one by one.
3. Status of the N agents: ``poll()`` (no tmux call) and ``windows()`` (one tmux call).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from orch_plugins.backend import BackendContext, LaunchSpec
from orch_plugins.backends.tmux import client as tmux_mod
from orch_plugins.backends.tmux.backend import BATCH_BYTES, TmuxBackend
from orch_plugins.backends.tmux.client import Tmux, session_name
from orch_plugins.store import RUNNING, Store


def specs(store: Store, n: int, tag: str) -> list[LaunchSpec]:
    out = []
    for i in range(n):
        with store.transaction():
            run = store.insert_run(
                name=f"{tag}{i}", task="t", backend="tmux", cwd=os.getcwd(), status=RUNNING
            )
        run_dir = Path(run["run_dir"])
        run_dir.mkdir(parents=True)
        (run_dir / "prompt.txt").write_text("t")
        spec = LaunchSpec(
            run_id=run["run_id"],
            name=run["name"],
            argv=["/bin/sleep", "120"],
            env={},
            cwd=os.getcwd(),
            run_dir=str(run_dir),
            state_dir=str(store.state_dir),
            prompt_path=str(run_dir / "prompt.txt"),
            output_path=run["output_path"],
            log_path=run["log_path"],
        )
        spec.spec_path.write_text(json.dumps(spec.to_json()))
        out.append(spec)
    return out


def count_calls() -> list[int]:
    calls = [0]
    real = Tmux.run

    def counted(self: Tmux, *commands: list[str], **kw: bool) -> subprocess.CompletedProcess[str]:
        calls[0] += 1
        return real(self, *commands, **kw)

    tmux_mod.Tmux.run = counted  # type: ignore[method-assign,assignment]
    return calls


def stop_all(backend: TmuxBackend, handles: list[dict]) -> None:
    threads = [threading.Thread(target=backend.cancel, args=(h, 1.0)) for h in handles]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def settle(seconds: float = 2.0) -> None:
    """Let the supervisors started by the previous step finish starting."""
    time.sleep(seconds)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--agents", type=int, default=50)
    n = parser.parse_args().agents
    tmpdir = tempfile.mkdtemp(prefix="orch-bench-", dir="/tmp")
    os.environ.update(TMUX_TMPDIR=tmpdir, ORCH_TMUX_SOCKET="bench", DISABLE_AUTOUPDATER="1")
    os.environ.pop("TMUX", None)
    state = Path(tmpdir) / "proj" / ".orchestrate"
    store = Store(state)
    os.chdir(state.parent)
    tmux = Tmux("bench")
    tmux.run(["new-session", "-d", "-s", "plain", "-x", "200", "-y", "50", "sleep 600"])
    try:
        # 1. tmux alone.
        per_window = [["new-window", "-d", "-t", "=plain:", "/bin/sleep", "120"]]
        t = time.perf_counter()
        batch: list[list[str]] = []
        for _ in range(n):
            batch += per_window
            if sum(len(" ".join(c)) for c in batch) > BATCH_BYTES - 500:
                tmux.run(*batch)
                batch = []
        if batch:
            tmux.run(*batch)
        batched = time.perf_counter() - t
        t = time.perf_counter()
        for _ in range(n):
            tmux.run(*per_window)
        single = time.perf_counter() - t
        print(f"tmux alone, {n} windows running sleep:")
        print(f"  batched      {batched * 1000:7.0f} ms")
        print(f"  one by one   {single * 1000:7.0f} ms")
        session = session_name(state, {})
        tmux.run(["new-session", "-d", "-s", session, "-x", "200", "-y", "50", "sleep 600"])
        tmux.run(["kill-session", "-t", "=plain"])

        # 2. The backend, with real supervisors.
        backend = TmuxBackend(BackendContext(state))
        calls = count_calls()
        many = specs(store, n, "b")
        t = time.perf_counter()
        handles = backend.launch_many(many)
        batched = time.perf_counter() - t
        batched_calls = calls[0]
        settle()
        calls[0] = 0
        t = time.perf_counter()
        runs = [{"run_id": i, "handle": json.dumps(h)} for i, h in enumerate(handles, 1)]
        statuses = [u.alive for u in backend.poll(runs).values()]
        status_t = time.perf_counter() - t
        status_calls = calls[0]
        t = time.perf_counter()
        panes = backend.windows(state)
        windows_t = time.perf_counter() - t
        windows_calls = calls[0] - status_calls
        stop_all(backend, handles)
        settle(1.0)
        calls[0] = 0
        one = specs(store, n, "s")
        t = time.perf_counter()
        handles = [backend.launch(s) for s in one]
        single = time.perf_counter() - t
        single_calls = calls[0]
        settle()
        stop_all(backend, handles)
        print(f"backend, {n} agents (supervisor + /bin/sleep as claude), {os.cpu_count()} CPUs:")
        print(f"  launch_many  {batched * 1000:7.0f} ms in {batched_calls} tmux calls")
        print(f"  launch x{n}   {single * 1000:7.0f} ms in {single_calls} tmux calls")
        print(f"status of {n} agents:")
        print(
            f"  poll()       {status_t * 1000:7.1f} ms, {status_calls} tmux calls, "
            f"{sum(statuses)} alive"
        )
        print(f"  windows()    {windows_t * 1000:7.1f} ms, {windows_calls} tmux call, ", end="")
        print(f"{len(panes)} panes")
    finally:
        subprocess.run(
            [shutil.which("tmux") or "tmux", "-L", "bench", "kill-server"], capture_output=True
        )
        shutil.rmtree(tmpdir, ignore_errors=True)


if __name__ == "__main__":
    main()

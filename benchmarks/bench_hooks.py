"""Wall time of each Claude Code hook, run the way Claude Code runs it (a fresh process).

    python benchmarks/bench_hooks.py [--runs N] [--python PATH]

Each case runs the installed hook command (``PYTHON -I -S orch_hook.py EVENT PKG_DIR``, stdin
JSON, ``CLAUDE_PROJECT_DIR`` set) at least 20 times in a scratch project and prints the median
and 90th percentile in milliseconds, next to the bare interpreter start-up for comparison.
Target: median under 50 ms; "nothing to do" close to the bare start-up.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))

from orch_plugins.store import COMPLETED, FAILED, Store  # noqa: E402

SHIM = REPO / "claude" / "hooks" / "orch_hook.py"
PLUGIN_SHIM = REPO / "claude" / "hooks" / "orch-hook.sh"


def timed(argv: list[str], *, stdin: bytes, env: dict[str, str], cwd: Path) -> float:
    start = time.perf_counter()
    proc = subprocess.run(argv, input=stdin, env=env, cwd=cwd, capture_output=True)
    elapsed = (time.perf_counter() - start) * 1000
    if proc.returncode != 0:
        raise SystemExit(f"{argv} exited {proc.returncode}: {proc.stderr.decode()[-500:]}")
    return elapsed


def measure(
    runs: int,
    argv: list[str],
    *,
    stdin: bytes,
    env: dict[str, str],
    cwd: Path,
    before: Callable[[], None] | None = None,
) -> tuple[float, float]:
    times = []
    for _ in range(runs + 2):  # two warm-up runs fill the page cache
        if before:
            before()
        times.append(timed(argv, stdin=stdin, env=env, cwd=cwd))
    times = sorted(times[2:])
    return statistics.median(times), times[min(len(times) - 1, int(len(times) * 0.9))]


def add_ended_runs(store: Store, project: Path, count: int) -> None:
    with store.transaction():
        runs = [
            store.insert_run(
                name=f"bench{i}", task=f"task {i}", backend="subprocess", cwd=str(project)
            )
            for i in range(count)
        ]
    for i, run in enumerate(runs):
        Path(run["run_dir"]).mkdir(parents=True, exist_ok=True)
        Path(run["output_path"]).write_text(f"Result of task {i}: fine.\nDetails...\n")
        status = FAILED if i == count - 1 else COMPLETED
        store.finish(run["run_id"], status, error="API error 529" if status == FAILED else None)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30, help="runs per case (at least 20)")
    parser.add_argument("--python", default=sys.executable, help="interpreter the hooks use")
    args = parser.parse_args()
    runs = max(20, args.runs)
    py = args.python
    pkg = os.environ.get("BENCH_PKG_DIR") or str(REPO / "src")

    with tempfile.TemporaryDirectory(prefix="orch-bench-") as tmp:
        tmp_path = Path(tmp)
        bare = tmp_path / "bare"  # a project without .orchestrate: hooks have nothing to do
        project = tmp_path / "project"
        for p in (bare, project):
            p.mkdir()
        state = project / ".orchestrate"
        store = Store(state)
        sid = str(uuid.uuid4())
        base_env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(tmp_path / "home"),
            "CLAUDE_CODE_SESSION_ID": sid,
        }

        def payload(event: str, cwd: Path, **extra: str) -> bytes:
            data = {
                "session_id": sid,
                "transcript_path": str(tmp_path / f"{sid}.jsonl"),
                "cwd": str(cwd),
                "hook_event_name": event,
                **extra,
            }
            return json.dumps(data).encode()

        def hook(event: str, cwd: Path) -> dict:
            return {
                "argv": [py, "-I", "-S", str(SHIM), event, pkg],
                "env": {**base_env, "CLAUDE_PROJECT_DIR": str(cwd)},
                "cwd": cwd,
                "stdin": payload(event, cwd, source="startup", prompt="hello"),
            }

        rows: list[tuple[str, float, float]] = []

        def case(label: str, before: Callable[[], None] | None = None, **kw) -> None:
            median, p90 = measure(runs, before=before, **kw)
            rows.append((label, median, p90))

        nothing = {"stdin": b"", "env": base_env, "cwd": bare}
        case("bare python -I -S -c pass", argv=[py, "-I", "-S", "-c", "pass"], **nothing)
        case("bare python -c pass (site)", argv=[py, "-c", "pass"], **nothing)

        for event in ("SessionStart", "UserPromptSubmit", "Stop", "SessionEnd"):
            case(f"{event}: nothing to do (no .orchestrate)", **hook(event, bare))
        case("SessionStart: record session", **hook("SessionStart", project))
        case("Stop: record turn end", **hook("Stop", project))
        case("SessionEnd: record session end", **hook("SessionEnd", project))

        agent_env = {"ORCH_RUN_ID": "1", "ORCH_AGENT": "bench0", "ORCH_STATE_DIR": str(state)}
        add_ended_runs(store, project, 3)
        agent = hook("SessionStart", project)
        agent["env"] = {**agent["env"], **agent_env}
        case("SessionStart: in an agent (attach to run)", **agent)
        agent = hook("UserPromptSubmit", project)
        agent["env"] = {**agent["env"], **agent_env}
        case("UserPromptSubmit: in an agent (attach to run)", **agent)

        seen = state / "hooks" / f"{sid}.seen"
        marker = state / "ended"

        def reset_notice() -> None:
            # The session saw nothing yet, and three runs ended after it started.
            store.conn.execute(
                "UPDATE sessions SET first_seen=0, notified_at=NULL, notified_seq=0 "
                "WHERE session_id=?",
                (sid,),
            )
            seen.unlink(missing_ok=True)

        ups = hook("UserPromptSubmit", project)
        case("UserPromptSubmit: notice of 3 ended agents", before=reset_notice, **ups)
        had_marker = marker.exists()
        marker.unlink(missing_ok=True)
        case("UserPromptSubmit: nothing new (no 'ended' marker)", **ups)
        marker.touch()
        case("UserPromptSubmit: nothing new ('ended' marker)", **ups)
        if not had_marker:
            marker.unlink()
        plugin = hook("UserPromptSubmit", project)
        plugin["argv"] = ["sh", str(PLUGIN_SHIM), "UserPromptSubmit"]
        plugin["env"] = {**plugin["env"], "ORCH_PYTHON": py, "CLAUDE_PLUGIN_ROOT": str(REPO)}
        case("UserPromptSubmit via plugin shim (sh)", **plugin)
        store.close()

    width = max(len(r[0]) for r in rows)
    print(f"hook wall time over {runs} runs each, interpreter {py}")
    print(f"{'case'.ljust(width)}  median ms  p90 ms")
    for label, median, p90 in rows:
        print(f"{label.ljust(width)}  {median:9.1f}  {p90:6.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

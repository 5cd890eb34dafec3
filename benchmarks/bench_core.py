"""Speed and memory figures for the core; prints them, asserts nothing.

    python benchmarks/bench_core.py            # everything (needs the real claude on PATH)
    python benchmarks/bench_core.py --no-real  # stub claude only

Targets (issue 2): under 20 ms of orchestration cost per agent launched; ``orch status --json``
with 1,000 recorded runs under 150 ms; five real agents through ``orch`` within 10 % of the same
five ``claude -p`` started directly from a shell and waited for.
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

ORCH = [sys.executable, "-m", "orch_plugins.cli"]
_SID = "00000000-0000-0000-0000-000000000001"
STUB = f"""#!/bin/sh
read -r _line
echo '{{"type":"system","subtype":"init","session_id":"{_SID}"}}'
echo '{{"type":"result","subtype":"success","is_error":false,"result":"ok","session_id":"{_SID}"}}'
"""


def timed(cmd: list[str], **kw: object) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, **kw)  # type: ignore[call-overload]
    return time.perf_counter() - t


def median_ms(samples: list[float]) -> str:
    return f"median {statistics.median(samples) * 1000:.1f} ms (min {min(samples) * 1000:.1f})"


def fresh_env(base: Path, claude: str) -> dict[str, str]:
    env = dict(os.environ)
    state = base / "state"
    shutil.rmtree(state, ignore_errors=True)
    env.update(
        ORCH_STATE_DIR=str(state),
        ORCH_CLAUDE_BIN=claude,
        ORCH_CONFIG=str(base / "none.toml"),
        ORCH_MAX_PARALLEL="100",
    )
    return env


def bench_stub(base: Path) -> None:
    stub = base / "claude-stub"
    stub.write_text(STUB)
    stub.chmod(0o755)
    env = fresh_env(base, str(stub))
    startup = [timed([*ORCH, "--version"], env=env) for _ in range(5)]
    print(f"orch start-up (--version):             {median_ms(startup)}")

    samples = []
    for _ in range(5):
        env = fresh_env(base, str(stub))
        samples.append(timed([*ORCH, "launch", "one", "task"], env=env))
    print(f"orch launch, one agent:                {median_ms(samples)}")

    for limit, label in (("8", "max_parallel 8, the default"), ("100", "all 50 at once")):
        walls = []
        for _ in range(3):
            env = fresh_env(base, str(stub))
            env["ORCH_MAX_PARALLEL"] = limit
            walls.append(timed([*ORCH, "parallel", *[f"task {i}" for i in range(50)]], env=env))
            subprocess.run([*ORCH, "wait"], env=env, check=True, stdout=subprocess.DEVNULL)
        wall = statistics.median(walls)
        per = (wall - statistics.median(startup)) / 50
        print(
            f"orch parallel, 50 agents ({label}): {wall * 1000:.0f} ms wall, "
            f"{per * 1000:.1f} ms per agent beyond start-up (target < 20 ms)"
        )
    print(f"supervisor start-up (python -S):       {supervisor_startup()}")

    env = fresh_env(base, str(stub))
    seed_runs(Path(env["ORCH_STATE_DIR"]), 1000)
    status = [timed([*ORCH, "status", "--json"], env=env) for _ in range(10)]
    print(f"orch status --json, 1,000 runs:        {median_ms(status)} (target < 150 ms)")
    status_all = [timed([*ORCH, "status", "--json", "--all"], env=env) for _ in range(5)]
    print(f"orch status --json --all, 1,000 runs:  {median_ms(status_all)}")

    env = fresh_env(base, str(stub) + "-slow")
    slow = Path(str(stub) + "-slow")
    slow.write_text("#!/bin/sh\nsleep 2\n" + STUB.split("\n", 1)[1])
    slow.chmod(0o755)
    subprocess.run([*ORCH, "launch", "mem", "task"], env=env, check=True, stdout=subprocess.DEVNULL)
    time.sleep(0.5)
    rss = supervisor_rss(Path(env["ORCH_STATE_DIR"]))
    print(f"supervisor resident memory:            {rss} KiB per agent (claude itself ~320 MB)")
    subprocess.run([*ORCH, "wait"], env=env, check=True, stdout=subprocess.DEVNULL)


def supervisor_startup() -> str:
    """Wall and CPU of importing what a supervisor imports: paid once per agent."""
    import resource

    src = str(Path(__file__).resolve().parent.parent / "src")
    code = (
        f"import sys; sys.path.insert(0, {src!r}); "
        "import orch_plugins.supervisor, orch_plugins.store"
    )
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    walls = [timed([sys.executable, "-S", "-c", code]) for _ in range(10)]
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime) / 10
    return f"{median_ms(walls)}, {cpu * 1000:.1f} ms CPU"


def supervisor_rss(state: Path) -> str:
    import json
    import sqlite3

    con = sqlite3.connect(state / "state.db")
    handle = json.loads(con.execute("SELECT handle FROM runs").fetchone()[0])
    con.close()
    for line in Path(f"/proc/{handle['pid']}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return line.split()[1]
    return "?"


def seed_runs(state: Path, n: int) -> None:
    from orch_plugins.store import Store

    store = Store(state)
    now = time.time()
    with store.transaction():
        for i in range(n):
            run = store.insert_run(
                name=f"seed{i}", task=f"seeded task {i} " * 5, backend="subprocess", cwd="/tmp"
            )
            store.finish(
                run["run_id"],
                "completed",
                exit_code=0,
                cost_usd=0.01,
                num_turns=3,
                session_id=f"{i:08d}-0000-0000-0000-000000000000",
                ended_at=now,
            )
    store.close()


def real_pairs(base: Path, rounds: int = 3) -> list[tuple[float, float]]:
    """Wall seconds of five real one-turn agents (Claude Code against the stand-in, each
    answer held 2 s), (from a bare shell, through ``orch parallel`` + ``orch wait``), measured
    in turn ``rounds`` times."""
    from orch_plugins.testing.api import MessagesStandIn, Reply
    from orch_plugins.testing.pytest_plugin import find_claude_bin, make_claude_env

    claude = find_claude_bin()
    pairs = []
    with MessagesStandIn() as api:
        api.default = lambda req: Reply.text("done", delay=2.0)  # an agent that "thinks" 2 s
        home = base / "home"
        home.mkdir(exist_ok=True)
        env = make_claude_env(api.url, home)
        work = base / "work"
        work.mkdir(exist_ok=True)
        tasks = [f"benchmark task number {i}" for i in range(5)]
        script = " ".join(f"{claude} -p '{t}' > out{i}.txt &" for i, t in enumerate(tasks))
        for _ in range(rounds):
            direct = timed(["sh", "-c", script + " wait"], env=env, cwd=work)
            orch_env = {**fresh_env(base, claude), **env}
            t = time.perf_counter()
            subprocess.run(
                [*ORCH, "parallel", *tasks],
                env=orch_env,
                cwd=work,
                check=True,
                stdout=subprocess.DEVNULL,
            )
            subprocess.run(
                [*ORCH, "wait"], env=orch_env, cwd=work, check=True, stdout=subprocess.DEVNULL
            )
            pairs.append((direct, time.perf_counter() - t))
    return pairs


def bench_real(base: Path) -> None:
    pairs = real_pairs(base)
    d = statistics.median(p[0] for p in pairs)
    o = statistics.median(p[1] for p in pairs)
    print(f"5 real agents, direct shell:           {d:.2f} s wall (median of 3)")
    print(
        f"5 real agents, through orch:           {o:.2f} s wall (median of 3), "
        f"{(o / d - 1) * 100:+.1f} % (target within 10 %)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--no-real", action="store_true", help="skip the real Claude Code runs")
    args = parser.parse_args()
    # Measure an installed package as users run it: with bytecode (pip compiles it at install;
    # PYTHONDONTWRITEBYTECODE would otherwise make every process compile orch from source).
    import compileall

    compileall.compile_dir(Path(__file__).resolve().parent.parent / "src", quiet=1)
    with tempfile.TemporaryDirectory(prefix="orch-bench-") as tmp:
        base = Path(tmp)
        bench_stub(base)
        if not args.no_real:
            bench_real(base)


if __name__ == "__main__":
    main()

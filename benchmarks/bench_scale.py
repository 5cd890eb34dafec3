"""Issue 17's speed and memory targets, each beside a bare-shell baseline measured in the same run.

    python benchmarks/bench_scale.py            # everything (needs the real claude on PATH)
    python benchmarks/bench_scale.py --no-real  # stub claude only

Prints, per target: orch's figure, the baseline's, their ratio, the target and whether it is met
(on this run; a loaded machine moves every figure, so medians of several runs, taken in turn
with the baseline). Asserts nothing. Targets:

* ``orch parallel`` of 50 stub agents with ``--max-parallel 50``: under 10 ms per agent
  (baseline: a shell starting the same 50 stubs with ``&``);
* 5 real one-turn agents through ``orch parallel`` + ``orch wait``: within 5 % of the same five
  ``claude -p`` from a bare shell, waited for;
* orch's own processes (supervisor and the waiting ``orch wait``; not claude) at 50 running
  agents: under 10 MB resident per agent (baseline: the shell that started and waits for them);
* ``orch status --json`` with 10,000 recorded runs: under 150 ms (baseline: the interpreter's
  own start-up, ``python -c pass``, which every ``orch`` call pays);
* a hook with nothing to do: under 15 ms median (baseline: ``python -I -S -c pass``).

Helpers (stub claude, fresh state, seeding, the real-agent pairs) are bench_core's.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_core import ORCH, STUB, fresh_env, real_pairs, seed_runs, timed
from bench_hooks import SHIM

AGENTS = 50


def children_cpu() -> float:
    """CPU seconds (user + system) of this process's waited-for children so far."""
    import resource

    use = resource.getrusage(resource.RUSAGE_CHILDREN)
    return use.ru_utime + use.ru_stime


def timed_cpu(cmd: list[str], **kw: object) -> tuple[float, float]:
    """(wall, CPU) seconds of one run of ``cmd``: CPU is what a loaded machine inflates least."""
    before = children_cpu()
    wall = timed(cmd, **kw)
    return wall, children_cpu() - before


def row(what: str, orch_value: float, base_value: float, unit: str, target: str, met: bool) -> None:
    ratio = orch_value / base_value if base_value else float("inf")
    print(
        f"{what:<44} orch {orch_value:8.1f} {unit:<3} | baseline {base_value:7.1f} {unit:<3} | "
        f"x{ratio:5.2f} | target {target:<14} {'met' if met else 'MISSED'}"
    )


def stub(base: Path, name: str, body: str = "") -> str:
    """A stub claude: reads its first turn, optionally runs ``body``, prints init and result."""
    path = base / name
    head, rest = STUB.split("\n", 2)[:2], STUB.split("\n", 2)[2]
    path.write_text("\n".join(head) + "\n" + body + rest)
    path.chmod(0o755)
    return str(path)


def bench_parallel(base: Path, rounds: int) -> None:
    claude = stub(base, "claude-stub")
    tasks = [f"task {i}" for i in range(AGENTS)]
    shell = " ".join(f"{claude} </dev/null >out{i} &" for i in range(AGENTS))
    work = base / "shell"
    work.mkdir(exist_ok=True)
    orch_runs, shell_runs, starts = [], [], []
    for _ in range(rounds):
        env = fresh_env(base, claude)
        starts.append(timed_cpu([*ORCH, "--version"], env=env))
        argv = [*ORCH, "parallel", "--max-parallel", str(AGENTS), *tasks]
        orch_runs.append(timed_cpu(argv, env=env))
        subprocess.run([*ORCH, "wait"], env=env, check=True, stdout=subprocess.DEVNULL)
        shell_runs.append(timed_cpu(["sh", "-c", shell], cwd=work))
        time.sleep(0.3)  # the shell's stubs end

    def med(runs: list[tuple[float, float]], i: int) -> float:
        return statistics.median(r[i] for r in runs)

    wall, start = med(orch_runs, 0), med(starts, 0)
    per = (wall - start) / AGENTS * 1000
    cpu_per = (med(orch_runs, 1) - med(starts, 1)) / AGENTS * 1000
    base_per = med(shell_runs, 0) / AGENTS * 1000
    print(
        f"  orch parallel, {AGENTS} stub agents: {wall * 1000:.0f} ms wall "
        f"({wall / AGENTS * 1000:.1f} ms per agent with orch's start-up of {start * 1000:.0f} ms, "
        f"{per:.1f} ms beyond it; CPU {cpu_per:.1f} ms per agent beyond start-up's "
        f"{med(starts, 1) * 1000:.0f} ms); shell '&': {med(shell_runs, 0) * 1000:.0f} ms wall"
    )
    row(
        f"orch parallel x{AGENTS}, per agent (beyond start-up)",
        per,
        base_per,
        "ms",
        "< 10 ms",
        per < 10,
    )


def rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def bench_memory(base: Path) -> None:
    claude = stub(base, "claude-sleepy", "sleep 6\n")
    env = fresh_env(base, claude)
    tasks = [f"task {i}" for i in range(AGENTS)]
    subprocess.run(
        [*ORCH, "parallel", "--max-parallel", str(AGENTS), *tasks],
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    waiter = subprocess.Popen([*ORCH, "wait"], env=env, stdout=subprocess.DEVNULL)
    time.sleep(2.5)
    con = sqlite3.connect(Path(env["ORCH_STATE_DIR"]) / "state.db")
    handles = [json.loads(h) for (h,) in con.execute("SELECT handle FROM runs") if h]
    running = con.execute("SELECT COUNT(*) FROM runs WHERE status='running'").fetchone()[0]
    con.close()
    supervisors = {h["pid"] for h in handles}
    own = sum(rss_kib(p) for p in supervisors) + rss_kib(waiter.pid)
    shell = subprocess.Popen(
        ["sh", "-c", " ".join(f"{claude} </dev/null >/dev/null &" for _ in range(AGENTS)) + " wait"]
    )
    time.sleep(1.0)
    shell_kib = rss_kib(shell.pid)
    waiter.wait()
    shell.wait()
    per = own / 1024 / AGENTS
    print(
        f"  orch's own processes at {running} running agents: {len(supervisors)} supervisor "
        f"process(es) + orch wait = {own / 1024:.1f} MB resident; the waiting shell "
        f"{shell_kib / 1024:.1f} MB"
    )
    row(
        f"orch's own memory, per agent at {AGENTS}",
        per,
        shell_kib / 1024 / AGENTS,
        "MB",
        "< 10 MB",
        per < 10,
    )


def bench_status(base: Path, runs: int) -> None:
    env = fresh_env(base, str(base / "claude-stub"))
    seed_runs(Path(env["ORCH_STATE_DIR"]), 10_000)
    # Runs that ended long ago were announced long ago: a status read has nothing to do first.
    con = sqlite3.connect(Path(env["ORCH_STATE_DIR"]) / "state.db")
    with con:
        con.execute("UPDATE runs SET end_announced=1")
    con.close()
    subprocess.run([*ORCH, "status"], env=env, check=True, stdout=subprocess.DEVNULL)  # warm
    orch, bare = [], []
    for _ in range(runs):
        orch.append(timed_cpu([*ORCH, "status", "--json"], env=env))
        bare.append(timed_cpu([sys.executable, "-c", "pass"], env=env))
    o, b = (statistics.median(r[0] for r in x) * 1000 for x in (orch, bare))
    oc, bc = (statistics.median(r[1] for r in x) * 1000 for x in (orch, bare))
    print(f"  orch status --json, 10,000 runs: CPU {oc:.0f} ms (python -c pass: {bc:.0f} ms)")
    row("orch status --json, 10,000 runs (median)", o, b, "ms", "< 150 ms", o < 150)


def bench_hook(base: Path, runs: int) -> None:
    bare_project = base / "bare"
    bare_project.mkdir(exist_ok=True)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(base / "home"),
        "CLAUDE_PROJECT_DIR": str(bare_project),
    }
    src = str(Path(__file__).resolve().parent.parent / "src")
    payload = json.dumps({"session_id": "s", "cwd": str(bare_project), "prompt": "hi"}).encode()
    hook = [sys.executable, "-I", "-S", str(SHIM), "UserPromptSubmit", src]
    bare = [sys.executable, "-I", "-S", "-c", "pass"]
    h, b = [], []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run(hook, input=payload, env=env, cwd=bare_project, capture_output=True)
        h.append(time.perf_counter() - t)
        b.append(timed(bare, env=env))
    hm, bm = statistics.median(h) * 1000, statistics.median(b) * 1000
    row("hook with nothing to do (median)", hm, bm, "ms", "< 15 ms", hm < 15)


def bench_real(base: Path, rounds: int) -> None:
    pairs = real_pairs(base, rounds)
    ratios = [o / d for d, o in pairs]
    d = statistics.median(p[0] for p in pairs)
    o = statistics.median(p[1] for p in pairs)
    r = statistics.median(ratios)
    print(
        "  5 real agents, ratio per pair: "
        + ", ".join(f"{x:.3f}" for x in ratios)
        + f" (orch {o:.2f} s, shell {d:.2f} s, medians)"
    )
    row("5 real agents, orch parallel + wait (s)", o, d, "s", "within 5 %", r <= 1.05)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--no-real", action="store_true", help="skip the real Claude Code runs")
    parser.add_argument("--rounds", type=int, default=5, help="pairs per figure (default 5)")
    args = parser.parse_args()
    import compileall

    compileall.compile_dir(Path(__file__).resolve().parent.parent / "src", quiet=1)
    print(f"load average at start: {os.getloadavg()[0]:.1f} ({os.cpu_count()} CPUs)")
    with tempfile.TemporaryDirectory(prefix="orch-bench-") as tmp:
        base = Path(tmp)
        stub(base, "claude-stub")
        bench_parallel(base, args.rounds)
        bench_memory(base)
        bench_status(base, max(args.rounds, 10))
        bench_hook(base, max(args.rounds, 20))
        if not args.no_real:
            bench_real(base, args.rounds)
    print(f"load average at end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()

"""What ``--worktree`` adds to a launch, on a repository with 10,000 files; prints, asserts
nothing.

    python benchmarks/bench_worktree.py [--files 10000] [--samples 5]

Side by side: ``orch launch`` of one agent (a stub claude) without and with ``--worktree`` (the
worktree is made before the launch returns: ``git worktree add`` checks out every file), and
``git worktree add`` alone; then the supervisor's end-of-run work (``git add -A``, the commit,
the change summary) in a worktree of that size, with nothing and with one file changed.
Wall time and CPU time (the process and every child it waited for: ``git worktree add`` run by
``orch launch`` counts, the detached supervisor does not); on a loaded machine the CPU figure
is the one that compares.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from bench_core import ORCH, STUB  # the same stub claude (run as benchmarks/bench_worktree.py)


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)


def make_repo(root: Path, files: int) -> Path:
    """A repository of ``files`` small text files in 100 directories, one commit."""
    repo = root / "repo"
    for i in range(files):
        d = repo / f"pkg{i % 100:02d}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"mod{i}.py").write_text(f"# module {i}\nVALUE = {i}\n" + "x = 1\n" * 20)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "config", "user.name", "bench")
    git(repo, "config", "user.email", "bench@example.org")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "files")
    return repo


def ms(samples: list[float]) -> str:
    return f"median {statistics.median(samples) * 1000:7.1f} ms (min {min(samples) * 1000:.1f})"


def children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--samples", type=int, default=5)
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="orch-bench-wt-"))
    try:
        repo = make_repo(base, args.files)
        stub = base / "claude-stub"
        stub.write_text(STUB)
        stub.chmod(0o755)
        env = dict(
            os.environ,
            ORCH_STATE_DIR=str(repo / ".orchestrate"),
            ORCH_CLAUDE_BIN=str(stub),
            ORCH_CONFIG=str(base / "none.toml"),
            ORCH_MAX_PARALLEL="100",
        )
        print(f"repository: {args.files} files, {os.cpu_count()} CPUs")
        plain, worktree, bare = [], [], []
        cpu: dict[str, list[float]] = {"plain": [], "wt": [], "bare": []}
        for i in range(args.samples):
            for name, extra, out in (
                (f"plain{i}", [], plain),
                (f"wt{i}", ["--worktree"], worktree),
            ):
                c, t = children_cpu(), time.perf_counter()
                subprocess.run(
                    [*ORCH, "launch", name, "task", *extra],
                    cwd=repo,
                    env=env,
                    check=True,
                    stdout=subprocess.DEVNULL,
                )
                out.append(time.perf_counter() - t)
                cpu[name.rstrip("0123456789")].append(children_cpu() - c)
            c, t = children_cpu(), time.perf_counter()
            git(repo, "worktree", "add", "-q", "-b", f"bare{i}", str(base / f"bare{i}"), "HEAD")
            bare.append(time.perf_counter() - t)
            cpu["bare"].append(children_cpu() - c)
        subprocess.run([*ORCH, "wait"], cwd=repo, env=env, check=True, stdout=subprocess.DEVNULL)
        print(f"orch launch, in place:          {ms(plain)}; CPU {ms(cpu['plain'])}")
        print(f"orch launch --worktree:         {ms(worktree)}; CPU {ms(cpu['wt'])}")
        added = statistics.median(worktree) - statistics.median(plain)
        added_cpu = statistics.median(cpu["wt"]) - statistics.median(cpu["plain"])
        print(
            f"  --worktree adds:              {added * 1000:7.1f} ms wall, "
            f"{added_cpu * 1000:.1f} ms CPU (median vs median)"
        )
        print(f"git worktree add alone:         {ms(bare)}; CPU {ms(cpu['bare'])}")

        from orch_plugins.supervisor import save_work

        path = base / "bare0"
        spec = {
            "name": "bench",
            "run_id": 1,
            "worktree": {"path": str(path), "base": "HEAD", "branch": "bare0", "task_line": "t"},
        }
        idle, changed = [], []
        for i in range(args.samples):
            t = time.perf_counter()
            save_work(spec)
            idle.append(time.perf_counter() - t)
            (path / "pkg00" / "mod0.py").write_text(f"# changed {i}\n")
            t = time.perf_counter()
            save_work(spec)
            changed.append(time.perf_counter() - t)
        print(f"run end, nothing to commit:     {ms(idle)}")
        print(f"run end, one file committed:    {ms(changed)}")
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()

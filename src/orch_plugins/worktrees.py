"""Agents' git worktrees: planned at launch, made here for agents on this machine, and the way
back to the main checkout: ``orch diff``, ``orch merge``, ``orch discard``, and what
``orch clear`` must keep.

An agent launched with ``--worktree`` (or a role with ``worktree = true``) works in its own
``git worktree`` on its own branch ``orch/NAME``, under ``<state dir>/worktrees/NAME`` unless
``[worktree] dir`` says otherwise. Its supervisor commits what it left uncommitted when the run
ends (:func:`orch_plugins.supervisor.save_work`), so the work is on the branch whatever happens
to the worktree later. Nothing here ever forces: a merge that conflicts is aborted, a branch
holding unmerged work is not deleted without ``--force``.

Why not Claude Code's own ``claude --worktree``: it names the worktree and its branch itself
and puts it under ``.claude/worktrees`` of the checkout, which orch could neither name
(``orch/NAME``), base (``--base``), place (the state directory), nor make on a remote host the
same way; and its clean-up on exit removes a worktree orch must keep until it is merged. See
docs/worktrees.md.

The git plumbing shared with remote hosts (make, commit, summarise) lives in
:mod:`orch_plugins.supervisor`, which is what reaches a host.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orch_plugins.errors import OrchError
from orch_plugins.model import Run
from orch_plugins.store import Store, decode_changes
from orch_plugins.supervisor import (
    GitError,
    change_summary,
    copy_into_worktree,
    git,
    identity_options,
    make_worktree,
    uncommitted,
)

__all__ = [
    "BRANCH_PREFIX",
    "Conflict",
    "GitError",
    "WorktreeSettings",
    "branch_candidates",
    "change_summary",
    "git",
    "plan",
]

#: Every agent branch is ``orch/NAME`` (``orch/NAME-2`` … when the name was used before).
BRANCH_PREFIX = "orch/"
#: Keys of the ``[worktree]`` table of config.toml.
SETTINGS_KEYS = frozenset({"dir", "copy"})
#: A commit message's first line taken from a task: at most this many characters.
TASK_LINE = 72


class Conflict(OrchError):
    """``orch merge`` met a conflict; it was aborted and the checkout is as it was."""


@dataclass(frozen=True)
class WorktreeSettings:
    """The ``[worktree]`` table: ``dir`` (where worktrees go; relative to the repository's top;
    default ``<state dir>/worktrees``) and ``copy`` (glob patterns, relative to the repository's
    top, of files a fresh checkout lacks that agents need: ``.env``, local config)."""

    dir: str | None = None
    copy: tuple[str, ...] = ()

    @classmethod
    def from_table(
        cls, table: Mapping[str, Any] | None, where: str = "[worktree]"
    ) -> WorktreeSettings:
        """Check the table; :class:`OrchError` naming the key for anything unexpected."""
        table = dict(table or {})
        unknown = sorted(set(table) - SETTINGS_KEYS)
        if unknown:
            raise OrchError(f"{where}: unknown key(s) {', '.join(unknown)}; known: dir, copy")
        wdir = table.get("dir")
        if wdir is not None and (not isinstance(wdir, str) or not wdir):
            raise OrchError(f"{where}: dir must be a non-empty string")
        copy = table.get("copy", [])
        if not isinstance(copy, list) or not all(isinstance(c, str) and c for c in copy):
            raise OrchError(f"{where}: copy must be a list of paths or glob patterns")
        for pattern in copy:
            if os.path.isabs(pattern) or os.pardir in Path(pattern).parts:
                raise OrchError(f"{where}: copy entry {pattern!r} must stay inside the repository")
        return cls(wdir, tuple(copy))


@dataclass
class WorktreePlan:
    """What a new run's worktree will be: ``spec`` goes into ``LaunchSpec.worktree`` (the
    supervisor's part), ``fields`` into the run's record, ``cwd`` is the agent's directory
    (None: decided where the worktree is made, on a remote host)."""

    spec: dict[str, Any]
    fields: dict[str, Any] = field(default_factory=dict)
    cwd: str | None = None
    #: Made by this process: removed again if the run is not recorded after all.
    made: bool = False


def branch_stem(name: str) -> str:
    """An agent name as a branch name component: names are already safe for refs but for
    ``..`` and a trailing ``.``/``.lock``, which git refuses."""
    stem = re.sub(r"\.{2,}", ".", name)
    if stem.endswith(".lock"):
        stem = stem[: -len(".lock")] + "-lock"
    return stem.rstrip(".") or "agent"


def branch_candidates(name: str) -> Iterable[str]:
    """``orch/NAME``, ``orch/NAME-2``, ``orch/NAME-3`` …"""
    stem = branch_stem(name)
    yield f"{BRANCH_PREFIX}{stem}"
    for i in range(2, 10_000):
        yield f"{BRANCH_PREFIX}{stem}-{i}"


def repo_top(cwd: str) -> str:
    """The top of the git checkout holding ``cwd``; :class:`OrchError` when it is none."""
    try:
        proc = git(cwd, "rev-parse", "--show-toplevel", check=False)
    except FileNotFoundError:
        raise OrchError("--worktree needs git, which is not installed") from None
    if proc.returncode != 0 or not proc.stdout.strip():
        raise OrchError(
            f"--worktree needs a git repository, and {cwd} is not in one (git init, or launch "
            "without --worktree)"
        )
    return proc.stdout.strip()


def task_line(task: str) -> str:
    """The first non-blank line of a task, shortened for a commit message's subject."""
    for line in task.splitlines():
        line = " ".join(line.split())
        if line:
            return line if len(line) <= TASK_LINE else line[: TASK_LINE - 1] + "…"
    return "work"


def _branch_exists(repo: str, branch: str) -> bool:
    ref = f"refs/heads/{branch}"
    return git(repo, "show-ref", "--verify", "--quiet", ref, check=False).returncode == 0


def _taken_branches(store: Store) -> set[str]:
    rows = store.conn.execute("SELECT DISTINCT branch FROM runs WHERE branch IS NOT NULL")
    return {row[0] for row in rows}


def plan(
    *,
    name: str,
    task: str,
    cwd: str,
    base: str | None,
    store: Store,
    settings: WorktreeSettings,
    here: bool,
    fork_from: Run | None = None,
) -> WorktreePlan:
    """Plan (and with ``here``, make) a new worktree for agent ``name``.

    ``here``: the agent runs on this machine, so the worktree is made now, in the checkout
    holding ``cwd``, from ``base`` (a revision; default ``HEAD``, or the tip of ``fork_from``'s
    branch): errors (not a repository, an unknown base) are one-line :class:`OrchError` before
    anything is recorded. Otherwise (a remote host) the supervisor makes it there; ``base`` is
    resolved in the host's clone. A fork's source transcript is put in the new worktree's
    place by the supervisor (spec ``resume_session``).
    """
    if base is None and fork_from is not None and fork_from["branch"]:
        base = fork_from["branch"]
    taken = _taken_branches(store)
    spec: dict[str, Any] = {
        "task_line": task_line(task),
        "copy": list(settings.copy),
        "create": True,
    }
    if not here:
        branch = next(b for b in branch_candidates(name) if b not in taken)
        spec.update(branch=branch, base=base or "HEAD", base_branch=_ref_branch_name(base))
        return WorktreePlan(spec, {"branch": branch})  # the rest once the host made it
    top = repo_top(cwd)
    root = store.state_dir.resolve() / "worktrees"
    if settings.dir:
        root = Path(settings.dir).expanduser()
    if not root.is_absolute():
        root = Path(top) / root
    for branch in branch_candidates(name):
        path = root / branch[len(BRANCH_PREFIX) :]
        if branch not in taken and not path.exists() and not _branch_exists(top, branch):
            break
    base_branch = _base_branch(top, base)
    try:
        sha = make_worktree(top, str(path), branch, base or "HEAD")
        copy_into_worktree(top, str(path), list(settings.copy))
    except GitError as exc:
        raise OrchError(f"cannot make a worktree for {name!r}: {exc}") from None
    except OSError as exc:
        raise OrchError(f"cannot make a worktree for {name!r} in {path}: {exc}") from None
    rel = os.path.relpath(os.path.realpath(cwd), os.path.realpath(top))
    agent_cwd = str(path if rel == "." else path / rel)
    if not os.path.isdir(agent_cwd):
        agent_cwd = str(path)  # a directory the base revision does not have
    spec.update(repo=top, path=str(path), branch=branch, base=sha, base_branch=base_branch)
    spec["create"] = False
    fields = {"worktree": str(path), "branch": branch, "base": sha, "base_branch": base_branch}
    return WorktreePlan(spec, fields, agent_cwd, made=True)


def continued(run: Run, task: str, settings: WorktreeSettings) -> WorktreePlan | None:
    """A resume's worktree: the source run's own (same path, branch and base); None when the
    source had none."""
    if not run["worktree"] or not run["branch"]:
        return None
    spec = {
        "path": run["worktree"],
        "branch": run["branch"],
        "base": run["base"],
        "base_branch": run["base_branch"],
        "task_line": task_line(task),
        "copy": list(settings.copy),
        "create": False,
    }
    fields = {
        "worktree": run["worktree"],
        "branch": run["branch"],
        "base": run["base"],
        "base_branch": run["base_branch"],
    }
    return WorktreePlan(spec, fields, run["cwd"])


def _ref_branch_name(base: str | None) -> str | None:
    """``--base`` text that names a branch (``main``, ``release/1.2``, ``origin/main``), for
    the record; None for nothing given."""
    if base is None or re.fullmatch(r"[0-9a-f]{7,40}", base) or base.startswith("-"):
        return None
    return base


def _base_branch(repo: str, base: str | None) -> str | None:
    """The branch a worktree's base is: ``--base`` when it names a local branch, else the
    branch checked out at ``repo`` (None for a detached HEAD or a base that is no branch)."""
    if base is not None:
        return base if _branch_exists(repo, base) else None
    proc = git(repo, "symbolic-ref", "--quiet", "--short", "HEAD", check=False)
    return proc.stdout.strip() or None if proc.returncode == 0 else None


def remove_half_made(made: WorktreePlan) -> None:
    """Undo a worktree made for a run that was then not recorded (its name was in use)."""
    if not made.made:
        return
    repo, path, branch = made.spec["repo"], made.spec["path"], made.spec["branch"]
    git(repo, "worktree", "remove", "--force", "--", path, check=False)
    git(repo, "branch", "-D", "--", branch, check=False)


# -- the way back -------------------------------------------------------------------------------


def main_checkout(repo: str) -> str:
    """The main working tree of the repository holding ``repo`` (a worktree or the checkout)."""
    out = git(repo, "worktree", "list", "--porcelain", "-z").stdout
    for entry in out.split("\0"):
        if entry.startswith("worktree "):
            return entry[len("worktree ") :]
    return repo_top(repo)


def _checkout_of(repo: str, branch: str) -> str | None:
    """The worktree that has ``branch`` checked out, if any."""
    path = None
    for entry in git(repo, "worktree", "list", "--porcelain", "-z").stdout.split("\0"):
        if entry.startswith("worktree "):
            path = entry[len("worktree ") :]
        elif entry == f"branch refs/heads/{branch}":
            return path
    return None


def dirty(checkout: str) -> list[str]:
    """Tracked files with uncommitted changes (staged or not) in ``checkout``; untracked files
    do not count (git itself refuses a merge that would overwrite one)."""
    out = git(checkout, "status", "--porcelain", "-z", "--untracked-files=no").stdout
    return [entry[3:] for entry in out.split("\0") if len(entry) > 3]


def merge_in_progress(checkout: str) -> bool:
    for ref in ("MERGE_HEAD", "CHERRY_PICK_HEAD", "REBASE_HEAD"):
        if git(checkout, "rev-parse", "-q", "--verify", ref, check=False).returncode == 0:
            return True
    gitdir = git(checkout, "rev-parse", "--git-dir").stdout.strip()
    base = Path(checkout, gitdir)
    return (base / "rebase-merge").exists() or (base / "rebase-apply").exists()


@dataclass
class MergeResult:
    """What ``orch merge`` did: the checkout and branch merged into, and the new commit
    (``merged`` False: the branch held nothing ``into`` lacks; ``commit`` is ``into``'s tip).
    """

    checkout: str
    into: str
    commit: str
    squash: bool
    branch: str = ""
    merged: bool = True

    def summary(self) -> str:
        """One line for a person: what happened to the branch."""
        if not self.merged:
            return f"nothing to merge: {self.branch} holds no commit that {self.into} lacks"
        how = "squashed" if self.squash else "merged"
        return f"{how} into {self.into} ({self.commit[:12]})"


def merge(
    repo: str,
    branch: str,
    *,
    name: str,
    into: str | None,
    squash: bool,
    message: str | None,
) -> MergeResult:
    """Merge ``branch`` into the main checkout's current branch (or ``into``, merged where it is
    checked out, else in a temporary worktree). Refuses (:class:`OrchError`) a target checkout
    with uncommitted changes, a merge in progress, or a detached HEAD; on a conflict it aborts
    (the checkout is exactly as before) and raises :class:`Conflict` listing the files.
    ``--no-ff``: each agent's work stays one recognisable merge commit."""
    main = main_checkout(repo)
    temp: str | None = None
    if into is None:
        proc = git(main, "symbolic-ref", "--quiet", "--short", "HEAD", check=False)
        if proc.returncode != 0:
            raise OrchError(
                f"the main checkout {main} has a detached HEAD: check out the branch to merge "
                "into, or pass --into BRANCH"
            )
        into, checkout = proc.stdout.strip(), main
    else:
        if not _branch_exists(main, into):
            raise OrchError(f"no branch {into!r} to merge into")
        checkout = _checkout_of(main, into) or ""
    if into == branch:
        raise OrchError(f"cannot merge {branch} into itself")
    if checkout:
        changed = dirty(checkout)
        if changed:
            shown = ", ".join(changed[:5]) + (" …" if len(changed) > 5 else "")
            raise OrchError(
                f"the checkout {checkout} has uncommitted changes ({shown}): commit or stash "
                f"them, then run orch merge {name} again"
            )
        if merge_in_progress(checkout):
            raise OrchError(
                f"the checkout {checkout} is in the middle of a merge, rebase or cherry-pick: "
                "finish or abort it first"
            )
    else:
        import tempfile

        temp = tempfile.mkdtemp(prefix="orch-merge-")
        os.rmdir(temp)
        git(main, "worktree", "add", "--quiet", "--", temp, into)
        checkout = temp
    try:
        return _merge_in(checkout, into, branch, name=name, squash=squash, message=message)
    finally:
        if temp is not None:
            git(main, "worktree", "remove", "--force", "--", temp, check=False)


def _merge_in(
    checkout: str, into: str, branch: str, *, name: str, squash: bool, message: str | None
) -> MergeResult:
    before = git(checkout, "rev-parse", "HEAD").stdout.strip()
    if git(checkout, "merge-base", "--is-ancestor", branch, "HEAD", check=False).returncode == 0:
        # An agent that committed nothing (or work merged before): git would say "Already up
        # to date" and exit 0; say so instead of reporting a merge.
        return MergeResult(checkout, into, before, squash, branch, merged=False)
    ident = identity_options(checkout)
    msg = message or f"orch: merge {name} ({branch})"
    if squash:
        proc = git(checkout, *ident, "merge", "--squash", "--no-verify", "--", branch, check=False)
    else:
        proc = git(
            checkout, *ident, "merge", "--no-ff", "--no-verify", "-m", msg, "--", branch,
            check=False,
        )  # fmt: skip
    if proc.returncode != 0:
        files = git(checkout, "diff", "--name-only", "-z", "--diff-filter=U").stdout.split("\0")
        files = [f for f in files if f]
        # Nothing half-merged stays: abort (a squash has no MERGE_HEAD: reset --merge undoes it).
        if git(checkout, "rev-parse", "-q", "--verify", "MERGE_HEAD", check=False).returncode == 0:
            git(checkout, "merge", "--abort", check=False)
        else:
            git(checkout, "reset", "--merge", check=False)
        if not files:
            said = (proc.stderr or proc.stdout).strip().splitlines()
            raise OrchError(f"git merge {branch} into {into} failed: {said[-1] if said else '-'}")
        listed = "\n".join(f"  {f}" for f in files)
        raise Conflict(
            f"merging {branch} into {into} conflicts in {len(files)} file(s):\n{listed}\n"
            f"the merge was aborted; {checkout} is as it was. Next steps: have the agent "
            f'rebase, e.g. orch resume {name} "rebase on {into} and resolve the conflicts", '
            f"then orch merge {name} again; or orch diff {name} and merge by hand"
        )
    staged = squash and git(checkout, "diff", "--cached", "--quiet", check=False).returncode != 0
    if staged:
        git(checkout, *ident, "commit", "--quiet", "--no-verify", "-F", "-", stdin=msg + "\n")
    after = git(checkout, "rev-parse", "HEAD").stdout.strip()
    return MergeResult(checkout, into, after, squash, branch)


def is_merged(repo: str, run: Run) -> bool:
    """Whether the branch of ``run`` holds no work its base's branch lacks: no commits since
    its base, its tip already in the base branch (or the main checkout's branch), or its tip
    is what ``orch merge`` merged (a squash leaves no ancestry to check)."""
    branch = run["branch"]
    assert branch
    tip_proc = git(repo, "rev-parse", "--verify", "-q", f"refs/heads/{branch}", check=False)
    if tip_proc.returncode != 0:
        return True  # no branch: nothing to lose
    tip = tip_proc.stdout.strip()
    if run["base"] and tip == run["base"]:
        return True
    changes = decode_changes(run["changes"]) or {}
    merged = changes.get("merged")
    if isinstance(merged, dict) and merged.get("tip") == tip:
        return True
    targets = [b for b in (run["base_branch"],) if b]
    main = main_checkout(repo)
    current = git(main, "symbolic-ref", "--quiet", "--short", "HEAD", check=False)
    if current.returncode == 0:
        targets.append(current.stdout.strip())
    for target in targets:
        if git(repo, "merge-base", "--is-ancestor", tip, target, check=False).returncode == 0:
            return True
    return False


def worktree_dirty(path: str, settings: WorktreeSettings) -> bool:
    """Whether the worktree at ``path`` holds uncommitted work (untracked files included,
    files ``[worktree] copy`` put there not)."""
    if not os.path.isdir(path):
        return False
    return uncommitted(path, settings.copy)


def remove(repo: str, path: str | None, branch: str, *, force: bool) -> None:
    """Remove the worktree at ``path`` (when there) and the branch. The caller has checked
    that nothing is lost (or was told ``--force``)."""
    main = main_checkout(repo)  # ``repo`` may be the worktree about to go
    if path and os.path.isdir(path):
        args = ["worktree", "remove", *(["--force"] if force else []), "--", path]
        git(main, *args)
    git(main, "worktree", "prune", check=False)
    if _branch_exists(main, branch):
        git(main, "branch", "-D", "--", branch)


def record_note(store: Store, run: Run, **note: Any) -> None:
    """Add ``merged``/``discarded`` notes to the run's change summary."""
    changes = decode_changes(run["changes"]) or {"branch": run["branch"]}
    changes.update(note)
    store.update(run["run_id"], changes=json.dumps(changes))

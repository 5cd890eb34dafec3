"""What travels to a Ray node: the project as it is at launch, and the run's own files.

Both go as runtime_env packages (zip files stored in the cluster's GCS, as ``ray job submit
--working-dir`` does): the project as the job's ``working_dir`` (named by its content, so agents
launched from the same tree share one upload), the run's files as its ``py_modules`` entry
(:mod:`orch_plugins.backends.ray.node` and ``orch_ray_run/``).
"""

from __future__ import annotations

import fnmatch
import hashlib
import io
import os
import subprocess
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from orch_plugins.errors import OrchError

#: Ray refuses packages of this size and more (its gRPC message limit, 512 MiB).
MAX_PACKAGE = 512 * 1024 * 1024
#: A fixed time for every zip entry: the same tree gives the same bytes, hence the same name.
_EPOCH = (1980, 1, 1, 0, 0, 0)


def project_files(root: Path, state_dir: Path, excludes: Sequence[str] = ()) -> list[str]:
    """The files of the project at ``root`` that an agent sees, as paths relative to it,
    sorted: in a git repository what git would show (tracked and untracked files, ignored ones
    left out, as they are on disk now), elsewhere every file; never ``.git``, the state
    directory, nor what ``excludes`` matches (glob patterns against the relative path or any
    of its parts)."""
    root = root.resolve()
    try:
        state_rel: str | None = str(state_dir.resolve().relative_to(root))
    except ValueError:
        state_rel = None
    listed = _git_files(root)
    if listed is None:
        listed = []
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if d != ".git")
            rel_dir = os.path.relpath(dirpath, root)
            for name in filenames:
                listed.append(os.path.normpath(os.path.join(rel_dir, name)))
    out = []
    for rel in listed:
        parts = rel.split(os.sep)
        if ".git" in parts:
            continue
        if state_rel and (rel == state_rel or rel.startswith(state_rel + os.sep)):
            continue
        if any(
            fnmatch.fnmatch(rel, pat) or any(fnmatch.fnmatch(p, pat) for p in parts)
            for pat in excludes
        ):
            continue
        if os.path.isfile(root / rel):  # tracked but deleted, or a dangling link: not there
            out.append(rel)
    return sorted(set(out))


def _git_files(root: Path) -> list[str] | None:
    try:
        proc = subprocess.run(
            ["git", "-C", str(root), "ls-files", "-z", "--cached", "--others",
             "--exclude-standard", "--", "."],
            capture_output=True,
            timeout=120,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    if proc.returncode != 0:
        return None  # not a repository
    return [
        os.path.normpath(p) for p in proc.stdout.decode("utf-8", "surrogateescape").split("\0") if p
    ]


def zip_entries(entries: Iterable[tuple[str, bytes, int]]) -> tuple[bytes, str]:
    """A zip of ``(name, data, mode)`` entries, with fixed times so equal content gives equal
    bytes, and its Ray package URI ``gcs://_ray_pkg_<sha1>.zip``. ``OrchError`` when it is
    larger than Ray takes."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as zf:
        for name, data, mode in entries:
            info = zipfile.ZipInfo(name, _EPOCH)
            info.external_attr = (mode & 0xFFFF) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, data)
    data = buf.getvalue()
    if len(data) >= MAX_PACKAGE:
        raise OrchError(
            f"the package for Ray is {len(data) / 2**20:.0f} MiB; Ray takes less than 512 MiB: "
            "exclude large files ([backends.ray] excludes, .gitignore)"
        )
    return data, f"gcs://_ray_pkg_{hashlib.sha1(data).hexdigest()}.zip"


def project_package(root: Path, files: Sequence[str]) -> tuple[bytes, str]:
    """The zip of ``files`` under ``root`` and its URI."""

    def entries() -> Iterable[tuple[str, bytes, int]]:
        for rel in files:
            path = root / rel
            try:
                data = path.read_bytes()
                mode = path.stat().st_mode
            except OSError:
                continue  # removed meanwhile
            yield rel.replace(os.sep, "/"), data, mode

    return zip_entries(entries())


def run_package(node_source: bytes, files: Mapping[str, bytes]) -> tuple[bytes, str]:
    """The run's package: the node module as ``orch_ray_node.py`` and ``files`` under
    ``orch_ray_run/``."""
    entries = [("orch_ray_node.py", node_source, 0o100644)]
    entries += [(f"orch_ray_run/{name}", data, 0o100600) for name, data in sorted(files.items())]
    return zip_entries(entries)


def base_bundle(repo: str, base: str) -> tuple[bytes, str, str]:
    """A git bundle of commit ``base`` (with its history) in ``repo``, the commit's id and the
    ref that names it in the bundle: what a node needs to make the agent's worktree."""
    import tempfile

    from orch_plugins.supervisor import GitError, git

    try:
        sha = git(repo, "rev-parse", "--verify", f"{base}^{{commit}}").stdout.strip()
    except GitError as exc:
        raise OrchError(f"cannot use {base!r} as the worktree's base: {exc}") from None
    ref = f"refs/orch/ray-{os.getpid()}-{sha[:12]}"
    with tempfile.TemporaryDirectory(prefix="orch-ray-") as tmp:
        out = os.path.join(tmp, "base.bundle")
        try:
            git(repo, "update-ref", ref, sha)
            git(repo, "bundle", "create", "--quiet", out, ref)
            data = Path(out).read_bytes()
        except GitError as exc:
            raise OrchError(f"cannot bundle the worktree's base for Ray: {exc}") from None
        finally:
            git(repo, "update-ref", "-d", ref, check=False)
    return data, sha, ref

#!/usr/bin/env python3
"""Install orch-plugins from this clone with nothing but python3.

    python3 install.py                  # venv under the user data dir + this project's .claude/
    python3 install.py --user           # ... and the user's ~/.claude/ instead
    python3 install.py --current-env    # pip install into this interpreter's environment
    python3 install.py --uninstall      # remove the commands, hooks and settings entries again
    python3 install.py --uninstall --purge   # ... and the virtual environment too
    python3 install.py --dry-run        # print what would change

Steps: create a virtual environment (default: ``<user data dir>/orch-plugins/venv``, e.g.
``~/.local/share/orch-plugins/venv``), ``pip install`` this clone into it, then run the one
installer implementation, ``python -m orch_plugins.install``, with that environment's
interpreter, so the hooks call it by absolute path; ``orch install`` runs the same code. The
venv's ``orch`` is linked into ``~/.local/bin`` (``--bin-dir``), as pipx does.
Standard library only.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path
from types import ModuleType

HERE = Path(__file__).resolve().parent
MIN_PYTHON = (3, 10)
#: Not needed to build the package; copying them into the build directory only costs time.
_SKIP = shutil.ignore_patterns(
    ".git", ".orchestrate", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".*_cache"
)


def user_data_dir() -> Path:
    """The user data directory (``~/.local/share/orch-plugins`` on Linux), as the installer
    module computes it: this clone's ``src/`` needs nothing but the standard library."""
    return _installer().user_data_dir()


def _installer() -> ModuleType:
    """``orch_plugins.install``, imported from this clone's source."""
    sys.path.insert(0, str(HERE / "src"))
    from orch_plugins import install

    return install


def venv_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python3")


def run(cmd: list[str], *, dry_run: bool) -> None:
    print("$ " + " ".join(cmd), flush=True)
    if not dry_run:
        subprocess.run(cmd, check=True)


def pip_install(python: str, *, editable: bool, dry_run: bool) -> None:
    """Install this clone. A regular install builds from a scratch copy, so the clone gets
    no ``build/`` or ``*.egg-info`` left behind."""
    # With the mcp extra: the project install registers `orch mcp` in .mcp.json.
    if editable:
        run([python, "-m", "pip", "install", "--quiet", "-e", f"{HERE}[mcp]"], dry_run=dry_run)
        return
    if dry_run:
        run([python, "-m", "pip", "install", "--quiet", f"{HERE}[mcp]"], dry_run=True)
        return
    with tempfile.TemporaryDirectory(prefix="orch-plugins-build-") as tmp:
        src = Path(tmp) / "src"
        shutil.copytree(HERE, src, ignore=_SKIP)
        run([python, "-m", "pip", "install", "--quiet", f"{src}[mcp]"], dry_run=False)


def predicted_package_dir(venv: Path) -> str:
    """Where pip will put the package in a venv that does not exist yet (for --dry-run)."""
    return sysconfig.get_path("purelib", vars={"base": str(venv), "platbase": str(venv)})


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="install.py",
        description="Install orch-plugins and its Claude Code slash commands and hooks.",
    )
    env = parser.add_mutually_exclusive_group()
    env.add_argument(
        "--venv",
        metavar="DIR",
        help=f"virtual environment to create or reuse (default: {user_data_dir() / 'venv'})",
    )
    env.add_argument(
        "--current-env",
        action="store_true",
        help="pip install into the environment of the python running this script",
    )
    parser.add_argument(
        "--editable", action="store_true", help="pip install -e (for working on orch-plugins)"
    )
    parser.add_argument(
        "--package-only",
        action="store_true",
        help="install the package (the orch command) only, e.g. for the Claude Code plugin form",
    )
    parser.add_argument(
        "--bin-dir",
        metavar="DIR",
        default=str(Path.home() / ".local" / "bin"),
        help="where to link the venv's orch command (default: ~/.local/bin; '' for no link)",
    )
    parser.add_argument(
        "--purge",
        action="store_true",
        help="with --uninstall: also delete the virtual environment and the orch link",
    )
    _installer().add_arguments(parser)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    if sys.version_info < MIN_PYTHON:
        print(
            f"install.py: orch-plugins needs Python {'.'.join(map(str, MIN_PYTHON))}+",
            file=sys.stderr,
        )
        return 1
    args = parse_args(argv)
    if args.current_env:
        python = os.path.abspath(sys.executable)
        venv = None
    else:
        venv = Path(args.venv).expanduser().resolve() if args.venv else user_data_dir() / "venv"
        python = str(venv_python(venv))
    forwarded = []
    if args.user:
        forwarded.append("--user")
    elif args.project:
        forwarded += ["--project", str(Path(args.project).expanduser().resolve())]
    for flag in ("uninstall", "dry_run", "force"):
        if getattr(args, flag):
            forwarded.append("--" + flag.replace("_", "-"))

    bin_dir = Path(args.bin_dir).expanduser() if args.bin_dir and venv is not None else None
    if args.uninstall:
        if args.purge and venv is not None and not purge_allowed(venv, args):
            return 1
        # The manifest says what to remove; this clone's code can do it without the venv.
        rc = 0 if args.package_only else in_process(forwarded)
        if args.purge and venv is not None:
            purge(venv, bin_dir, dry_run=args.dry_run)
        elif venv is not None and venv.exists():
            print(f"the package stays in {venv}; --uninstall --purge removes it and its link")
        return rc
    try:
        if venv is not None and not Path(python).exists():
            run([sys.executable, "-m", "venv", str(venv)], dry_run=args.dry_run)
        pip_install(python, editable=args.editable, dry_run=args.dry_run)
    except subprocess.CalledProcessError as exc:
        cmd = " ".join(map(str, exc.cmd))
        print(f"install.py: {cmd} failed with exit status {exc.returncode}", file=sys.stderr)
        return 1
    if bin_dir is not None and venv is not None:
        link_orch(venv, bin_dir, dry_run=args.dry_run)
    if args.package_only:
        if not args.dry_run:
            print(f"installed orch-plugins for {python}")
        return 0
    if args.dry_run:
        # Plan with this clone's code and the paths the install would use.
        if args.editable:
            package_dir = str(HERE / "src")
        elif venv is not None:
            package_dir = predicted_package_dir(venv)
        else:
            package_dir = sysconfig.get_path("purelib")
        return in_process([*forwarded, "--python", python, "--package-dir", package_dir])
    return subprocess.run([python, "-m", "orch_plugins.install", *forwarded]).returncode


def venv_orch(venv: Path) -> Path:
    return venv / ("Scripts/orch.exe" if os.name == "nt" else "bin/orch")


def link_orch(venv: Path, bin_dir: Path, *, dry_run: bool) -> None:
    """Put ``orch`` on the user's PATH the way pipx does: a symlink in ~/.local/bin.

    A file of that name that is not a symlink belongs to someone else and stays.
    """
    if os.name == "nt":
        print(f"add {venv_orch(venv).parent} to PATH to run orch")
        return
    link = bin_dir / "orch"
    if link.exists() and not link.is_symlink():
        print(
            f"install.py: {link} exists and is not a link; left alone (orch is {venv_orch(venv)})"
        )
        return
    if link.is_symlink() and Path(os.readlink(link)) == venv_orch(venv):
        pass
    elif dry_run:
        print(f"would link {link} -> {venv_orch(venv)}")
    else:
        bin_dir.mkdir(parents=True, exist_ok=True)
        tmp = bin_dir / f".orch.{os.getpid()}.tmp"
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(venv_orch(venv))
        os.replace(tmp, link)
        print(f"linked {link} -> {venv_orch(venv)}")
    if str(bin_dir) not in os.environ.get("PATH", "").split(os.pathsep):
        print(f"note: {bin_dir} is not on your PATH; add it to run orch from your shell")


def purge_allowed(venv: Path, args: argparse.Namespace) -> bool:
    """False, with the reason on stderr, while installs other than the one being removed run
    hooks from ``venv``: deleting it would leave their hooks and ``orch`` pointing at nothing."""
    install = _installer()
    try:
        this = None if args.package_only else install.target_from_args(args).claude_dir
    except install.OrchError:
        this = None
    others = [t for t in install.installs_using(venv) if t.claude_dir != this]
    if not others:
        return True
    where = ", ".join(str(t.project_dir or t.claude_dir) for t in others)
    print(
        f"install.py: error: not purging {venv}: the hooks of {len(others)} other "
        f"install(s) still run from it: {where}. Uninstall there first "
        "(python3 install.py --uninstall --project DIR, or --user), or leave out --purge. "
        "Nothing was changed.",
        file=sys.stderr,
    )
    return False


def purge(venv: Path, bin_dir: Path | None, *, dry_run: bool) -> None:
    """Delete the virtual environment and our link to its orch."""
    link = bin_dir / "orch" if bin_dir else None
    if link is not None and link.is_symlink() and Path(os.readlink(link)) == venv_orch(venv):
        print(f"{'would remove' if dry_run else 'removed'} {link}")
        if not dry_run:
            link.unlink()
    if venv.exists():
        print(f"{'would remove' if dry_run else 'removed'} {venv}")
        if not dry_run:
            shutil.rmtree(venv)


def in_process(forwarded: list[str]) -> int:
    """Run the installer from this clone's source with this interpreter."""
    return _installer().main(forwarded)


if __name__ == "__main__":
    sys.exit(main())

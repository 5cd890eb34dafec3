"""The installer of the Claude Code face: slash commands, hook shims, settings.json hooks.

One implementation behind both ``python3 install.py`` (the bootstrap at the repository root)
and ``orch install``. Standard library only, so the bootstrap can run it from a source tree
before anything is installed (``--dry-run``, ``--uninstall`` without the virtual environment).

What an install adds to a project's ``.claude/`` (or the user's ``~/.claude/``):

* ``commands/orchestrate.md`` and ``commands/orchestrate/*.md`` (``/orchestrate``,
  ``/orchestrate:status`` …) and ``hooks/orch-hook.sh`` + ``hooks/orch_hook.py``, copied from
  ``claude/``;
* in ``settings.json``: one hook group per event in :data:`HOOK_EVENTS`, whose command runs the
  ``sh`` shim with the installed interpreter's absolute path (it runs it with ``-I -S``: no PATH,
  shims or site start-up, and exits 0 quietly once that interpreter is gone), and the
  permission :data:`PERMISSION` so the orchestrator runs ``orch`` without prompts;
* ``orch-plugins.json``, the manifest of exactly what was added, so ``--uninstall`` removes
  that and nothing else (a pre-existing ``Bash(orch:*)`` permission stays, a command file the
  user edited since stays, the original ``settings.json`` text comes back byte for byte when
  nothing else changed in it);
* for a project install, the state directory ``.orchestrate/``: hooks record only where one
  exists, so a user-level install does not litter every directory a session opens.

Every rewrite of an existing file first copies it to :func:`backup_path` (one backup per file,
under the user data directory, the latest replacing the previous one). ``settings.json`` is
written through a symlink to its target, keeps its BOM and line endings, and is re-read just
before it is replaced: a change someone saved after the installer read it makes the installer
plan again (:data:`ATTEMPTS` times) instead of losing it. A ``settings.json`` that is not valid
JSON is refused before anything is touched.

Each install is recorded in :func:`registry_path`, so ``install.py --uninstall --purge`` can
refuse to delete an environment other projects' hooks still run (:func:`installs_using`).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import difflib
import hashlib
import json
import os
import shlex
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orch_plugins.errors import OrchError

APP = "orch-plugins"
HOOK_EVENTS = ("SessionStart", "UserPromptSubmit", "Stop", "SessionEnd")
#: What a hook command runs: the ``sh`` shim, which runs the Python shim beside it.
HOOK_SHIM = "orch-hook.sh"
HOOK_PY_SHIM = "orch_hook.py"
#: The hook files a settings.json install copies (``hooks.json`` is the plugin form's).
HOOK_FILES = (HOOK_SHIM, HOOK_PY_SHIM)
HOOK_TIMEOUT = 10
PERMISSION = "Bash(orch:*)"
#: The MCP server a project install registers (``.mcp.json``), and what lets its tools run.
MCP_SERVER = "orch"
MCP_NAME = ".mcp.json"
MCP_PERMISSION = f"mcp__{MCP_SERVER}__*"
#: Where settings.json approves servers of ``.mcp.json`` for interactive sessions.
MCP_APPROVAL_KEY = "enabledMcpjsonServers"
MANIFEST_NAME = "orch-plugins.json"
SETTINGS_NAME = "settings.json"
STATE_DIR_NAME = ".orchestrate"
MANIFEST_VERSION = 1
#: How often an install or uninstall plans again when settings.json changed under it.
ATTEMPTS = 3
BOM = "\ufeff"


class SettingsChanged(OrchError):
    """settings.json changed between the installer's read and its write."""


def user_data_dir() -> Path:
    """``platformdirs.user_data_dir("orch-plugins")``, recomputed with the standard library
    (``install.py`` runs this module before anything is installed)."""
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / APP
    if os.name == "nt":
        base = os.environ.get("LOCALAPPDATA") or str(Path.home() / "AppData" / "Local")
        return Path(base) / APP / APP
    return Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / APP


def registry_path() -> Path:
    """``<user data dir>/installs.json``: every install's ``.claude`` directory and interpreter."""
    return user_data_dir() / "installs.json"


def backup_path(path: Path) -> Path:
    """Where the backup of ``path`` goes: ``<user data dir>/backups/`` + its absolute path
    (``~/.local/share/orch-plugins/backups/home/me/proj/.claude/settings.json``). One per
    file: each backup replaces the previous one."""
    path = Path(os.path.abspath(path))
    drive = path.drive.replace(":", "").strip("\\/")
    return user_data_dir() / "backups" / Path(drive, *path.parts[1:])


# -- where things are -------------------------------------------------------------------------


def source_root() -> Path:
    """The directory holding ``claude/`` (and ``.claude-plugin/``): the source tree when run
    from one (editable install, bootstrap), else the copy a wheel put under ``share/``."""
    here = Path(__file__).resolve().parent
    candidates = [here.parent.parent]
    import sysconfig

    for base in (sysconfig.get_path("data"), sys.prefix, getattr(sys, "base_prefix", None)):
        if base:
            candidates.append(Path(base) / "share" / "orch-plugins")
    try:
        import site

        candidates.append(Path(site.getuserbase()) / "share" / "orch-plugins")
    except Exception:  # pragma: no cover - site disabled
        pass
    for root in candidates:
        if (root / "claude" / "commands" / "orchestrate.md").is_file():
            return root
    raise OrchError(
        "cannot find the slash commands and hooks (claude/commands, claude/hooks); looked in "
        + ", ".join(str(c) for c in candidates)
    )


def package_parent() -> Path:
    """The directory holding the ``orch_plugins`` package (site-packages, or ``src``)."""
    return Path(__file__).resolve().parent.parent


def default_python() -> str:
    """This interpreter, by absolute path but not resolved: resolving a venv's ``python``
    symlink would escape the venv."""
    return os.path.abspath(sys.executable)


@dataclass(frozen=True)
class Target:
    """Where to install: a project's ``.claude/`` or the user's ``~/.claude/``."""

    scope: str  # "project" | "user"
    claude_dir: Path
    project_dir: Path | None = None

    @property
    def settings_path(self) -> Path:
        return self.claude_dir / SETTINGS_NAME

    @property
    def manifest_path(self) -> Path:
        return self.claude_dir / MANIFEST_NAME

    @property
    def state_dir(self) -> Path | None:
        return self.project_dir / STATE_DIR_NAME if self.project_dir else None

    def shim_reference(self) -> str:
        """The hook script as the hook command names it: through ``$CLAUDE_PROJECT_DIR`` for a
        project (the project may move; Claude Code sets it), by absolute path for the user."""
        if self.scope == "project":
            return f'"$CLAUDE_PROJECT_DIR"/.claude/hooks/{HOOK_SHIM}'
        return shlex.quote(str(self.claude_dir / "hooks" / HOOK_SHIM))

    def show(self, path: Path) -> str:
        base = self.project_dir if self.project_dir else self.claude_dir.parent
        try:
            return str(path.relative_to(base))
        except ValueError:
            return str(path)


def project_target(project: str | Path | None = None) -> Target:
    if project is None:
        from orch_plugins.store import find_project_dir

        root = find_project_dir()
    else:
        root = Path(project).expanduser().resolve()
        if not root.is_dir():
            raise OrchError(f"project directory {str(root)!r} does not exist")
    return Target("project", root / ".claude", root)


def user_target(home: str | Path | None = None) -> Target:
    return Target("user", Path(home or Path.home()).expanduser().resolve() / ".claude")


def hook_command(target: Target, event: str, python: str, package_dir: str | Path) -> str:
    """The shell command Claude Code runs for one event (through ``sh -c``): the ``sh`` shim,
    which exits 0 quietly when ``python`` is gone."""
    return " ".join(
        ["sh", target.shim_reference(), event, shlex.quote(python), shlex.quote(str(package_dir))]
    )


def is_our_hook(entry: Any) -> bool:
    """Our hook entries are the ones running our shims (this version's ``sh`` shim, or the
    Python shim earlier versions ran directly); nothing else is ever touched."""
    command = str(entry.get("command", "")) if isinstance(entry, dict) else ""
    return HOOK_SHIM in command or HOOK_PY_SHIM in command


def source_files(root: Path) -> dict[str, bytes]:
    """``{path relative to .claude/: content}`` of everything an install copies."""
    files: dict[str, bytes] = {}
    commands = root / "claude" / "commands"
    for path in sorted(commands.rglob("*.md")):
        files[str(Path("commands") / path.relative_to(commands))] = path.read_bytes()
    for name in HOOK_FILES:
        files[f"hooks/{name}"] = (root / "claude" / "hooks" / name).read_bytes()
    return files


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# -- settings.json ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    """``settings.json`` as read (through a symlink): its bytes, text and data, and the style
    a rewrite keeps (a UTF-8 BOM, CRLF line endings, the indentation)."""

    raw: bytes | None  # None: the file does not exist
    text: str | None  # decoded, without the BOM, line endings as in the file
    data: dict[str, Any]
    bom: bool = False
    newline: str = "\n"

    def render(self, data: dict[str, Any]) -> bytes:
        """``data`` as this file's bytes would hold it."""
        text = json.dumps(data, indent=_indent_of(self.text), ensure_ascii=False) + "\n"
        return self.encode(text)

    def encode(self, text: str) -> bytes:
        """``text`` (``\\n`` line endings) with this file's BOM and line endings."""
        if self.newline != "\n":
            text = text.replace("\r\n", "\n").replace("\n", self.newline)
        return ((BOM if self.bom else "") + text).encode("utf-8")


def read_settings(path: Path) -> Settings:
    """The file as it is now; refuses what we cannot merge safely (:class:`OrchError`)."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return Settings(None, None, {})
    except OSError as exc:
        raise OrchError(f"cannot read {path}: {exc}; nothing was changed") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise OrchError(f"cannot read {path}: {exc}; nothing was changed") from None
    bom = text.startswith(BOM)
    text = text.removeprefix(BOM)
    newline = "\r\n" if "\r\n" in text else "\n"
    if not text.strip():
        return Settings(raw, text, {}, bom, newline)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise OrchError(
            f"{path} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}); "
            "fix it or move it aside, then run the installer again. Nothing was changed."
        ) from None
    problem = _shape_problem(data)
    if problem:
        raise OrchError(f"{path}: {problem}; nothing was changed")
    return Settings(raw, text, data, bom, newline)


def _shape_problem(data: Any) -> str | None:
    if not isinstance(data, dict):
        return "the top level is not a JSON object"
    hooks = data.get("hooks", {})
    if not isinstance(hooks, dict):
        return '"hooks" is not an object'
    for event, groups in hooks.items():
        if not isinstance(groups, list):
            return f'"hooks.{event}" is not a list'
        for group in groups:
            if not isinstance(group, dict) or not isinstance(group.get("hooks", []), list):
                return f'"hooks.{event}" holds an entry that is not a hook group'
    perms = data.get("permissions", {})
    if not isinstance(perms, dict):
        return '"permissions" is not an object'
    if not isinstance(perms.get("allow", []), list):
        return '"permissions.allow" is not a list'
    return None


def _strip_ours(groups: list[Any]) -> list[Any]:
    """The hook groups without our entries; a group left empty by that is dropped."""
    out = []
    for group in groups:
        inner = group.get("hooks", [])
        kept = [h for h in inner if not is_our_hook(h)]
        if len(kept) == len(inner):
            out.append(group)
        elif kept:
            out.append({**group, "hooks": kept})
    return out


def merge_settings(
    data: dict[str, Any],
    commands: dict[str, str],
    permission: str | None,
    *,
    extra_permissions: tuple[str, ...] = (),
    approve_server: str | None = None,
) -> tuple[dict[str, Any], list[str]]:
    """Settings with our hooks (and permissions; ``approve_server`` added to
    :data:`MCP_APPROVAL_KEY`) in; everything else untouched. Returns the new data and what
    changed, in words. Our existing entries stay in place when already right."""
    new = copy.deepcopy(data)
    notes: list[str] = []
    hooks = new.setdefault("hooks", {})
    for event, command in commands.items():
        groups = hooks.get(event, [])
        wanted = {"hooks": [{"type": "command", "command": command, "timeout": HOOK_TIMEOUT}]}
        ours = [h for g in groups for h in g.get("hooks", []) if is_our_hook(h)]
        if ours == wanted["hooks"] and wanted in groups:
            continue
        hooks[event] = [*_strip_ours(groups), wanted]
        notes.append(f"{'replace' if ours else 'add'} hook {event}")
    if not hooks and "hooks" not in data:
        del new["hooks"]
    for one in [permission, *extra_permissions] if permission else extra_permissions:
        allow = new.setdefault("permissions", {}).setdefault("allow", [])
        if one not in allow:
            allow.append(one)
            notes.append(f"allow {one}")
    if approve_server:
        approved = new.setdefault(MCP_APPROVAL_KEY, [])
        if approve_server not in approved:
            approved.append(approve_server)
            notes.append(f"approve MCP server {approve_server}")
    return new, notes


def unmerge_settings(
    data: dict[str, Any],
    permissions: list[str],
    original: dict[str, Any] | None,
    *,
    approved: str | None = None,
) -> tuple[dict[str, Any], list[str]]:
    """Settings with our hooks, the permissions we added and the server approval we added
    (``approved``) taken out; containers we created and left empty go too (judged against the
    original when the manifest kept it)."""
    new = copy.deepcopy(data)
    notes: list[str] = []
    servers = new.get(MCP_APPROVAL_KEY)
    if approved and isinstance(servers, list) and approved in servers:
        servers.remove(approved)
        notes.append(f"remove MCP server approval {approved}")
        if not servers and (original is None or MCP_APPROVAL_KEY not in original):
            del new[MCP_APPROVAL_KEY]
    hooks = new.get("hooks")
    if isinstance(hooks, dict):
        for event in list(hooks):
            groups = hooks[event]
            stripped = _strip_ours(groups)
            if stripped != groups:
                notes.append(f"remove hook {event}")
                had_event = original is None or event in original.get("hooks", {})
                if stripped or had_event:
                    hooks[event] = stripped
                else:
                    del hooks[event]
        if not hooks and (original is None or "hooks" not in original):
            del new["hooks"]
    perms = new.get("permissions")
    if isinstance(perms, dict) and isinstance(perms.get("allow"), list):
        for permission in permissions:
            if permission in perms["allow"]:
                perms["allow"].remove(permission)
                notes.append(f"remove permission {permission}")
        orig_perms = (original or {}).get("permissions")
        if not perms["allow"] and (original is None or "allow" not in (orig_perms or {})):
            del perms["allow"]
        if not perms and (original is None or orig_perms is None):
            del new["permissions"]
    return new, notes


def _indent_of(text: str | None) -> int | str:
    """Keep the file's indentation style when rewriting it."""
    for line in (text or "").splitlines()[1:]:
        stripped = line.lstrip(" \t")
        if stripped and len(stripped) < len(line):
            lead = line[: len(line) - len(stripped)]
            return "\t" if lead.startswith("\t") else len(lead)
    return 2


# -- plans ------------------------------------------------------------------------------------


@dataclass
class Plan:
    """Everything an install or uninstall would do, computed before anything is touched."""

    target: Target
    writes: dict[Path, bytes] = field(default_factory=dict)
    removes: list[Path] = field(default_factory=list)
    rmdirs: list[Path] = field(default_factory=list)
    mkdirs: list[Path] = field(default_factory=list)
    #: Existing files whose content is replaced or deleted: they get a backup first.
    backups: list[Path] = field(default_factory=list)
    create_state_dir: bool = False
    remove_state_dir: bool = False
    lines: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    settings_diff: str = ""
    #: settings.json as the plan read it: apply replaces it only if it still reads the same.
    settings: Settings | None = None

    @property
    def empty(self) -> bool:
        return not (
            self.writes
            or self.removes
            or self.rmdirs
            or self.mkdirs
            or self.create_state_dir
            or self.remove_state_dir
        )


def load_manifest(target: Target) -> dict[str, Any] | None:
    try:
        data = json.loads(target.manifest_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise OrchError(f"cannot read {target.manifest_path}: {exc}") from None
    return data if isinstance(data, dict) else None


def _missing_dirs(path: Path, stop: Path) -> list[Path]:
    """Directories from ``stop`` down to ``path`` that do not exist yet, outermost first."""
    out = []
    for parent in [path, *path.parents]:
        if parent.exists():
            break
        out.append(parent)
        if parent == stop.parent:
            break
    return list(reversed(out))


def plan_install(
    target: Target,
    *,
    python: str | None = None,
    package_dir: str | Path | None = None,
    force: bool = False,
    root: Path | None = None,
) -> Plan:
    """What installing into ``target`` would change. Raises :class:`OrchError` (before
    anything is written) for invalid settings or for files of the user's it would replace."""
    python = python or default_python()
    package_dir = package_dir or package_parent()
    root = root or source_root()
    plan = Plan(target)
    manifest = load_manifest(target) or {}
    old_files: dict[str, str] = manifest.get("files", {})
    claude_dir = target.claude_dir

    # Settings first: an invalid file must stop us before any other change.
    settings = plan.settings = read_settings(target.settings_path)
    text, data = settings.text, settings.data
    original = None if settings.raw is None else settings.raw.decode("utf-8")
    commands = {e: hook_command(target, e, python, package_dir) for e in HOOK_EVENTS}
    project = target.scope == "project"
    merged, notes = merge_settings(
        data,
        commands,
        PERMISSION,
        extra_permissions=(MCP_PERMISSION,) if project else (),
        approve_server=MCP_SERVER if project else None,
    )
    added = {p for p in (PERMISSION, MCP_PERMISSION) if f"allow {p}" in notes}
    approved = f"approve MCP server {MCP_SERVER}" in notes
    mcp_state = plan_mcp_install(plan, target, python, manifest, force) if project else {}

    files = source_files(root)
    conflicts = []
    dirs: set[Path] = set()
    for rel, content in files.items():
        path = claude_dir / rel
        try:
            current = path.read_bytes()
        except FileNotFoundError:
            current = None
        if current == content:
            continue
        if current is not None:
            ours = old_files.get(rel) == _digest(current)
            if not ours and not force:
                conflicts.append(target.show(path))
                continue
            if not ours:
                plan.backups.append(path)
        for d in _missing_dirs(path.parent, claude_dir):
            dirs.add(d)
        plan.writes[path] = content
        plan.lines.append(f"{'create' if current is None else 'update'}  {target.show(path)}")
    if conflicts:
        raise OrchError(
            "these files exist and were not installed by orch-plugins: "
            + ", ".join(conflicts)
            + "; move them aside or pass --force (a backup of each is kept). Nothing was changed."
        )

    settings_changed = merged != data or text is None
    if settings_changed:
        new_raw = settings.render(merged)
        for d in _missing_dirs(target.settings_path.parent, claude_dir):
            dirs.add(d)
        plan.writes[target.settings_path] = new_raw
        if text is not None:
            plan.backups.append(target.settings_path)
        verb = "create" if text is None else "update"
        plan.lines.append(f"{verb}  {target.show(target.settings_path)}: {', '.join(notes)}")
        plan.settings_diff = _settings_diff(target, settings.raw, new_raw, "after install")

    if target.state_dir is not None and not target.state_dir.exists():
        plan.create_state_dir = True
        plan.lines.append(f"create  {target.show(target.state_dir)}/ (state directory)")

    plan.mkdirs = sorted(dirs, key=lambda p: len(p.parts))
    new_manifest = {
        "version": MANIFEST_VERSION,
        "scope": target.scope,
        "files": {rel: _digest(content) for rel, content in files.items()},
        "dirs": sorted(
            set(manifest.get("dirs", []))
            | {str(d.relative_to(claude_dir.parent)) for d in plan.mkdirs}
        ),
        "permissions": sorted(set(manifest.get("permissions", [])) | added),
        "mcp_approved": bool(manifest.get("mcp_approved")) or approved,
        **mcp_state,
        # Exactly as it was (BOM and line endings included): uninstall writes it back.
        "settings_original": manifest.get("settings_original", original) if manifest else original,
        "settings_created": manifest.get("settings_created", text is None)
        if manifest
        else text is None,
        "state_dir_created": bool(manifest.get("state_dir_created")) or plan.create_state_dir,
        "python": python,
    }
    if new_manifest != manifest:
        plan.writes[target.manifest_path] = (
            json.dumps(new_manifest, indent=2, ensure_ascii=False) + "\n"
        ).encode("utf-8")
        if not manifest:
            plan.lines.append(f"create  {target.show(target.manifest_path)} (install manifest)")
    return plan


def plan_uninstall(target: Target) -> Plan:
    """What removing our commands, hooks, permission and manifest from ``target`` would do."""
    plan = Plan(target)
    manifest = load_manifest(target)
    claude_dir = target.claude_dir
    settings = plan.settings = read_settings(target.settings_path)
    data = settings.data
    original_text = manifest.get("settings_original") if manifest else None
    original: dict[str, Any] | None = None
    if manifest is not None:
        original = {}
        if original_text and original_text.strip():
            try:
                original = json.loads(original_text.removeprefix(BOM))
            except ValueError:
                original = None
    permissions = list(manifest.get("permissions", [])) if manifest else []
    approved = MCP_SERVER if manifest and manifest.get("mcp_approved") else None
    new, notes = unmerge_settings(data, permissions, original, approved=approved)
    if manifest and manifest.get("mcp_server"):
        plan_mcp_uninstall(plan, target, manifest)
    if notes:
        if manifest and manifest.get("settings_created") and not new:
            # We created it and nothing but ours is in it: no backup of our own file.
            plan.removes.append(target.settings_path)
            plan.lines.append(f"remove  {target.show(target.settings_path)}: {', '.join(notes)}")
        else:
            plan.backups.append(target.settings_path)
            if original is not None and new == original and original_text is not None:
                new_raw = original_text.encode("utf-8")  # byte for byte what was there before
            else:
                new_raw = settings.render(new)
            plan.writes[target.settings_path] = new_raw
            plan.lines.append(f"update  {target.show(target.settings_path)}: {', '.join(notes)}")
            plan.settings_diff = _settings_diff(target, settings.raw, new_raw, "after uninstall")

    if manifest is None:
        # Without a manifest only our hooks are recognisable; our files are those matching
        # what this version would install.
        try:
            expected = {rel: _digest(c) for rel, c in source_files(source_root()).items()}
        except OrchError:
            expected = {}
    else:
        expected = manifest.get("files", {})
    for rel, digest in sorted(expected.items()):
        path = claude_dir / rel
        try:
            current = path.read_bytes()
        except FileNotFoundError:
            continue
        if _digest(current) == digest:
            plan.removes.append(path)
            plan.lines.append(f"remove  {target.show(path)}")
        else:
            plan.notes.append(f"kept {target.show(path)}: changed since it was installed")
    if manifest is not None:
        plan.removes.append(target.manifest_path)
        plan.lines.append(f"remove  {target.show(target.manifest_path)}")
        for rel in sorted(manifest.get("dirs", []), key=lambda p: -len(Path(p).parts)):
            plan.rmdirs.append(claude_dir.parent / rel)
        if manifest.get("state_dir_created") and target.state_dir is not None:
            if _state_dir_unused(target.state_dir):
                plan.remove_state_dir = True
                plan.lines.append(f"remove  {target.show(target.state_dir)}/ (no agents in it)")
            elif target.state_dir.exists():
                plan.notes.append(
                    f"kept {target.show(target.state_dir)}/: it holds agent runs (delete it "
                    "yourself when you no longer need them)"
                )
    return plan


# -- .mcp.json ----------------------------------------------------------------------------------


def mcp_entry(python: str) -> dict[str, Any]:
    """Our server's entry in ``.mcp.json``: ``orch mcp`` run by the installed interpreter."""
    return {"command": python, "args": ["-m", "orch_plugins.cli", "mcp"]}


def _read_mcp(path: Path) -> tuple[bytes | None, dict[str, Any]]:
    """``.mcp.json`` as ``(raw bytes or None, data)``; :class:`OrchError` when it is not a JSON
    object with an object ``mcpServers``."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None, {}
    except OSError as exc:
        raise OrchError(f"cannot read {path}: {exc}; nothing was changed") from None
    try:
        text = raw.decode("utf-8").removeprefix(BOM)
        data = json.loads(text) if text.strip() else {}
    except (UnicodeDecodeError, ValueError) as exc:
        raise OrchError(
            f"{path} is not valid JSON ({exc}); fix it or move it aside, then run the "
            "installer again. Nothing was changed."
        ) from None
    if not isinstance(data, dict) or not isinstance(data.get("mcpServers", {}), dict):
        raise OrchError(f'{path}: "mcpServers" is not an object; nothing was changed')
    return raw, data


def _render_mcp(data: dict[str, Any]) -> bytes:
    return (json.dumps(data, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def plan_mcp_install(
    plan: Plan, target: Target, python: str, manifest: dict[str, Any], force: bool
) -> dict[str, Any]:
    """Register our server in the project's ``.mcp.json`` (every other server untouched);
    returns the manifest entries that let uninstall take exactly it out again."""
    assert target.project_dir is not None
    path = target.project_dir / MCP_NAME
    raw, data = _read_mcp(path)
    wanted = mcp_entry(python)
    servers = data.get("mcpServers", {})
    current = servers.get(MCP_SERVER)
    ours = manifest.get("mcp_server")
    if current is not None and current != wanted and current != ours and not force:
        raise OrchError(
            f"{target.show(path)} already has an MCP server named {MCP_SERVER!r} that orch-plugins "
            "did not install; rename it or pass --force (a backup is kept). Nothing was changed."
        )
    if current != wanted:
        new = copy.deepcopy(data)
        new.setdefault("mcpServers", {})[MCP_SERVER] = wanted
        plan.writes[path] = _render_mcp(new)
        if raw is not None:
            plan.backups.append(path)
        verb = "create" if raw is None else "update"
        plan.lines.append(f"{verb}  {target.show(path)}: MCP server {MCP_SERVER} (orch mcp)")
    original = raw.decode("utf-8") if raw is not None else None
    return {
        "mcp_server": wanted,
        "mcp_original": manifest.get("mcp_original", original),
    }


def plan_mcp_uninstall(plan: Plan, target: Target, manifest: dict[str, Any]) -> None:
    """Take our server out of ``.mcp.json``: the file's original bytes come back when nothing
    else changed, a file we created goes when nothing else is in it, a server entry someone
    changed since stays."""
    if target.project_dir is None:
        return
    path = target.project_dir / MCP_NAME
    raw, data = _read_mcp(path)
    servers = data.get("mcpServers", {})
    if raw is None or MCP_SERVER not in servers:
        return
    if servers[MCP_SERVER] != manifest["mcp_server"]:
        plan.notes.append(f"kept {target.show(path)}'s server {MCP_SERVER}: changed since install")
        return
    original_text = manifest.get("mcp_original")
    original = json.loads(original_text.removeprefix(BOM)) if original_text else None
    new = copy.deepcopy(data)
    del new["mcpServers"][MCP_SERVER]
    if not new["mcpServers"] and "mcpServers" not in (original or {}):
        del new["mcpServers"]
    if original_text is None and not new:
        plan.removes.append(path)
        plan.lines.append(f"remove  {target.show(path)}: MCP server {MCP_SERVER}")
        return
    plan.backups.append(path)
    if original_text is not None and new == original:
        plan.writes[path] = original_text.encode("utf-8")  # byte for byte what was there
    else:
        plan.writes[path] = _render_mcp(new)
    plan.lines.append(f"update  {target.show(path)}: remove MCP server {MCP_SERVER}")


def _state_dir_unused(state_dir: Path) -> bool:
    """True when the state directory we created holds no agent run (only hook records)."""
    if not (state_dir / "state.db").exists():
        return state_dir.exists() and not any((state_dir / "runs").glob("*"))
    from orch_plugins.store import Store

    try:
        store = Store(state_dir, create=False)
        try:
            return not store.runs(include_archived=True, latest_only=False)
        finally:
            store.close()
    except OrchError:
        return False


# -- applying ---------------------------------------------------------------------------------


def _real(path: Path) -> Path:
    """``path``, or the file a symlink at ``path`` points to (a dotfiles setup): writes go
    through the link, which stays a link."""
    return Path(os.path.realpath(path)) if path.is_symlink() else path


def _atomic_write(
    path: Path, data: bytes, *, check: bool = False, expect: bytes | None = None
) -> None:
    """Write ``data`` to ``path`` (through a symlink) by renaming a temporary file over it.

    With ``check``, ``expect`` is what planning read (None: absent): the file is read again
    right before the rename and :class:`SettingsChanged` is raised, nothing replaced, when it
    no longer holds them: a change saved in between is never overwritten.
    """
    real = _real(path)
    if not real.parent.is_dir():
        raise OrchError(
            f"{path} points to {real}, in a directory that does not exist; nothing was changed"
        )
    tmp = real.with_name(f".{real.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    with contextlib.suppress(OSError):
        shutil.copymode(real, tmp)
    try:
        if check and _current(real) != expect:
            raise SettingsChanged(f"{path} changed while the installer was writing it")
        os.replace(tmp, real)
    finally:
        tmp.unlink(missing_ok=True)


def _current(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def _backup(path: Path, content: bytes) -> Path:
    """Keep ``content`` (what ``path`` holds before we change it) as its one backup."""
    dest = backup_path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    _atomic_write(dest, content)
    return dest


def apply(plan: Plan) -> list[Path]:
    """Carry the plan out; returns the backups it made.

    settings.json goes first, and only if it still holds what the plan read
    (:class:`SettingsChanged` otherwise, with nothing changed).
    """
    made = []
    target = plan.target
    settings = target.settings_path
    if plan.settings is not None and (settings in plan.writes or settings in plan.removes):
        expect = plan.settings.raw
        if settings in plan.writes and not settings.is_symlink():
            settings.parent.mkdir(parents=True, exist_ok=True)
        if expect is not None and settings in plan.backups:
            made.append(_backup(settings, expect))
        if settings in plan.writes:
            _atomic_write(settings, plan.writes[settings], check=True, expect=expect)
        else:
            real = _real(settings)
            if _current(real) != expect:
                raise SettingsChanged(f"{settings} changed while the installer was removing it")
            real.unlink(missing_ok=True)
    for path in plan.backups:
        if path != settings and path.exists():
            made.append(_backup(path, path.read_bytes()))
    for d in plan.mkdirs:
        d.mkdir(parents=True, exist_ok=True)
    # The manifest goes last on install (it describes the rest) ...
    manifest = target.manifest_path
    for path, data in sorted(plan.writes.items(), key=lambda kv: kv[0] == manifest):
        if path != settings:
            path.parent.mkdir(parents=True, exist_ok=True)
            _atomic_write(path, data)
    if plan.create_state_dir and target.state_dir is not None:
        from orch_plugins.store import Store

        Store(target.state_dir).close()
    # ... and first to go on uninstall is everything else.
    for path in sorted(plan.removes, key=lambda p: p == manifest):
        if path != settings:
            path.unlink(missing_ok=True)
    for d in plan.rmdirs:
        with contextlib.suppress(OSError):  # not empty: the user put something there
            d.rmdir()
    if plan.remove_state_dir and target.state_dir is not None:
        shutil.rmtree(target.state_dir, ignore_errors=True)
    return made


def run(
    target: Target,
    *,
    uninstall: bool = False,
    dry_run: bool = False,
    force: bool = False,
    python: str | None = None,
    package_dir: str | Path | None = None,
    echo: Callable[[str], None] = print,
) -> Plan:
    """Plan, print and (unless ``dry_run``) apply an install or uninstall, and record it in
    :func:`registry_path`. When settings.json changes between planning and writing, plans
    again, up to :data:`ATTEMPTS` times; then raises :class:`OrchError` with nothing of the
    user's lost."""
    what = "uninstall" if uninstall else "install"
    where = f"{target.scope} {target.project_dir or target.claude_dir}"
    python = python or default_python()
    for attempt in range(1, ATTEMPTS + 1):
        plan = (
            plan_uninstall(target)
            if uninstall
            else plan_install(target, python=python, package_dir=package_dir, force=force)
        )
        if plan.empty or dry_run:
            break
        try:
            made = apply(plan)
        except SettingsChanged as exc:
            if attempt == ATTEMPTS:
                raise OrchError(
                    f"{exc} {ATTEMPTS} times in a row (an editor or a Claude Code session saving "
                    "it?); its content is yours as last saved. Run the installer again when it is "
                    "quiet."
                ) from None
            continue
        break
    if plan.empty:
        state = "not installed" if uninstall else "already installed"
        echo(f"orch {what}: nothing to change ({state} in {where})")
    else:
        verb = "would " if dry_run else ""
        echo(f"orch {what} ({where}){': dry run, nothing changed' if dry_run else ''}")
        for line in plan.lines:
            echo(f"  {verb}{line}")
    if dry_run:
        if plan.settings_diff:
            echo(plan.settings_diff.rstrip("\n"))
    elif not plan.empty:
        for backup in made:
            echo(f"  backup  {backup}")
    for note in plan.notes:
        echo(f"  note: {note}")
    if not dry_run:
        _register(target, None if uninstall else python)
        if not uninstall and not plan.empty:
            echo(f"  hooks run {python}")
    return plan


# -- the registry of installs -----------------------------------------------------------------


def _registry_entries() -> dict[str, dict[str, Any]]:
    try:
        data = json.loads(registry_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    installs = data.get("installs") if isinstance(data, dict) else None
    return installs if isinstance(installs, dict) else {}


def _register(target: Target, python: str | None) -> None:
    """Record (``python`` given) or forget (None) the install in ``target``. Best effort: a
    registry that cannot be written only costs the purge check this install."""
    key = str(target.claude_dir)
    try:
        with _registry_lock():
            entries = _registry_entries()
            if python is None and key not in entries:
                return
            if python is None:
                del entries[key]
            else:
                entry = {"scope": target.scope, "python": python}
                if target.project_dir is not None:
                    entry["project"] = str(target.project_dir)
                if entries.get(key) == entry:
                    return
                entries[key] = entry
            path = registry_path()
            path.parent.mkdir(parents=True, exist_ok=True)
            body = {"version": 1, "installs": dict(sorted(entries.items()))}
            _atomic_write(path, (json.dumps(body, indent=2) + "\n").encode("utf-8"))
    except OSError:
        pass


@contextlib.contextmanager
def _registry_lock() -> Any:
    """Serialise registry updates of concurrent installs (POSIX; elsewhere a no-op)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    path = registry_path().with_name("installs.lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def installs_using(env_dir: str | Path) -> list[Target]:
    """The installs whose hooks run an interpreter inside ``env_dir`` (a virtual environment),
    judged by each recorded install's manifest as it is now (a project deleted or uninstalled
    since does not count)."""
    # A link on the way (~/.local/share -> /data/...) must not hide an install: compare the
    # interpreter's directory both as written and resolved (not the interpreter itself: a
    # venv's python is a link out of the venv).
    roots = {Path(os.path.abspath(env_dir)), Path(os.path.realpath(env_dir))}

    def inside(python: str) -> bool:
        where = os.path.dirname(os.path.abspath(python))
        return any(
            Path(d).is_relative_to(r) for d in (where, os.path.realpath(where)) for r in roots
        )

    found = []
    for key, entry in _registry_entries().items():
        if not isinstance(entry, dict):
            continue
        project = entry.get("project")
        scope = "project" if project else "user"
        target = Target(scope, Path(key), Path(project) if project else None)
        try:
            manifest = load_manifest(target)
        except OrchError:
            manifest = None
        python = (manifest or {}).get("python")
        if python and inside(python):
            found.append(target)
    return found


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options ``install.py`` and ``python -m orch_plugins.install`` share."""
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--project",
        metavar="DIR",
        help="install into DIR/.claude (default: the current directory's project)",
    )
    where.add_argument("--user", action="store_true", help="install into ~/.claude instead")
    parser.add_argument(
        "--uninstall", action="store_true", help="remove exactly what an install added"
    )
    parser.add_argument("--dry-run", action="store_true", help="print what would change")
    parser.add_argument(
        "--force", action="store_true", help="replace files of the same name (a backup is kept)"
    )


def target_from_args(args: argparse.Namespace) -> Target:
    return user_target() if args.user else project_target(args.project)


def main(argv: list[str] | None = None) -> int:
    """``python -m orch_plugins.install``: what ``install.py`` runs inside the environment."""
    parser = argparse.ArgumentParser(
        prog="python -m orch_plugins.install",
        description="Install orch-plugins' slash commands and hooks into Claude Code.",
    )
    add_arguments(parser)
    parser.add_argument("--python", help=argparse.SUPPRESS)
    parser.add_argument("--package-dir", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    try:
        run(
            target_from_args(args),
            uninstall=args.uninstall,
            dry_run=args.dry_run,
            force=args.force,
            python=args.python,
            package_dir=args.package_dir,
        )
    except OrchError as exc:
        print(f"orch install: error: {exc}", file=sys.stderr)
        return 1
    return 0


def _settings_diff(target: Target, before: bytes | None, after: bytes, label: str) -> str:
    """The ``--dry-run`` diff of settings.json, as install and uninstall show it."""
    name = target.show(target.settings_path)

    def lines(raw: bytes | None) -> list[str]:
        text = (raw or b"").decode("utf-8").removeprefix(BOM).replace("\r\n", "\n")
        return text.splitlines(keepends=True)

    return "".join(
        difflib.unified_diff(
            lines(before),
            lines(after),
            fromfile=f"{name} (now)",
            tofile=f"{name} ({label})",
        )
    )


if __name__ == "__main__":
    sys.exit(main())

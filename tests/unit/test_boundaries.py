"""Import boundaries between the parts of the package (issue 11, "Done when").

* The Claude Code hooks and the supervisor run on every hook event and for every agent (the
  supervisor also alone on remote hosts): no CLI, typer, backend, plugin manager or test kit.
* The core (store, admission, orchestrator, claude.py, model, events, paths, the plugin
  manager and the interfaces) imports no backend and no face.
* The CLI reaches backends through the plugin manager only.
* Product code never imports the test kit.
* Every claude command line is built in claude.py.
* The dashboard (orch_plugins.web and its extra's libraries) is loaded by ``orch web`` alone:
  neither the core nor the hooks import it, nor does the CLI anywhere else; it reaches the
  agents through the core, never a backend.

Imports are read from the source (anywhere in a module, inside functions too), so a lazy import
counts like a top-level one; only what ``if TYPE_CHECKING:`` guards is left out.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src"
PKG = SRC / "orch_plugins"

FACES = ("orch_plugins.cli", "typer", "click", "rich")
BACKENDS = ("orch_plugins.backends",)
TEST_KIT = ("orch_plugins.testing",)
PLUGIN_MANAGER = ("pluggy", "orch_plugins.plugins", "orch_plugins.hookspecs")
#: The dashboard (the optional ``web`` extra): only ``orch web`` loads it.
WEB = ("orch_plugins.web", "starlette", "uvicorn", "jinja2", "markdown_it", "playwright")

#: Run on every Claude Code event / for every agent: standard library and light modules only.
LIGHT = ("hooks.py", "claude_hooks.py", "supervisor.py", "procs.py", "paths.py", "store.py")
#: The core: no backend, no face.
CORE = (
    "store.py",
    "admission.py",
    "core.py",
    "orchestrator.py",
    "claude.py",
    "model.py",
    "events.py",
    "paths.py",
    "procs.py",
    "plugins.py",
    "hookspecs.py",
    "backend.py",
    "config.py",
    "errors.py",
    "roles",
)
#: claude's own options: only claude.py puts them on a command line.
CLAUDE_FLAGS = {
    "--output-format",
    "--input-format",
    "--include-partial-messages",
    "--append-system-prompt",
    "--tools",
    "--allowedTools",
    "--disallowedTools",
    "--permission-mode",
    "--resume",
    "--fork-session",
    "--settings",
    "--plugin-dir",
    "--session-id",
}


def module_name(path: Path) -> str:
    rel = path.relative_to(SRC).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported(path: Path) -> set[str]:
    """Every module ``path`` imports, absolute; ``from X import Y`` counts as ``X`` and
    ``X.Y`` (Y may be a submodule)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    out: set[str] = set()
    for node in _runtime_nodes(tree):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            out.add(base)
            out.update(f"{base}.{alias.name}" for alias in node.names)
    return out


def _runtime_nodes(tree: ast.AST) -> list[ast.AST]:
    """Every node but what ``if TYPE_CHECKING:`` guards (type checkers alone read that)."""
    out: list[ast.AST] = []
    todo = [tree]
    while todo:
        node = todo.pop()
        out.append(node)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            todo.extend(node.orelse)
            continue
        todo.extend(ast.iter_child_nodes(node))
    return out


def files(names: tuple[str, ...]) -> list[Path]:
    out: list[Path] = []
    for name in names:
        path = PKG / name
        if path.is_dir():
            out += sorted(path.rglob("*.py"))
        elif path.exists():
            out.append(path)
    return out


def offending(path: Path, forbidden: tuple[str, ...]) -> list[str]:
    return sorted(
        m for m in imported(path) if any(m == f or m.startswith(f + ".") for f in forbidden)
    )


def test_the_groups_name_real_modules() -> None:
    assert {p.name for p in files(LIGHT)} >= {"supervisor.py", "store.py", "paths.py"}
    assert any(p.name in ("hooks.py", "claude_hooks.py") for p in files(LIGHT))
    assert {p.name for p in files(CORE)} >= {
        "store.py",
        "admission.py",
        "claude.py",
        "model.py",
        "events.py",
    }
    assert any(p.name in ("core.py", "orchestrator.py") for p in files(CORE))
    # The reader sees lazy imports and relative ones.
    assert "orch_plugins.store" in imported(PKG / "supervisor.py")
    assert "orch_plugins.paths" in imported(PKG / "store.py")


@pytest.mark.parametrize("path", files(LIGHT), ids=lambda p: p.name)
def test_hooks_and_supervisor_stay_light(path: Path) -> None:
    bad = offending(path, FACES + BACKENDS + TEST_KIT + PLUGIN_MANAGER + WEB)
    assert not bad, f"{path.name} imports {bad}"


@pytest.mark.parametrize("path", files(CORE), ids=lambda p: str(p.relative_to(PKG)))
def test_the_core_imports_no_backend_and_no_face(path: Path) -> None:
    bad = offending(path, FACES + BACKENDS + TEST_KIT + WEB)
    assert not bad, f"{path.relative_to(PKG)} imports {bad}"


@pytest.mark.parametrize("path", sorted((PKG / "cli").rglob("*.py")), ids=lambda p: p.name)
def test_the_cli_imports_no_backend(path: Path) -> None:
    # Backends bring their own commands (orch_register_commands) and options (LaunchOption).
    bad = offending(path, BACKENDS + TEST_KIT)
    assert not bad, f"cli/{path.name} imports {bad}"


@pytest.mark.parametrize("path", sorted((PKG / "web").rglob("*.py")), ids=lambda p: p.name)
def test_the_dashboard_reaches_agents_through_the_core(path: Path) -> None:
    bad = offending(path, BACKENDS + TEST_KIT + ("orch_plugins.cli", "typer"))
    assert not bad, f"web/{path.name} imports {bad}"


def test_only_orch_web_loads_the_dashboard() -> None:
    """No module but ``cli/web.py`` imports the dashboard, and it only inside the command: the
    CLI's other commands, the core and the hooks load none of it."""
    product = [p for p in PKG.rglob("*.py") if "web" not in p.relative_to(PKG).parts]
    users = {str(p.relative_to(PKG)) for p in product if offending(p, WEB)}
    assert users == {"cli/web.py"}
    top = ast.parse((PKG / "cli" / "web.py").read_text(encoding="utf-8")).body
    lazy = {
        m
        for node in top
        if isinstance(node, (ast.Import, ast.ImportFrom))
        for m in ([a.name for a in node.names] if isinstance(node, ast.Import) else [node.module])
    }
    assert not {m for m in lazy if m and any(m.startswith(w) for w in WEB)}
    code = (
        f"import sys; sys.path.insert(0, {str(SRC)!r}); "
        "import orch_plugins.cli, orch_plugins.core, orch_plugins.claude_hooks; "
        "print(' '.join(sorted(sys.modules)))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    assert not {m for m in loaded if any(m == w or m.startswith(w + ".") for w in WEB)}


def test_product_code_never_imports_the_test_kit() -> None:
    product = [p for p in PKG.rglob("*.py") if "testing" not in p.relative_to(PKG).parts]
    bad = {str(p.relative_to(PKG)): offending(p, TEST_KIT) for p in product}
    assert not {k: v for k, v in bad.items() if v}


def test_loading_the_hooks_and_the_supervisor_pulls_in_nothing_heavy() -> None:
    code = (
        f"import sys; sys.path.insert(0, {str(SRC)!r}); "
        "import orch_plugins.claude_hooks, orch_plugins.supervisor, orch_plugins.store; "
        "print(' '.join(sorted(sys.modules)))"
    )
    loaded = set(
        subprocess.run(
            [sys.executable, "-I", "-S", "-c", code], capture_output=True, text=True, check=True
        ).stdout.split()
    )
    heavy = FACES + BACKENDS + TEST_KIT + PLUGIN_MANAGER + ("typing",)
    assert not {m for m in loaded if any(m == h or m.startswith(h + ".") for h in heavy)}


def test_every_claude_command_line_is_built_in_claude_py() -> None:
    """claude's own flags appear as argv words in claude.py alone (the agent's, the
    interactive agent's and the orchestrator's command lines)."""
    found = {}
    for path in PKG.rglob("*.py"):
        if path.name == "claude.py" or "testing" in path.relative_to(PKG).parts:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and node.value in CLAUDE_FLAGS:
                found.setdefault(str(path.relative_to(PKG)), []).append(node.value)
    assert found == {}


def test_the_retry_session_slot_is_the_same_text_on_both_sides() -> None:
    """The supervisor (shipped alone to hosts) cannot import claude.py: the slot it fills in
    a retry's argv is a copy of claude.py's, and must stay equal."""
    from orch_plugins import claude, supervisor

    assert supervisor.SESSION_ID_SLOT == claude.SESSION_ID_SLOT
    argv = claude.retry_argv("claude", role=None, model=None, interactive=False)
    assert argv[-2:] == ["--resume", claude.SESSION_ID_SLOT]

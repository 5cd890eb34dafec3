"""The docs stay true: README.md is a short entry page linking every page of docs/, the command
reference is what the CLI generates, and every command, flag, hook spec (with its signature)
and ``ORCH_*`` environment variable is documented."""

from __future__ import annotations

import inspect
import re
from collections.abc import Iterator

import pytest
import typer
from typer.core import TyperGroup

from orch_plugins import hookspecs
from orch_plugins.cli import docgen
from tests.helpers import ROOT

DOCS = ROOT / "docs"
PAGES = sorted(DOCS.glob("*.md"))
README = (ROOT / "README.md").read_text(encoding="utf-8")
COMMANDS_PAGE = DOCS / "commands.md"
COMMANDS = COMMANDS_PAGE.read_text(encoding="utf-8") if COMMANDS_PAGE.exists() else ""
with docgen.builtin_plugins() as group:
    NAMES = group.list_commands(typer.Context(group, info_name="orch"))


@pytest.fixture
def orch_group() -> Iterator[TyperGroup]:
    """``orch`` with its own plugins only (third-party ones installed here are not documented)."""
    with docgen.builtin_plugins() as group:
        yield group


def page(name: str) -> str:
    path = DOCS / name
    assert path.exists(), f"docs/{name} is missing"
    return path.read_text(encoding="utf-8")


def test_the_command_reference_is_generated_from_the_cli(orch_group: TyperGroup) -> None:
    fresh = docgen.render_page(COMMANDS, orch_group)
    if fresh != COMMANDS:  # no diff of two whole pages: the message says what to do
        pytest.fail(f"docs/commands.md is stale: run `{docgen.REGENERATE}`")


@pytest.mark.parametrize("name", NAMES)
def test_every_command_has_a_section(name: str) -> None:
    assert re.search(rf"^## `orch {name}`$", COMMANDS, re.M), f"no '## `orch {name}`' heading"


@pytest.mark.parametrize("name", NAMES)
def test_every_flag_is_documented(name: str, orch_group: TyperGroup) -> None:
    ctx = typer.Context(orch_group, info_name="orch")
    command = orch_group.get_command(ctx, name)
    assert command is not None
    flags = {
        opt
        for param in command.get_params(typer.Context(command, parent=ctx))
        for opt in (*param.opts, *getattr(param, "secondary_opts", []))
        if opt.startswith("--") and opt != "--help"
    }
    section = COMMANDS.split(f"## `orch {name}`", 1)[-1].split("\n## `orch ", 1)[0]
    missing = sorted(f for f in flags if not re.search(rf"`[^`]*{re.escape(f)}\b", section))
    assert not missing, f"orch {name}: flags missing from docs/commands.md: {missing}"


def hook_specs() -> list[str]:
    marker = f"{hookspecs.PROJECT}_spec"
    return sorted(n for n, f in vars(hookspecs).items() if callable(f) and hasattr(f, marker))


def signature_line(name: str) -> str:
    """``def NAME(arg: Type, ...) -> Ret: ...`` as written in hookspecs.py (annotations are
    strings there: ``from __future__ import annotations``)."""

    def text(annotation: object) -> str:
        return annotation if isinstance(annotation, str) else inspect.formatannotation(annotation)

    sig = inspect.signature(getattr(hookspecs, name))
    params = ", ".join(
        p.name if p.annotation is p.empty else f"{p.name}: {text(p.annotation)}"
        for p in sig.parameters.values()
    )
    returns = "" if sig.return_annotation is sig.empty else f" -> {text(sig.return_annotation)}"
    return f"def {name}({params}){returns}: ..."


def test_hookspecs_are_found() -> None:
    assert {"orch_register_backends", "orch_register_roles", "orch_agent_launched"} <= set(
        hook_specs()
    )
    assert signature_line("orch_agent_launched") == (
        "def orch_agent_launched(run: JSONObject) -> None: ..."
    )


@pytest.mark.parametrize("hook", hook_specs())
def test_every_hook_spec_is_documented_with_its_signature(hook: str) -> None:
    text = page("hooks.md")
    heading = re.search(rf"^## `?{re.escape(hook)}`?\s*$", text, re.M)
    assert heading, f"docs/hooks.md has no '## {hook}' heading: document every hook spec"
    section = text[heading.end() :].split("\n## ", 1)[0]
    expected = signature_line(hook)
    assert expected in section, f"docs/hooks.md, {hook}: the signature is not `{expected}`"


def env_variables() -> list[str]:
    """Every ``ORCH_*`` name the product's source mentions: the package, the hook shims, the
    installer."""
    names: set[str] = set()
    files = [*(ROOT / "src").rglob("*.py"), *(ROOT / "claude").rglob("*"), ROOT / "install.py"]
    for path in (f for f in files if f.is_file()):
        names |= set(re.findall(r"\bORCH_[A-Z][A-Z0-9_]*[A-Z0-9]\b", path.read_text("utf-8")))
    return sorted(names)


def test_environment_variables_are_found() -> None:
    assert {"ORCH_STATE_DIR", "ORCH_CONFIG", "ORCH_CLAUDE_BIN"} <= set(env_variables())


@pytest.mark.parametrize("name", env_variables())
def test_every_environment_variable_is_documented(name: str) -> None:
    table = page("configuration.md")
    row = re.search(rf"^\|[^\n]*`{name}[`=][^\n]*\|[^\n]*\|$", table, re.M)
    assert row, f"{name}: no row in docs/configuration.md's environment variables table"


def test_the_readme_is_a_short_entry_page_linking_every_docs_page() -> None:
    assert PAGES, "docs/ has no pages"
    lines = README.count("\n")
    assert lines < 250, (
        f"README.md has {lines} lines: keep it an entry page, move the rest to docs/"
    )
    missing = [p.name for p in PAGES if f"](docs/{p.name})" not in README]
    assert not missing, f"README.md does not link these docs/ pages: {missing}"


def test_the_readme_test_command_is_what_ci_runs() -> None:
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").strip().splitlines()
    command = ci[-1].strip()
    assert command.startswith(".venv/bin/python -m pytest"), command
    assert f"\n{command}\n" in README, f"README.md does not give the test command `{command}`"


def test_pages_link_to_pages_and_headings_that_exist() -> None:
    anchors = {p.name: _anchors(p.read_text(encoding="utf-8")) for p in PAGES}
    anchors["README.md"] = _anchors(README)
    broken = []
    for name, text in [("README.md", README), *((p.name, p.read_text("utf-8")) for p in PAGES)]:
        here = "docs/" if name != "README.md" else ""
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target):
                continue
            path, _, anchor = target.partition("#")
            page_name = name
            if path:
                file = (ROOT / here / path).resolve()
                if not file.exists():
                    broken.append(f"{name}: {target}")
                    continue
                page_name = file.name
            if anchor and page_name in anchors and anchor not in anchors[page_name]:
                broken.append(f"{name}: {target}")
    assert not broken, f"links to nothing: {broken}"


def _anchors(text: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to '-', repeats -N."""
    seen: dict[str, int] = {}
    out = set()
    text = re.sub(r"^```.*?^```", "", text, flags=re.M | re.S)
    for heading in re.findall(r"^#{1,6} (.+?)\s*$", text, re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    return out


def test_no_page_repeats_another() -> None:
    """A paragraph (of more than a line) is written once: in README.md or in one docs/ page."""
    seen: dict[str, str] = {}
    repeated = []
    for name, text in [("README.md", README), *((p.name, p.read_text("utf-8")) for p in PAGES)]:
        text = re.sub(r"<!--.*?-->", "", text, flags=re.S)
        for paragraph in re.split(r"\n\s*\n", text):
            key = " ".join(paragraph.split())
            if len(key) < 120:
                continue
            if key in seen and seen[key] != name:
                repeated.append(f"{seen[key]} and {name}: {key[:70]}…")
            seen.setdefault(key, name)
    assert not repeated, "written twice:\n" + "\n".join(repeated)

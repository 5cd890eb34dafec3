"""What the CLI prints for people agrees with itself and with the README: help at 80 columns,
UPPERCASE metavars, one cost rule, plurals, model names, ``--json`` shapes, ``--wait``."""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path

import pytest
import typer.main
from typer.testing import CliRunner

from orch_plugins.cli import app
from orch_plugins.progress import describe, model_label, money, plural
from tests.helpers import ROOT, orch

COMMANDS = sorted(typer.main.get_command(app).commands)  # type: ignore[attr-defined]
# The docs: README.md and the reference pages in docs/.
README = "\n".join(
    p.read_text(encoding="utf-8") for p in [ROOT / "README.md", *sorted(ROOT.glob("docs/*.md"))]
)


def _help(name: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("COLUMNS", "80")
    r = CliRunner().invoke(app, [name, "--help"])
    assert r.exit_code == 0, r.output
    return r.output


@pytest.mark.parametrize("name", COMMANDS)
def test_help_fits_80_columns_with_uppercase_metavars(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = _help(name, monkeypatch)
    lines = [line.rstrip() for line in text.splitlines()]
    assert all(len(line) <= 80 for line in lines), text
    usage = next(line for line in lines if "Usage:" in line)
    metavars = re.findall(r"[{\[]([^\]}]+)[}\]]", usage.split(name, 1)[1])
    assert all(m == m.upper() for m in metavars), usage  # NAME, [NAME...], not {name}
    # The description: paragraphs are re-wrapped, not broken where the source line ended
    # (a short line followed by more text of the same paragraph).
    head = lines[lines.index(usage) + 1 : next(i for i, x in enumerate(lines) if "╭" in x)]
    for line, after in itertools.pairwise(head):
        if line.strip() and after.strip():
            assert len(line) > 60, f"orch {name}: a line broken early: {line!r}\n{text}"
    # The option table leaves the help column at least 30 characters.
    row = next(line for line in lines if "--help" in line)
    assert row.index("Show this message") <= 80 - 2 - 30, text


def test_help_text_keeps_brackets(monkeypatch: pytest.MonkeyPatch) -> None:
    assert "Check every [hosts.*] entry." in _help("doctor", monkeypatch)


def test_one_rule_for_costs_plurals_and_model_names() -> None:
    cases = {None: "-", 0.0: "$0.00", 0.0002: "$0.0002", 0.00023: "$0.00023", 0.0012: "$0.0012"}
    cases.update({0.096: "$0.096", 0.0996: "$0.10", 0.5: "$0.50", 1.5: "$1.50", 12.345: "$12.35"})
    assert {usd: money(usd) for usd in cases} == cases
    assert [plural(n, "turn") for n in (1, 0, 2)] == ["1 turn", "0 turns", "2 turns"]
    assert model_label("claude-opus-4-8[1m]") == "claude-opus-4-8 (1M context)"
    assert model_label("claude-sonnet-4-5") == "claude-sonnet-4-5"
    [start] = describe({"type": "system", "subtype": "init", "session_id": "s", "model": "m[1m]"})
    assert start == "[start] session s model m (1M context)"
    result = {"type": "result", "num_turns": 1, "duration_ms": 1500, "total_cost_usd": 0.0002}
    assert describe({**result, "result": "ok"})[0] == "[done] 1 turn, 1.5 s, $0.0002"


def test_status_and_logs_show_the_same_cost(project: Path) -> None:
    orch("launch", "a", "hello", "--wait", check=True)  # the fake claude costs $0.0012
    table = orch("status", check=True).stdout
    assert re.search(r"^a\s+completed.*\s\$0\.0012\s", table, re.M), table
    assert ", $0.0012" in orch("logs", "a", check=True).stdout
    assert orch("clear", check=True).stdout.strip() == "removed 1 ended run"


def test_json_shapes_and_what_wait_prints(project: Path) -> None:
    assert json.loads(orch("status", "--json", check=True).stdout) == []  # one array, always
    assert "`--json` one JSON array" in README
    one = json.loads(orch("launch", "x", "hi", "--wait", "--json", check=True).stdout)
    assert isinstance(one, dict) and one["name"] == "x" and one["status"] == "completed"
    assert isinstance(json.loads(orch("launch", "y", "hi", "--json", check=True).stdout), dict)
    # parallel --wait prints a status line per agent (the README says so), launch --wait the
    # output itself.
    r = orch("parallel", "one", "two", "--wait", check=True)
    assert r.stdout.splitlines() == ["agent1: completed", "agent2: completed"]
    assert "`--wait` here prints one `NAME: STATUS` line per agent" in README
    many = json.loads(orch("parallel", "three", "--wait", "--json", check=True).stdout)
    assert isinstance(many, list) and [m["name"] for m in many] == ["agent3"]
    assert orch("launch", "z", "hi", "--wait", check=True).stdout.startswith("sha256=")

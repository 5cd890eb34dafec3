"""Roles: ``.claude/agents/*.md`` read as Claude Code reads them, the command line a role gives
claude (``--tools`` limits, ``--allowedTools`` pre-approves, an explicit permission mode), and
the role a run keeps for its resumes and forks."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest

from orch_plugins.claude import build_argv, interactive_argv
from orch_plugins.roles import Role
from orch_plugins.roles.builtin import ROLES
from orch_plugins.roles.claude_agents import parse_agent_file, split_tools
from tests.helpers import orch, status_json


def _file(tmp_path: Path, data: bytes, stem: str = "agent") -> Path:
    path = tmp_path / f"{stem}.md"
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    ("front", "tools"),
    [
        ("tools: [Read, Grep]", ("Read", "Grep")),
        ("tools:\n  - Read\n  - Bash(git diff:*)", ("Read", "Bash(git diff:*)")),
        ("tools: Read, Grep ,Bash(git log:*)", ("Read", "Grep", "Bash(git log:*)")),
        ("tools: Read Grep", ("Read", "Grep")),  # Claude Code splits at spaces too
        ('tools: "Read, Grep"', ("Read", "Grep")),
        ("tools: []", ()),  # empty: every tool, as in Claude Code
        ("tools:", ()),
    ],
)
def test_tools_in_every_shape(tmp_path: Path, front: str, tools: tuple[str, ...]) -> None:
    text = f"---\nname: r\ndescription: d\n{front}\n---\nBody.\n"
    role = parse_agent_file(_file(tmp_path, text.encode()))
    assert role is not None and role.allowed_tools == tools


@pytest.mark.parametrize(
    ("front", "description"),
    [
        ("description: >\n  folded one\n  folded two\n", "folded one folded two"),
        ("description: |\n  literal one\n  literal two\n", "literal one\nliteral two"),
        ("description: 'it''s: quoted'\n", "it's: quoted"),
        ("description: valid # a comment\n", "valid"),
        ("description: on\n", "on"),  # YAML 1.2, as Claude Code: not a boolean
        # Not YAML: Claude Code quotes such values and parses again; so does orch.
        ("description: Use when: the user asks #now\n", "Use when: the user asks #now"),
        ('description: say "hi": now\n', 'say "hi": now'),
    ],
)
def test_descriptions_in_every_shape(tmp_path: Path, front: str, description: str) -> None:
    role = parse_agent_file(_file(tmp_path, f"---\nname: r\n{front}---\nBody.\n".encode()))
    assert role is not None and role.description == description


def test_bom_crlf_and_other_fields(tmp_path: Path) -> None:
    data = (
        b"\xef\xbb\xbf---\r\nname: crlf\r\ndescription: Reviews\r\ntools: [Read, Grep]\r\n"
        b"disallowedTools: Write, Edit\r\nmodel: haiku\r\npermissionMode: manual\r\n---\r\n"
        b"Line one.\r\n\r\nLine two.\r\n"
    )
    role = parse_agent_file(_file(tmp_path, data))
    assert role == Role(
        name="crlf",
        description="Reviews",
        system_prompt="Line one.\n\nLine two.",
        allowed_tools=("Read", "Grep"),
        disallowed_tools=("Write", "Edit"),
        permission_mode="default",  # "manual" is 2.1.200+'s name; 2.1.197 refuses it
        model="haiku",
        source=str(tmp_path / "agent.md"),
    )
    broken = b"---\nname: x\ndescription: d\ntools: [Read, Grep\nmodel: inherit\n---\n"
    role = parse_agent_file(_file(tmp_path, broken))
    assert role is not None and role.allowed_tools == ("[Read", "Grep") and role.model is None


def test_files_claude_code_ignores_are_no_roles(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    assert parse_agent_file(_file(tmp_path, b"No front matter.\n")) is None
    assert parse_agent_file(_file(tmp_path, b"\n---\nname: a\ndescription: b\n---\n")) is None
    for data, why in (
        (b"---\ndescription: no name\n---\nx\n", "no 'name'"),
        (b"---\nname: nodesc\n---\nx\n", "no 'description'"),
        (b"---\nname: 123\ndescription: numeric name\n---\nx\n", "no 'name'"),
        (b"---\nname: x\ndescription: d\n  bad: [indent\n---\nx\n", "not YAML"),
        (b"---\nname: x\ndescription: never closed\n", "not closed"),
    ):
        with pytest.raises(ValueError, match=why):
            parse_agent_file(_file(tmp_path, data))
    with caplog.at_level(logging.WARNING):
        role = parse_agent_file(_file(tmp_path, b"---\nname: l\ndescription: caf\xe9\n---\n"))
        odd = parse_agent_file(
            _file(tmp_path, b"---\nname: m\ndescription: d\npermissionMode: sometimes\n---\n")
        )
    assert role is not None and role.description == "caf\ufffd"  # as Claude Code reads it
    assert "not UTF-8" in caplog.text
    assert odd is not None and odd.permission_mode == "default"
    assert "unknown permissionMode 'sometimes'" in caplog.text


def test_split_tools_keeps_rules_whole() -> None:
    assert split_tools("Bash(git diff:*), Read  Bash(npm run test:*)") == (
        "Bash(git diff:*)",
        "Read",
        "Bash(npm run test:*)",
    )
    assert split_tools(["Read, Grep", 3, "Glob"]) == ("Read", "Grep", "Glob")
    assert split_tools(None) == ()


def _after(argv: list[str], flag: str) -> str | None:
    return argv[argv.index(flag) + 1] if flag in argv else None


def test_argv_limits_tools_and_states_the_mode() -> None:
    reviewer = Role(name="r", allowed_tools=("Read", "Grep", "Bash(git diff:*)", "mcp__gh__x"))
    argv = build_argv("claude", role=reviewer)
    assert _after(argv, "--tools") == "Read,Grep,Bash"  # built-in base names only
    assert _after(argv, "--allowedTools") == "Read,Grep,Bash(git diff:*),mcp__gh__x"
    assert _after(argv, "--permission-mode") == "default"
    only_mcp = build_argv("claude", role=Role(name="m", allowed_tools=("mcp__gh__x",)))
    assert _after(only_mcp, "--tools") == ""  # no built-in tool; MCP tools stay
    everything = build_argv("claude", role=Role(name="a", permission_mode=None))
    assert "--tools" not in everything and "--allowedTools" not in everything
    assert _after(everything, "--permission-mode") == "default"
    assert "--permission-mode" not in build_argv("claude")  # no role: the user's settings
    for role in ROLES:
        argv = build_argv("claude", role=role)
        assert _after(argv, "--permission-mode") in ("default", "acceptEdits"), role.name
        offered = (_after(argv, "--tools") or "").split(",")
        if role.permission_mode == "default":  # the read-only roles
            assert not {"Edit", "Write", "NotebookEdit"} & set(offered), role.name


def test_orch_mcp_server_is_off_unless_asked_or_named_by_the_role() -> None:
    """An agent's claude starts the project's orch server only with orch_tools; the switch is
    merged into the one --settings an interactive agent's hooks need too."""
    off = {"disabledMcpjsonServers": ["orch"]}
    assert json.loads(_after(build_argv("claude"), "--settings") or "{}") == off
    assert "--settings" not in build_argv("claude", orch_tools=True)
    lead = Role(name="lead", allowed_tools=("Read", "mcp__orch__launch"))
    assert (
        lead.wants_orch_tools()
        and Role(name="x", allowed_tools=("mcp__orch__*",)).wants_orch_tools()
    )
    assert not Role(name="y", allowed_tools=("mcp__orchard__x", "Read")).wants_orch_tools()
    argv = interactive_argv(
        build_argv("claude", interactive=True), prompt="p", prompt_path="/p", stop_file="/s"
    )
    assert argv.count("--settings") == 1
    settings = json.loads(_after(argv, "--settings") or "{}")
    assert settings["disabledMcpjsonServers"] == ["orch"] and "Stop" in settings["hooks"]
    assert argv[-2:] == ["--", "p"]


def test_roles_json_lists_tools_model_and_mode(project: Path) -> None:
    directory = project / ".claude" / "agents"
    directory.mkdir(parents=True)
    (directory / "rev.md").write_text(
        "---\nname: rev\ndescription: >\n  Reviews\n  code\ntools: [Read, Grep]\n"
        "model: sonnet\npermissionMode: plan\n---\nBody\n"
    )
    roles = {r["name"]: r for r in json.loads(orch("roles", "--json", check=True).stdout)}
    assert roles["rev"] == {
        "name": "rev",
        "description": "Reviews code",
        "source": str(directory / "rev.md"),
        "allowed_tools": ["Read", "Grep"],
        "disallowed_tools": [],
        "model": "sonnet",
        "permission_mode": "plan",
    }
    assert roles["implementer"]["permission_mode"] == "acceptEdits"
    assert roles["bug-hunter"]["permission_mode"] == "default"


def test_yaml_is_imported_only_to_read_agent_files(project: Path) -> None:
    code = (
        "import sys; from orch_plugins.cli import main\n"
        "sys.argv[0] = 'orch'\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print('YAML', 'yaml' in sys.modules, file=sys.stderr)"
    )

    def loads_yaml(*args: str) -> bool:
        proc = subprocess.run(
            [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=60
        )
        assert "YAML" in proc.stderr, proc.stderr
        return "YAML True" in proc.stderr

    assert not loads_yaml("status")
    assert not loads_yaml("roles")  # no agent files to read
    directory = project / ".claude" / "agents"
    directory.mkdir(parents=True)
    (directory / "rev.md").write_text("---\nname: rev\ndescription: d\n---\nBody\n")
    assert loads_yaml("roles")


# -- a run keeps its role ---------------------------------------------------------------------


def _agent_file(directory: Path, prompt: str, tools: str) -> None:
    directory = directory / ".claude" / "agents"
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "rev.md").write_text(
        f"---\nname: rev\ndescription: d\ntools: {tools}\n---\n{prompt}\n", encoding="utf-8"
    )


def _argv(name: str) -> list[str]:
    return json.loads(orch("output", name, check=True).stdout.split("argv=", 1)[1])


def test_resume_and_fork_keep_the_role_from_any_directory(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _agent_file(project, "PROMPT OF PROJECT A", "Read, Grep")
    orch("launch", "r", "first", "--role", "rev", check=True)
    orch("wait", "r", check=True)
    elsewhere = tmp_path / "other"  # another project with its own role of the same name
    _agent_file(elsewhere, "PROMPT OF PROJECT B", "Bash")
    outside = tmp_path / "plain"  # and a directory with no such role at all
    outside.mkdir()

    monkeypatch.chdir(elsewhere)
    orch("resume", "r", "second", check=True)
    orch("wait", "r", check=True)
    monkeypatch.chdir(outside)
    orch("resume", "r", "third", "--fork", "--as", "rf", check=True)
    orch("launch", "from", "fourth", "--from", "r", check=True)
    orch("wait", "rf", "from", check=True)
    assert [r["role"] for r in status_json("r", "rf", "from")] == ["rev", "rev", "rev"]
    for name in ("r", "rf", "from"):
        argv = _argv(name)
        assert _after(argv, "--append-system-prompt") == "PROMPT OF PROJECT A", name
        assert _after(argv, "--tools") == "Read,Grep", name
    # An explicit --role still wins over the source's (resolved here: outside has none).
    r = orch("launch", "other", "fifth", "--from", "r", "--role", "rev")
    assert r.returncode == 1 and "unknown role 'rev'" in r.stderr


def test_runs_recorded_before_roles_were_kept_resolve_by_name(
    project: Path, tmp_path: Path
) -> None:
    orch("launch", "old", "first", "--role", "researcher", check=True)
    orch("launch", "none", "first", check=True)
    orch("wait", check=True)
    [old] = status_json("old")
    (Path(old["output_path"]).parent / "role.json").unlink()  # as recorded by an earlier orch
    cfg = tmp_path / "config.toml"
    cfg.write_text('default_role = "tester"\n')
    orch("resume", "old", "again", check=True)
    orch("resume", "none", "again", check=True)
    orch("wait", check=True)
    assert _after(_argv("old"), "--tools") == "Read,Grep,Glob,WebSearch,WebFetch"
    # A run without a role is resumed without one, whatever default_role says now.
    assert status_json("none")[0]["role"] is None and "--tools" not in _argv("none")
    (Path(status_json("old")[0]["output_path"]).parent / "role.json").write_text("[1]")
    r = orch("resume", "old", "broken")
    assert r.returncode == 1 and r.stderr.startswith("orch: error: ") and "role" in r.stderr

"""The installer: settings.json merging, idempotence, exact uninstall, refusals, dry run."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from fnmatch import fnmatch
from pathlib import Path

import pytest
from typer.testing import CliRunner

from orch_plugins import __version__, install
from orch_plugins.cli import app
from orch_plugins.errors import OrchError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[2]
PY = "/opt/py/bin/python3"
PKG = "/opt/py/lib/site-packages"

#: A user's own settings, formatted their way, with hooks and permissions of their own.
USER_SETTINGS = """{
    "model": "sonnet",
    "permissions": {"allow": ["Bash(ls:*)"], "deny": ["Read(./.env)"]},
    "hooks": {
        "Stop": [{"hooks": [{"type": "command", "command": "echo mine"}]}],
        "PreToolUse": [{"matcher": "Bash", "hooks": [{"type": "command", "command": "guard"}]}]
    },
    "env": {"FOO": "bär"}
}
"""


@pytest.fixture(autouse=True)
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The user data directory (backups, the install registry), private to the test."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    return tmp_path / "data" / "orch-plugins"


@pytest.fixture
def proj(tmp_path: Path) -> Path:
    path = tmp_path / "proj"
    path.mkdir()
    return path


def do_install(target: install.Target, **kw) -> install.Plan:
    return install.run(target, python=PY, package_dir=PKG, echo=lambda _: None, **kw)


def do_uninstall(target: install.Target) -> install.Plan:
    return install.run(target, uninstall=True, echo=lambda _: None)


def tree(path: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(path)): p.read_bytes()
        for p in sorted(path.rglob("*"))
        if p.is_file() and ".orch-backup-" not in p.name
    }


def our_hooks(settings: dict) -> dict[str, list[str]]:
    return {
        event: [h["command"] for g in groups for h in g["hooks"] if install.is_our_hook(h)]
        for event, groups in settings.get("hooks", {}).items()
    }


def test_install_adds_commands_hooks_permission_and_keeps_everything_else(proj: Path) -> None:
    settings = proj / ".claude" / "settings.json"
    settings.parent.mkdir()
    settings.write_text(USER_SETTINGS)
    target = install.project_target(proj)

    do_install(target)

    data = json.loads(settings.read_text())
    before = json.loads(USER_SETTINGS)
    assert data["model"] == "sonnet" and data["env"] == {"FOO": "bär"}
    assert data["permissions"]["allow"] == ["Bash(ls:*)", install.PERMISSION, "mcp__orch__*"]
    assert data["enabledMcpjsonServers"] == ["orch"]  # approved: no dialog in interactive agents
    assert data["permissions"]["deny"] == before["permissions"]["deny"]
    assert data["hooks"]["Stop"][0] == before["hooks"]["Stop"][0]  # theirs first, untouched
    assert data["hooks"]["PreToolUse"] == before["hooks"]["PreToolUse"]
    commands = our_hooks(data)
    for event in install.HOOK_EVENTS:
        [cmd] = commands[event]
        assert cmd == f'sh "$CLAUDE_PROJECT_DIR"/.claude/hooks/orch-hook.sh {event} {PY} {PKG}'
    assert "PreToolUse" not in commands or not commands["PreToolUse"]
    files = tree(proj / ".claude")
    assert "commands/orchestrate.md" in files
    for name in ("status", "launch", "parallel", "resume", "output", "cancel", "roles"):
        assert f"commands/orchestrate/{name}.md" in files
    for name in ("orch_hook.py", "orch-hook.sh"):
        assert files[f"hooks/{name}"] == (ROOT / "claude/hooks" / name).read_bytes()
    assert (proj / ".orchestrate" / "state.db").exists()
    assert install.backup_path(settings).read_text() == USER_SETTINGS


def test_second_install_changes_nothing(proj: Path) -> None:
    target = install.project_target(proj)
    do_install(target)
    snapshot = tree(proj)
    backups = sorted(proj.rglob("*.orch-backup-*"))

    plan = do_install(target)

    assert plan.empty
    assert tree(proj) == snapshot
    assert sorted(proj.rglob("*.orch-backup-*")) == backups


def test_uninstall_restores_settings_byte_for_byte_and_removes_our_files(proj: Path) -> None:
    (proj / ".claude").mkdir()
    settings = proj / ".claude" / "settings.json"
    settings.write_text(USER_SETTINGS)
    before = tree(proj)
    target = install.project_target(proj)
    do_install(target)

    do_uninstall(target)

    assert settings.read_text() == USER_SETTINGS
    assert tree(proj) == before  # commands, hooks, manifest, empty dirs and .orchestrate gone
    assert not (proj / ".orchestrate").exists()
    assert not (proj / ".claude" / "commands").exists()
    assert do_uninstall(target).empty


def test_uninstall_of_a_fresh_install_leaves_no_trace(proj: Path) -> None:
    target = install.project_target(proj)
    do_install(target)
    assert (proj / ".claude" / "settings.json").exists()

    do_uninstall(target)

    assert not (proj / ".claude").exists()
    assert list(proj.iterdir()) == []


def test_uninstall_keeps_a_permission_the_user_had_and_later_changes(proj: Path) -> None:
    settings = proj / ".claude" / "settings.json"
    settings.parent.mkdir()
    settings.write_text(json.dumps({"permissions": {"allow": [install.PERMISSION]}}))
    target = install.project_target(proj)
    do_install(target)
    data = json.loads(settings.read_text())
    assert data["permissions"]["allow"] == [install.PERMISSION, "mcp__orch__*"]  # not twice
    data["theme"] = "dark"  # the user changes something else meanwhile
    settings.write_text(json.dumps(data, indent=2))

    do_uninstall(target)

    assert json.loads(settings.read_text()) == {
        "permissions": {"allow": [install.PERMISSION]},
        "theme": "dark",
    }


def test_uninstall_keeps_a_command_file_the_user_edited(proj: Path) -> None:
    target = install.project_target(proj)
    do_install(target)
    edited = proj / ".claude" / "commands" / "orchestrate" / "status.md"
    edited.write_text("my own version\n")

    plan = do_uninstall(target)

    assert edited.read_text() == "my own version\n"
    assert not (proj / ".claude" / "commands" / "orchestrate.md").exists()
    assert any("status.md" in n and "changed" in n for n in plan.notes)


def test_invalid_json_is_refused_and_left_untouched(proj: Path) -> None:
    settings = proj / ".claude" / "settings.json"
    settings.parent.mkdir()
    settings.write_text('{"hooks": {"Stop": [}\n')
    target = install.project_target(proj)

    with pytest.raises(OrchError, match=r"not valid JSON \(line 1, column 21.*Nothing was changed"):
        do_install(target)

    assert settings.read_text() == '{"hooks": {"Stop": [}\n'
    assert [p.name for p in proj.rglob("*")] == [".claude", "settings.json"]
    with pytest.raises(OrchError, match="not valid JSON"):
        do_uninstall(target)


@pytest.mark.parametrize(
    "content, problem",
    [
        ("[]", "top level"),
        ('{"hooks": []}', '"hooks" is not an object'),
        ('{"hooks": {"Stop": {}}}', '"hooks.Stop" is not a list'),
        ('{"permissions": {"allow": "Bash"}}', '"permissions.allow" is not a list'),
    ],
)
def test_settings_of_an_unexpected_shape_are_refused(
    proj: Path, content: str, problem: str
) -> None:
    settings = proj / ".claude" / "settings.json"
    settings.parent.mkdir()
    settings.write_text(content)
    with pytest.raises(OrchError, match=problem):
        do_install(install.project_target(proj))
    assert settings.read_text() == content


def test_a_file_of_the_users_is_not_overwritten_without_force(proj: Path) -> None:
    mine = proj / ".claude" / "commands" / "orchestrate.md"
    mine.parent.mkdir(parents=True)
    mine.write_text("my /orchestrate\n")
    target = install.project_target(proj)

    with pytest.raises(OrchError, match=r"commands/orchestrate.md.*--force"):
        do_install(target)
    assert mine.read_text() == "my /orchestrate\n"
    assert not (proj / ".claude" / "settings.json").exists()

    do_install(target, force=True)
    assert mine.read_bytes() == (ROOT / "claude/commands/orchestrate.md").read_bytes()
    assert install.backup_path(mine).read_text() == "my /orchestrate\n"


def test_reinstall_with_another_interpreter_replaces_our_hooks_in_place(proj: Path) -> None:
    target = install.project_target(proj)
    do_install(target)
    install.run(target, python="/new/python3", package_dir=PKG, echo=lambda _: None)
    data = json.loads((proj / ".claude" / "settings.json").read_text())
    for event in install.HOOK_EVENTS:
        [cmd] = our_hooks(data)[event]
        assert cmd.split()[3] == "/new/python3"
        assert len(data["hooks"][event]) == 1


def test_dry_run_changes_nothing_and_shows_the_diff(proj: Path) -> None:
    (proj / ".claude").mkdir()
    (proj / ".claude" / "settings.json").write_text(USER_SETTINGS)
    before = tree(proj)
    lines: list[str] = []

    install.run(
        install.project_target(proj), python=PY, package_dir=PKG, dry_run=True, echo=lines.append
    )

    assert tree(proj) == before and not (proj / ".orchestrate").exists()
    out = "\n".join(lines)
    assert "would create  .claude/commands/orchestrate.md" in out
    assert "would update  .claude/settings.json: add hook SessionStart" in out
    assert '+                        "command": "sh \\"$CLAUDE_PROJECT_DIR\\"' in out
    assert "would create  .orchestrate/ (state directory)" in out


def test_user_install_uses_absolute_paths_and_creates_no_state_dir(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    target = install.user_target(home)
    do_install(target)
    data = json.loads((home / ".claude" / "settings.json").read_text())
    [cmd] = our_hooks(data)["SessionStart"]
    assert cmd == f"sh {home}/.claude/hooks/orch-hook.sh SessionStart {PY} {PKG}"
    assert not (home / ".orchestrate").exists()
    do_uninstall(target)
    assert not (home / ".claude").exists()


def test_orch_install_and_uninstall_commands(proj: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(proj)
    runner = CliRunner()
    r = runner.invoke(app, ["install", "--project", str(proj), "--dry-run"])
    assert r.exit_code == 0, r.output
    assert "would create" in r.output and not (proj / ".claude").exists()
    r = runner.invoke(app, ["install", "--project", str(proj)])
    assert r.exit_code == 0, r.output
    data = json.loads((proj / ".claude" / "settings.json").read_text())
    [cmd] = our_hooks(data)["Stop"]
    assert cmd.split()[3] == install.default_python()
    assert cmd.split()[-1] == str(install.package_parent())
    r = runner.invoke(app, ["install", "--project", str(proj)])
    assert "nothing to change" in r.output
    r = runner.invoke(app, ["uninstall", "--project", str(proj)])
    assert r.exit_code == 0, r.output
    assert not (proj / ".claude").exists()


def test_bootstrap_dry_run_creates_nothing(proj: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    args = ["--venv", str(venv), "--dry-run", "--bin-dir", str(tmp_path / "bin")]
    r = subprocess.run(
        [sys.executable, str(ROOT / "install.py"), *args],
        cwd=proj,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    assert f"$ {sys.executable} -m venv {venv}" in r.stdout
    assert "would create  .claude/commands/orchestrate.md" in r.stdout
    assert f"orch-hook.sh SessionStart {venv}/bin/python3 " in r.stdout
    assert f"would link {tmp_path}/bin/orch -> {venv}/bin/orch" in r.stdout
    assert not venv.exists() and list(proj.iterdir()) == []
    assert not (tmp_path / "bin").exists()


def test_plugin_manifest_lists_exactly_the_command_files() -> None:
    manifest = json.loads((ROOT / ".claude-plugin" / "plugin.json").read_text())
    listed = sorted(manifest["commands"])
    on_disk = sorted(
        "./" + str(p.relative_to(ROOT)) for p in (ROOT / "claude" / "commands").rglob("*.md")
    )
    assert listed == on_disk
    assert manifest["version"] == __version__
    market = json.loads((ROOT / ".claude-plugin" / "marketplace.json").read_text())
    [entry] = market["plugins"]
    assert entry["name"] == manifest["name"] and entry["version"] == __version__
    hooks = json.loads((ROOT / manifest["hooks"]).read_text())["hooks"]
    assert sorted(hooks) == sorted(install.HOOK_EVENTS)
    for event, [group] in hooks.items():
        [hook] = group["hooks"]
        assert hook["command"].endswith(f'orch-hook.sh" {event}')


def test_the_goal_command_prefers_orchs_tools_when_the_session_has_them() -> None:
    text = (ROOT / "claude" / "commands" / "orchestrate.md").read_text()
    front = text[4:].partition("\n---\n")[0]
    tools = ("mcp__orch__launch", "mcp__orch__status", "mcp__orch__output", "mcp__orch__cost")
    assert all(t in front for t in tools) and "prefer them" in text


def test_every_claude_file_is_shipped_as_data() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    data_files = config["tool"]["setuptools"]["data-files"]
    patterns = [(dest, pat) for dest, pats in data_files.items() for pat in pats]
    needed = [p for p in (ROOT / "claude").rglob("*") if p.is_file()]
    needed.append(ROOT / ".claude-plugin" / "plugin.json")
    for path in needed:
        rel = str(path.relative_to(ROOT))
        assert any(
            fnmatch(rel, pat) and dest == f"share/orch-plugins/{Path(rel).parent}"
            for dest, pat in patterns
        ), rel


def test_command_files_have_front_matter_and_only_safe_preexecution() -> None:
    for path in (ROOT / "claude" / "commands").rglob("*.md"):
        text = path.read_text()
        assert text.startswith("---\n"), path
        front, _, body = text[4:].partition("\n---\n")
        assert "description:" in front and "allowed-tools: Bash(orch:*)" in front, path
        for line in body.splitlines():
            if "!`" in line:
                command = line.split("!`", 1)[1].rsplit("`", 1)[0]
                # Claude Code refuses $(…), $VAR and the like, and aborts the whole command
                # when a pre-executed line fails: only fixed, always-succeeding orch calls.
                assert command in ("orch status", "orch roles", "orch cost"), (path, command)


def test_bootstrap_uninstall_purge_removes_the_venv_and_its_link(
    proj: Path, tmp_path: Path
) -> None:
    venv, bin_dir = tmp_path / "venv", tmp_path / "bin"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "orch").write_text("#!/bin/sh\n")
    bin_dir.mkdir()
    (bin_dir / "orch").symlink_to(venv / "bin" / "orch")
    (bin_dir / "other").write_text("kept")
    args = ["--venv", str(venv), "--bin-dir", str(bin_dir), "--uninstall", "--purge"]
    r = subprocess.run(
        [sys.executable, str(ROOT / "install.py"), *args, "--project", str(proj)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    assert "nothing to change (not installed" in r.stdout
    assert not venv.exists() and not (bin_dir / "orch").is_symlink()
    assert (bin_dir / "other").read_text() == "kept"


def fake_venv(path: Path) -> Path:
    """Enough of a virtual environment for install.py's purge: its python and orch."""
    (path / "bin").mkdir(parents=True)
    (path / "bin" / "orch").write_text("#!/bin/sh\n")
    (path / "bin" / "python3").symlink_to(sys.executable)
    return path


def test_purge_is_refused_while_other_projects_use_the_environment(tmp_path: Path) -> None:
    venv, bin_dir = fake_venv(tmp_path / "venv"), tmp_path / "bin"
    one, two = tmp_path / "one", tmp_path / "two"
    for proj in (one, two):
        proj.mkdir()
        install.run(
            install.project_target(proj), python=str(venv / "bin/python3"), echo=lambda _: None
        )
    snapshot = tree(tmp_path)
    args = ["--venv", str(venv), "--bin-dir", str(bin_dir), "--uninstall", "--purge"]

    def purge_from(proj: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, str(ROOT / "install.py"), *args, "--project", str(proj)],
            capture_output=True,
            text=True,
            timeout=60,
        )

    r = purge_from(one)
    assert r.returncode == 1 and r.stdout == ""
    assert f"not purging {venv}" in r.stderr and str(two) in r.stderr and str(one) not in r.stderr
    assert tree(tmp_path) == snapshot  # nothing changed, in either project

    assert purge_from(two).returncode == 1  # and the other way round
    install.run(install.project_target(two), uninstall=True, echo=lambda _: None)
    r = purge_from(one)
    assert r.returncode == 0, r.stderr
    assert not venv.exists() and not (one / ".claude").exists()
    assert install.installs_using(venv) == []


def test_an_uninstalled_or_deleted_project_does_not_hold_the_environment(tmp_path: Path) -> None:
    venv = fake_venv(tmp_path / "venv")
    kept, gone = tmp_path / "kept", tmp_path / "gone"
    for proj in (kept, gone):
        proj.mkdir()
        install.run(
            install.project_target(proj), python=str(venv / "bin/python3"), echo=lambda _: None
        )
    install.run(
        install.user_target(tmp_path / "home"), python="/usr/bin/python3", echo=lambda _: None
    )
    shutil.rmtree(gone)
    assert [t.project_dir for t in install.installs_using(venv)] == [kept]
    (tmp_path / "link").symlink_to(tmp_path)  # the same environment through a link
    assert [t.project_dir for t in install.installs_using(tmp_path / "link/venv")] == [kept]
    assert install.installs_using(tmp_path / "elsewhere") == []


@pytest.mark.parametrize("scope", ["project", "user"])
def test_a_symlinked_settings_json_is_written_through_and_restored(
    tmp_path: Path, scope: str
) -> None:
    dotfiles = tmp_path / "dotfiles" / "claude-settings.json"
    dotfiles.parent.mkdir()
    dotfiles.write_text(USER_SETTINGS)
    if scope == "project":
        (tmp_path / "proj").mkdir()
        target = install.project_target(tmp_path / "proj")
    else:
        target = install.user_target(tmp_path / "home")
    target.claude_dir.mkdir(parents=True)
    link = target.settings_path
    link.symlink_to(dotfiles)

    do_install(target)

    assert link.is_symlink() and link.resolve() == dotfiles
    assert our_hooks(json.loads(dotfiles.read_text()))["Stop"]
    assert not list(target.claude_dir.glob(".settings.json*"))  # no temporary file left

    do_uninstall(target)

    assert link.is_symlink() and dotfiles.read_text() == USER_SETTINGS


def test_crlf_and_a_bom_are_kept_and_uninstall_restores_the_bytes(proj: Path) -> None:
    settings = proj / ".claude" / "settings.json"
    settings.parent.mkdir()
    original = b"\xef\xbb\xbf" + USER_SETTINGS.replace("\n", "\r\n").encode("utf-8")
    settings.write_bytes(original)
    target = install.project_target(proj)

    do_install(target)

    raw = settings.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf") and raw.count(b"\n") == raw.count(b"\r\n") > 10
    assert our_hooks(json.loads(raw.decode("utf-8-sig")))["Stop"]
    do_uninstall(target)
    assert settings.read_bytes() == original

    # Uninstall after a change of the user's: rewritten, in the file's style.
    do_install(target)
    data = json.loads(settings.read_bytes().decode("utf-8-sig"))
    data["theme"] = "dark"
    settings.write_bytes(
        b"\xef\xbb\xbf" + json.dumps(data, indent=4).replace("\n", "\r\n").encode()
    )
    do_uninstall(target)
    raw = settings.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf") and raw.count(b"\n") == raw.count(b"\r\n")
    assert json.loads(raw.decode("utf-8-sig")) == {**json.loads(USER_SETTINGS), "theme": "dark"}


def racing_writer(monkeypatch: pytest.MonkeyPatch, changes: list[str]) -> list[str]:
    """After each of the installer's reads of settings.json, someone saves the next change."""
    real = install.read_settings
    saved: list[str] = []

    def read_then_someone_saves(path: Path) -> install.Settings:
        result = real(path)
        if changes:
            saved.append(changes.pop(0))
            data = json.loads(path.read_text()) if path.exists() else {}
            path.write_text(json.dumps({**data, "theme": saved[-1]}, indent=2) + "\n")
        return result

    monkeypatch.setattr(install, "read_settings", read_then_someone_saves)
    return saved


@pytest.mark.parametrize("uninstall", [False, True])
def test_a_change_saved_between_read_and_write_is_kept(
    proj: Path, monkeypatch: pytest.MonkeyPatch, uninstall: bool
) -> None:
    settings = proj / ".claude" / "settings.json"
    settings.parent.mkdir()
    settings.write_text(USER_SETTINGS)
    target = install.project_target(proj)
    if uninstall:
        do_install(target)
    racing_writer(monkeypatch, ["dark"])

    do_uninstall(target) if uninstall else do_install(target)

    data = json.loads(settings.read_text())
    assert data["theme"] == "dark"  # the change someone saved meanwhile
    assert bool(our_hooks(data).get("Stop")) is not uninstall  # and the installer's
    assert data["env"] == {"FOO": "bär"}


def test_settings_that_keep_changing_are_refused_and_nothing_is_lost(
    proj: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = proj / ".claude" / "settings.json"
    settings.parent.mkdir()
    settings.write_text(USER_SETTINGS)
    racing_writer(monkeypatch, ["a", "b", "c", "d"])

    with pytest.raises(OrchError, match="changed while the installer was writing it 3 times"):
        do_install(install.project_target(proj))

    data = json.loads(settings.read_text())
    assert data["theme"] == "c" and not our_hooks(data).get("Stop")
    assert [p.name for p in (proj / ".claude").iterdir()] == ["settings.json"]


def test_one_backup_per_file_under_the_data_dir(proj: Path, data_dir: Path) -> None:
    settings = proj / ".claude" / "settings.json"
    settings.parent.mkdir()
    settings.write_text(USER_SETTINGS)
    target = install.project_target(proj)
    for _ in range(3):
        do_install(target)
        installed = settings.read_text()
        do_uninstall(target)

    backups = [p for p in data_dir.rglob("*") if p.is_file() and "backups" in p.parts]
    assert backups == [install.backup_path(settings)]
    assert backups[0] == data_dir / "backups" / str(settings).lstrip("/")
    assert backups[0].read_text() == installed  # as it was before the last change
    assert not list(proj.rglob("*orch-backup*"))


MCP_JSON = """{
    "mcpServers": {
        "theirs": {"command": "node", "args": ["srv.js"]}
    }
}
"""


def test_the_mcp_server_is_registered_and_removed_exactly(proj: Path) -> None:
    mcp_json = proj / ".mcp.json"
    mcp_json.write_text(MCP_JSON)
    target = install.project_target(proj)
    do_install(target)
    servers = json.loads(mcp_json.read_text())["mcpServers"]
    assert servers == {
        "theirs": {"command": "node", "args": ["srv.js"]},
        "orch": {"command": PY, "args": ["-m", "orch_plugins.cli", "mcp"]},
    }
    assert do_install(target).empty  # a second install changes nothing

    do_uninstall(target)

    assert mcp_json.read_text() == MCP_JSON  # byte for byte
    assert not (proj / ".claude").exists()


def test_a_fresh_mcp_json_goes_with_the_install_and_a_foreign_orch_server_stays(
    proj: Path,
) -> None:
    target = install.project_target(proj)
    do_install(target)
    assert json.loads((proj / ".mcp.json").read_text())["mcpServers"]["orch"]["command"] == PY
    do_uninstall(target)
    assert list(proj.iterdir()) == []

    foreign = '{"mcpServers": {"orch": {"command": "other"}}}'
    (proj / ".mcp.json").write_text(foreign)
    with pytest.raises(OrchError, match="already has an MCP server named 'orch'"):
        do_install(target)
    assert (proj / ".mcp.json").read_text() == foreign and not (proj / ".claude").exists()

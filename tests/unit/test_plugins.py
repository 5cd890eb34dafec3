"""The plugin system: entry-point discovery, the example plugin end to end, broken and clashing
plugins, the environment knobs, ``.claude/agents`` roles, and that every hook is documented.

In-process tests build their own :class:`Plugins` with fake entry points; the end-to-end ones run
the real ``orch`` and see whatever is installed, so the example plugin must be installed too.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from orch_plugins import hookimpl, plugins
from orch_plugins.backend import Backend, Handle, LaunchSpec
from orch_plugins.backends.subprocess import SubprocessBackend
from orch_plugins.errors import OrchError
from orch_plugins.plugins import Plugins
from orch_plugins.roles import Role
from tests.helpers import orch, pid_gone, status_json, wait_for, write_dist

EXAMPLE_SOURCE = "entry point orch_example_plugin (orch-example-plugin)"
INSTALL_HINT = "pip install -e examples/orch-example-plugin"
KNOBS = ("ORCH_PLUGINS_ALLOW", "ORCH_PLUGINS_BLOCK", "ORCH_PLUGINS_TRACE", "ORCH_EXAMPLE_LOG")

#: The backends built-in plugins register (the short names of the backend modules in BUILTINS).
BUILTIN_BACKENDS = {
    short for short, module in plugins.BUILTINS if module.startswith("orch_plugins.backends.")
}


@pytest.fixture(autouse=True)
def _no_knobs(monkeypatch: pytest.MonkeyPatch) -> None:
    """A developer's own ORCH_PLUGINS_* settings must not change what these tests see."""
    for var in KNOBS:
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def scratch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project dir and HOME for in-process tests (no agents, so no cleanup needed)."""
    proj, home = tmp_path / "proj", tmp_path / "home"
    proj.mkdir()
    home.mkdir()
    monkeypatch.chdir(proj)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("CLAUDE_PROJECT_DIR", raising=False)
    return proj


def require_example_plugin() -> None:
    """Fail (not error, never skip) without the example plugin: a skipped test reads as green."""
    if not any(ep.name == "example" for ep in entry_points(group=plugins.ENTRY_POINT_GROUP)):
        pytest.fail(
            f"the example plugin is not installed; run `{INSTALL_HINT}` (CI does the same)",
            pytrace=False,
        )


# -- fakes ----------------------------------------------------------------------------------


@dataclass
class FakeEntryPoint:
    """Quacks like ``importlib.metadata.EntryPoint`` as far as :class:`Plugins` cares."""

    name: str
    value: str
    plugin: object = None
    error: Exception | None = None
    dist_name: str = "orch-fake"

    @property
    def dist(self) -> SimpleNamespace:
        return SimpleNamespace(name=self.dist_name)

    def load(self) -> object:
        if self.error is not None:
            raise self.error
        return self.plugin


def fake_plugins(*eps: FakeEntryPoint) -> tuple[Plugins, list[int]]:
    """A fresh manager whose entry-point scan returns ``eps``; the list counts the scans."""
    scans: list[int] = []

    def discover() -> list[Any]:
        scans.append(1)
        return list(eps)

    return Plugins(entry_points=discover), scans


class NullBackend(Backend):
    name = "null"

    def launch(self, spec: LaunchSpec) -> Handle:
        return {}

    def is_alive(self, handle: Handle) -> bool:
        return False

    def cancel(self, handle: Handle, grace: float) -> None:
        pass


class Registers:
    """A plugin that registers the given backend classes and roles."""

    def __init__(self, *items: type[Backend] | Role) -> None:
        self.items = items

    @hookimpl
    def orch_register_backends(self, registry: Any) -> None:
        for item in self.items:
            if isinstance(item, type):
                registry.add(item)

    @hookimpl
    def orch_register_roles(self, registry: Any) -> None:
        for item in self.items:
            if isinstance(item, Role):
                registry.add(item)


class Listener:
    def __init__(self, seen: list[str], fail: bool = False) -> None:
        self.seen, self.fail = seen, fail

    @hookimpl
    def orch_agent_launched(self, run: dict[str, Any]) -> None:
        if self.fail:
            raise RuntimeError("listener broke")
        self.seen.append(run["name"])


def done(name: str) -> dict[str, Any]:
    return wait_for(
        lambda: next(
            (r for r in status_json(name) if r["status"] not in ("queued", "running")), None
        )
    )


# -- discovery through the entry point -------------------------------------------------------


def test_cli_lists_the_example_plugin_with_its_source(project: Path) -> None:
    require_example_plugin()
    backends = {b["name"]: b for b in json.loads(orch("backends", "--json", check=True).stdout)}
    assert backends["example-inline"]["source"] == EXAMPLE_SOURCE
    assert backends["subprocess"]["source"] == "built-in orch_plugins.backends.subprocess"
    roles = {r["name"]: r for r in json.loads(orch("roles", "--json", check=True).stdout)}
    assert roles["example-reviewer"]["source"] == EXAMPLE_SOURCE
    assert roles["bug-hunter"]["source"] == "built-in orch_plugins.roles.builtin"
    infos = {p["name"]: p for p in json.loads(orch("plugins", "--json", check=True).stdout)}
    assert infos["example"] == {
        "name": "example",
        "source": EXAMPLE_SOURCE,
        "hooks": ["orch_agent_launched", "orch_register_backends", "orch_register_roles"],
        "error": None,
    }
    assert {"subprocess", "builtin_roles", "claude_agents"} <= set(infos)
    text = orch("plugins", check=True).stdout
    assert re.search(r"^example\s+" + re.escape(EXAMPLE_SOURCE) + "$", text, re.M), text


def test_example_backend_and_role_end_to_end(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    require_example_plugin()
    log = tmp_path / "launched.log"
    monkeypatch.setenv("ORCH_EXAMPLE_LOG", str(log))
    args = ("--backend", "example-inline", "--role", "example-reviewer")
    orch("launch", "ex", "check src/", *args, check=True)
    assert "ex: completed" in orch("wait", "ex", check=True).stdout
    [run] = status_json("ex")
    assert (run["status"], run["backend"], run["role"]) == (
        "completed",
        "example-inline",
        "example-reviewer",
    )
    framed = "Review (example plugin): check src/"
    out = orch("output", "ex", check=True).stdout
    assert f"sha256={hashlib.sha256(framed.encode()).hexdigest()}" in out  # role framed the task
    argv = json.loads(out.split("argv=", 1)[1])
    assert argv[argv.index("--allowedTools") + 1] == "Read,Grep,Glob"
    assert log.read_text() == f"launched ex run={run['run_id']} backend=example-inline\n"
    handle = _handle_of(project, run["run_id"])
    assert handle["via"] == "example" and handle["pid"] > 0 and handle["start_time"]


def _handle_of(project: Path, run_id: int) -> dict[str, Any]:
    """The backend's handle as stored: not part of the public status object."""
    con = sqlite3.connect(project / ".orchestrate" / "state.db")
    try:
        row = con.execute("SELECT handle FROM runs WHERE run_id=?", (run_id,)).fetchone()
    finally:
        con.close()
    return json.loads(row[0])


def test_example_backend_cancels(project: Path) -> None:
    require_example_plugin()
    orch("launch", "slow", "SLEEP=60", "--backend", "example-inline", check=True)
    run = wait_for(lambda: status_json("slow")[0]["session_id"] and status_json("slow")[0])
    handle = _handle_of(project, run["run_id"])
    assert "slow: cancelled" in orch("cancel", "slow", check=True).stdout
    assert status_json("slow")[0]["status"] == "cancelled"
    wait_for(lambda: pid_gone(handle["pid"]), timeout=10)


def test_third_party_listeners_hear_default_backend_launches(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    require_example_plugin()
    log = tmp_path / "launched.log"
    monkeypatch.setenv("ORCH_EXAMPLE_LOG", str(log))
    orch("launch", "plain", "hi", check=True)
    assert done("plain")["status"] == "completed"
    assert "launched plain " in log.read_text()
    # A queued run is started by a detached admission process: the listener hears it there too.
    orch("parallel", "SLEEP=0.3", "SLEEP=0.3", "--max-parallel", "1", "--prefix", "q", check=True)
    orch("wait", check=True)
    assert [line.split()[1] for line in log.read_text().splitlines()] == ["plain", "q1", "q2"]


# -- broken third-party plugins ---------------------------------------------------------------


class Misspelt:
    @hookimpl
    def orch_register_backend(self, registry: Any) -> None:  # sic: no "s"
        raise AssertionError("never called")


class BadSignature:
    """A good hook next to one whose arguments match no spec: the whole plugin must go."""

    def __init__(self, seen: list[str]) -> None:
        self.seen = seen

    @hookimpl
    def orch_agent_launched(self, run: dict[str, Any]) -> None:
        self.seen.append(run["name"])

    @hookimpl
    def orch_register_roles(self, registry: Any, extra: Any) -> None:
        raise AssertionError("never called")


def test_broken_plugins_are_reported_and_skipped(
    scratch: Path, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[str] = []
    p, _ = fake_plugins(
        FakeEntryPoint("boom", "boom_mod", error=ImportError("no module named boom_dep")),
        FakeEntryPoint("typo", "typo_mod", Misspelt()),
        FakeEntryPoint("badsig", "badsig_mod", BadSignature(seen)),
        FakeEntryPoint("good", "good_mod", Registers(NullBackend)),
    )
    with caplog.at_level(logging.WARNING, logger="orch_plugins.plugins"):
        p.load_external()
    assert "Failed to load plugin boom=boom_mod: no module named boom_dep" in caplog.text
    assert (
        "Failed to load plugin typo=typo_mod: unknown hook 'orch_register_backend'" in caplog.text
    )
    assert "Failed to load plugin badsig=badsig_mod: " in caplog.text
    # Nothing of a rejected plugin stays registered, not even its valid hooks.
    for name in ("boom", "typo", "badsig"):
        assert not p.pm.has_plugin(name)
    p.notify("orch_agent_launched", run={"name": "a1"})
    assert seen == []
    assert p.backend_class("null") is NullBackend
    assert p.backend_class("subprocess") is SubprocessBackend
    infos = {i.name: i for i in p.plugin_infos()}
    assert infos["boom"].error == "no module named boom_dep"
    assert infos["boom"].source == "entry point boom_mod (orch-fake)"
    assert infos["typo"].error and infos["badsig"].error
    assert infos["good"].error is None and infos["good"].hooks == [
        "orch_register_backends",
        "orch_register_roles",
    ]


def test_entry_point_name_taken_is_reported_not_silently_dropped(
    scratch: Path, caplog: pytest.LogCaptureFixture
) -> None:
    p, _ = fake_plugins(
        FakeEntryPoint("subprocess", "other_mod", Registers(NullBackend)),
        FakeEntryPoint("x", "x_one", Registers()),
        FakeEntryPoint("x", "x_two", Registers(), dist_name="orch-other"),
    )
    with caplog.at_level(logging.WARNING, logger="orch_plugins.plugins"):
        infos = {(i.name, i.source): i for i in p.plugin_infos()}
    assert "Failed to load plugin subprocess=other_mod: " in caplog.text
    assert "built-in orch_plugins.backends.subprocess" in caplog.text
    assert "Failed to load plugin x=x_two: " in caplog.text
    assert infos["x", "entry point x_two (orch-other)"].error
    assert p.backends().names() == sorted(BUILTIN_BACKENDS)


class NoArgs:
    """pluggy lets an implementation take a subset of the spec's arguments, even none."""

    def __init__(self, seen: list[str]) -> None:
        self.seen = seen

    @hookimpl
    def orch_agent_launched(self) -> None:
        self.seen.append("no-args")


class Wrapper:
    @hookimpl(wrapper=True)
    def orch_agent_launched(self, run: dict[str, Any]) -> Iterator[None]:
        raise AssertionError("never called")
        yield


def test_a_failing_listener_does_not_silence_the_others(
    scratch: Path, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[str] = []
    p, _ = fake_plugins(
        FakeEntryPoint("first", "first_mod", Listener(seen)),
        FakeEntryPoint("noargs", "noargs_mod", NoArgs(seen)),
        FakeEntryPoint("wrapper", "wrapper_mod", Wrapper()),
        FakeEntryPoint("broken", "broken_mod", Listener(seen, fail=True)),
    )
    with caplog.at_level(logging.WARNING, logger="orch_plugins.plugins"):
        p.notify("orch_agent_launched", run={"name": "a1"})
    assert sorted(seen) == ["a1", "no-args"]
    assert "plugin broken failed in orch_agent_launched: listener broke" in caplog.text
    assert "plugin wrapper: wrappers of orch_agent_launched are not supported" in caplog.text


def test_broken_plugins_on_disk_do_not_stop_the_cli(project: Path, site: Path) -> None:
    require_example_plugin()
    write_dist(
        site,
        "orch-broken",
        {"broken": "orch_broken_plugin", "typo": "orch_typo_plugin"},
        {
            "orch_broken_plugin": 'raise RuntimeError("boom on import")\n',
            "orch_typo_plugin": (
                "from orch_plugins import hookimpl\n\n"
                "@hookimpl\ndef orch_register_backend(registry):\n    pass\n"
            ),
        },
    )
    r = orch("plugins", "--json", check=True)
    assert "Failed to load plugin broken=orch_broken_plugin: boom on import" in r.stderr
    assert "Failed to load plugin typo=orch_typo_plugin: unknown hook 'orch_register_backend'" in (
        r.stderr
    )
    infos = {p["name"]: p for p in json.loads(r.stdout)}
    assert infos["broken"]["error"] == "boom on import"
    assert infos["broken"]["source"] == "entry point orch_broken_plugin (orch-broken)"
    assert infos["example"]["error"] is None
    orch("launch", "a", "hi", check=True)
    orch("launch", "b", "hi", "--backend", "example-inline", check=True)
    assert "a: completed" in orch("wait", "a", "b", check=True).stdout
    assert {r["status"] for r in status_json()} == {"completed"}


# -- duplicate names --------------------------------------------------------------------------


class Dupe(NullBackend):
    name = "subprocess"


def test_duplicate_backend_and_role_names_name_both_owners(scratch: Path) -> None:
    p, _ = fake_plugins(
        FakeEntryPoint("dupe", "dupe_mod", Registers(Dupe, Role(name="bug-hunter")))
    )
    p.load_external()
    with pytest.raises(OrchError) as exc:
        p.backends()
    message = str(exc.value)
    assert "backend name 'subprocess' is registered twice" in message
    assert "built-in orch_plugins.backends.subprocess" in message
    assert "entry point dupe_mod (orch-fake)" in message
    with pytest.raises(OrchError) as exc:
        p.roles()
    message = str(exc.value)
    assert "role name 'bug-hunter' is registered twice" in message
    assert "built-in orch_plugins.roles.builtin" in message
    assert "entry point dupe_mod (orch-fake)" in message


def test_agent_file_overrides_a_builtin_role_of_the_same_name(scratch: Path) -> None:
    text = "---\nname: tester\ndescription: my own\n---\nmine\n"
    path = _agent(Path.home() / ".claude" / "agents", "tester", text)
    p, _ = fake_plugins()
    role = p.role("tester")
    assert role.system_prompt == "mine" and role.source == str(path)
    assert p.roles().overridden("tester") == "built-in orch_plugins.roles.builtin"
    assert p.role("bug-hunter").name == "bug-hunter"  # the others are untouched


def test_two_user_agent_files_of_one_name_fail_loudly(scratch: Path) -> None:
    from orch_plugins.roles import Role, RoleRegistry

    reg = RoleRegistry()
    reg.current_owner = "a"
    reg.add(Role(name="x"), user_file=True)
    reg.current_owner = "b"
    with pytest.raises(OrchError, match="registered twice: by a and by b"):
        reg.add(Role(name="x"), user_file=True)


def test_duplicate_backend_fails_the_cli_loudly(project: Path, site: Path) -> None:
    write_dist(
        site,
        "orch-dupe",
        {"dupe": "orch_dupe_plugin"},
        {
            "orch_dupe_plugin": (
                "from orch_plugins import hookimpl\n"
                "from orch_plugins.backends.subprocess import SubprocessBackend\n\n"
                "class Mine(SubprocessBackend):\n    name = 'subprocess'\n\n"
                "@hookimpl\ndef orch_register_backends(registry):\n"
                "    registry.add(Mine)\n"
            )
        },
    )
    r = orch("backends")
    assert r.returncode == 1
    assert r.stderr.startswith("orch: error: backend name 'subprocess' is registered twice")
    assert "built-in orch_plugins.backends.subprocess" in r.stderr
    assert "entry point orch_dupe_plugin (orch-dupe)" in r.stderr


# -- knobs ----------------------------------------------------------------------------------


def test_allow_and_block_lists(scratch: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def eps() -> tuple[FakeEntryPoint, ...]:
        return (
            FakeEntryPoint("one", "one_mod", Registers(NullBackend)),
            FakeEntryPoint("two", "two_mod", Registers(Role(name="two-role"))),
        )

    def loaded() -> set[str]:
        p, _ = fake_plugins(*eps())
        return {i.name for i in p.plugin_infos()}

    assert {"one", "two"} <= loaded()
    monkeypatch.setenv("ORCH_PLUGINS_ALLOW", "two, nosuch")
    assert "one" not in loaded() and "two" in loaded()
    monkeypatch.setenv("ORCH_PLUGINS_BLOCK", "two")
    assert not {"one", "two"} & loaded()
    monkeypatch.delenv("ORCH_PLUGINS_ALLOW")
    assert "one" in loaded() and "two" not in loaded()
    # Built-ins are never subject to the allow-list, but the block-list takes their short names.
    agents = scratch / ".claude" / "agents"
    agents.mkdir(parents=True)
    (agents / "mine.md").write_text("---\nname: mine\ndescription: my own\n---\nbody\n")
    monkeypatch.setenv("ORCH_PLUGINS_ALLOW", "one")
    p, _ = fake_plugins(*eps())
    assert p.role("mine").name == "mine"
    monkeypatch.setenv("ORCH_PLUGINS_BLOCK", "claude_agents")
    p, _ = fake_plugins(*eps())
    assert not p.pm.has_plugin("claude_agents")
    assert "claude_agents" not in {i.name for i in p.plugin_infos()}
    with pytest.raises(OrchError, match="unknown role 'mine'"):
        p.role("mine")
    assert p.role("bug-hunter").name == "bug-hunter"


def test_allow_and_block_through_the_cli(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    require_example_plugin()

    def names() -> set[str]:
        return {b["name"] for b in json.loads(orch("backends", "--json", check=True).stdout)}

    monkeypatch.setenv("ORCH_PLUGINS_BLOCK", "example")
    assert names() == BUILTIN_BACKENDS
    r = orch("launch", "x", "t", "--backend", "example-inline")
    assert r.returncode == 1 and "unknown backend 'example-inline'" in r.stderr
    monkeypatch.delenv("ORCH_PLUGINS_BLOCK")
    monkeypatch.setenv("ORCH_PLUGINS_ALLOW", "someone-else")
    assert names() == BUILTIN_BACKENDS
    monkeypatch.setenv("ORCH_PLUGINS_ALLOW", "example")
    assert names() == {*BUILTIN_BACKENDS, "example-inline"}


def test_trace_prints_hook_calls(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    require_example_plugin()
    r = orch("backends", check=True)
    assert "orch-trace" not in r.stderr
    monkeypatch.setenv("ORCH_PLUGINS_TRACE", "1")
    r = orch("backends", check=True)
    assert "orch-trace: orch_register_backends [subprocess]" in r.stderr
    assert "orch-trace: orch_register_backends [example]" in r.stderr
    assert "orch-trace" not in r.stdout
    r = orch("launch", "t1", "hi", check=True)
    assert "orch-trace: orch_agent_launched [example]" in r.stderr


# -- lazy scanning ----------------------------------------------------------------------------


def test_builtins_resolve_without_scanning_entry_points(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    p, scans = fake_plugins()
    assert p.backend_class("subprocess") is SubprocessBackend
    assert p.role("bug-hunter").name == "bug-hunter"
    assert p.backends().names() == sorted(BUILTIN_BACKENDS)
    assert scans == []
    with pytest.raises(OrchError, match="unknown backend 'nosuch'"):
        p.backend_class("nosuch")  # an unknown name is what makes it look
    assert scans == [1]

    # A whole launch: role and backend resolve without a scan; the one scan comes after the
    # backend returned, for the orch_agent_launched event (third-party listeners must hear it).
    from orch_plugins.core import Orchestrator
    from orch_plugins.model import LaunchRequest
    from orch_plugins.store import Store

    store = Store.open()
    handles_at_scan: list[object] = []

    def discover() -> list[Any]:
        handles_at_scan.append(store.latest("a1")["handle"])
        return []

    monkeypatch.setattr(plugins, "discover_entry_points", discover)
    plugins.set_plugins(None)
    orch_ = Orchestrator(store=store)
    orch_.launch(LaunchRequest("a1", "hi", role="bug-hunter"))
    assert len(handles_at_scan) == 1 and handles_at_scan[0], handles_at_scan
    [run] = orch_.wait(["a1"], timeout=30)
    assert run["status"] == "completed"
    assert len(handles_at_scan) == 1  # status reads never scan


# -- .claude/agents ---------------------------------------------------------------------------


def _agent(directory: Path, stem: str, text: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{stem}.md"
    path.write_text(text, encoding="utf-8")
    return path


def test_claude_agent_files_become_roles(scratch: Path, caplog: pytest.LogCaptureFixture) -> None:
    proj_dir = scratch / ".claude" / "agents"
    user_dir = Path.home() / ".claude" / "agents"
    shared = _agent(
        proj_dir,
        "shared",
        "---\nname: shared\ndescription: 'project copy'\ntools: Read, Grep ,Bash(git log:*)\n"
        "model: inherit\n---\nYou review things.\n\nCarefully.\n",
    )
    _agent(user_dir, "shared", "---\nname: shared\ndescription: user copy\nmodel: opus\n---\nx\n")
    _agent(
        user_dir,
        "user-only",
        "---\nname: user-only\ndescription: from home\nmodel: sonnet\n---\nHi.\n",
    )
    _agent(proj_dir, "plain", "No front matter at all.\n")
    broken = _agent(proj_dir, "broken", "---\nname: broken\ndescription: never closed\n")
    (proj_dir / "latin1.md").write_bytes(b"---\nname: latin1\n---\ncaf\xe9\n")
    (proj_dir / "notes.txt").write_text("not an agent file")

    with caplog.at_level(logging.WARNING, logger="orch_plugins.roles.claude_agents"):
        p, _ = fake_plugins()
        roles = p.roles()
    role = roles.get("shared")
    assert role is not None
    assert role.description == "project copy"  # project beats user
    assert role.allowed_tools == ("Read", "Grep", "Bash(git log:*)")
    assert role.model is None  # inherit
    assert role.system_prompt == "You review things.\n\nCarefully."
    assert role.source == str(shared)
    user_only = roles.get("user-only")
    assert user_only and user_only.model == "sonnet" and user_only.allowed_tools == ()
    assert roles.get("plain") is None  # no front matter: Claude Code ignores it too
    assert roles.get("broken") is None and roles.get("latin1") is None
    assert roles.get("notes") is None
    assert f"skipping agent file {broken}: front matter is not closed" in caplog.text
    assert "latin1.md" in caplog.text


def test_roles_show_prints_one_role(project: Path) -> None:
    path = _agent(
        project / ".claude" / "agents",
        "auditor",
        "---\nname: auditor\ndescription: Audits\ntools: Read, Grep\nmodel: inherit\n---\n"
        "Audit it.\n",
    )
    out = orch("roles", "--show", "auditor", check=True).stdout
    assert out.splitlines()[:7] == [
        "name: auditor",
        "description: Audits",
        f"source: {path}",
        "model: -",
        "permission_mode: default",
        "allowed_tools: Read, Grep",
        "disallowed_tools: -",
    ]
    assert out.endswith("system_prompt:\nAudit it.\n")
    data = json.loads(orch("roles", "--show", "auditor", "--json", check=True).stdout)
    assert data["allowed_tools"] == ["Read", "Grep"] and data["model"] is None
    builtin = json.loads(orch("roles", "--show", "bug-hunter", "--json", check=True).stdout)
    assert builtin["source"] == "built-in orch_plugins.roles.builtin"
    r = orch("roles", "--show", "nosuch")
    assert r.returncode == 1 and "unknown role 'nosuch'" in r.stderr

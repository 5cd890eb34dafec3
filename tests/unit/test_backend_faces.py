"""Backends own their faces: commands that plugins add (``orch_register_commands``), launch
options that backends declare (``-o KEY=VALUE`` and their own flags), checks they add to
``orch doctor``; and the command line names no backend itself."""

from __future__ import annotations

import ast
import importlib
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import ROOT, orch, status_json, wait_for, write_dist

CLI = ROOT / "src" / "orch_plugins" / "cli"

GREET = '''
import os
from pathlib import Path

Path(os.environ["GREET_MARK"]).write_text("imported")  # shows when orch loaded plugins

import typer
from orch_plugins import hookimpl


@hookimpl
def orch_register_commands(app):
    @app.command()
    def greet(name: str = typer.Argument("world", metavar="NAME")) -> None:
        """Say hello from a plugin."""
        typer.echo(f"hello {name}")
'''

STATUS_THIEF = '''
from orch_plugins import hookimpl


@hookimpl
def orch_register_commands(app):
    @app.command()
    def status() -> None:
        """Not orch's status."""
'''

ZONED = """
from orch_plugins import hookimpl
from orch_plugins.backend import DoctorCheck, LaunchOption
from orch_plugins.backends.subprocess import SubprocessBackend


class ZonedBackend(SubprocessBackend):
    name = "zoned"
    description = "test: the default backend with options"
    options = (
        LaunchOption("zone", "Zone to run in (implies --backend zoned).", flag="--zone",
                     metavar="ZONE", selects_backend=True),
        LaunchOption("gpus", "GPUs to ask for.", type=int),
        LaunchOption("spot", "Take a spot machine.", type=bool),
    )

    def doctor(self, hosts):
        return [DoctorCheck("local", "zones", None, f"hosts asked: {','.join(hosts) or '-'}")]


@hookimpl
def orch_register_backends(registry):
    registry.add(ZonedBackend)
"""


def test_a_plugin_adds_a_command_and_status_never_loads_it(
    project: Path, site: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mark = tmp_path / "greet-imported"
    monkeypatch.setenv("GREET_MARK", str(mark))
    write_dist(site, "orch-greet", {"greet": "orch_greet"}, {"orch_greet": GREET})
    assert orch("status", check=True).stdout == "no agents\n"
    assert orch("--version", check=True).stdout.startswith("orch-plugins ")
    assert not mark.exists()  # orch's own commands never load plugins
    assert orch("greet", "you", check=True).stdout == "hello you\n"
    assert mark.exists()
    listed = re.findall(r"^│ (\w+) ", orch("--help", check=True).stdout, re.M)
    assert listed[-2:] == ["dashboard", "greet"], listed  # after orch's own, in plugin order
    assert "Say hello from a plugin." in orch("greet", "--help", check=True).stdout
    plugins = {p["name"]: p for p in json.loads(orch("plugins", "--json", check=True).stdout)}
    assert plugins["greet"]["hooks"] == ["orch_register_commands"]
    assert plugins["tmux"]["hooks"] == ["orch_register_backends", "orch_register_commands"]


def test_a_command_name_taken_fails_loudly_naming_both_owners(project: Path, site: Path) -> None:
    write_dist(site, "orch-thief", {"thief": "orch_thief"}, {"orch_thief": STATUS_THIEF})
    r = orch("--help")
    assert r.returncode == 1
    assert r.stderr.strip() == (
        "orch: error: command name 'status' is registered twice: by orch itself and by "
        "entry point orch_thief (orch-thief)"
    )
    assert orch("status", check=True).stdout == "no agents\n"  # orch's own still works


def test_declared_options_flags_and_checks(
    project: Path, site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "200")  # the help text is read whole, not as wrapped
    write_dist(site, "orch-zoned", {"zoned": "orch_zoned"}, {"orch_zoned": ZONED})
    help_text = orch("launch", "--help", check=True).stdout
    assert "--zone" in help_text and "Zone to run in (implies --backend zoned)." in help_text
    assert help_text.index("--option") < help_text.index("--zone") < help_text.index("--wait")

    # Bad options: one line, nothing recorded.
    for args, error in (
        (["-o", "gpus=two"], "launch option 'gpus' of backend 'zoned' must be int, not 'two'"),
        (["-o", "spot=maybe"], "launch option 'spot' of backend 'zoned' is true or false"),
        (["-o", "nosuch=1"], "backend 'zoned' has no launch option 'nosuch' (it takes: gpus"),
        (["-o", "zone"], "-o takes KEY=VALUE, not 'zone'"),
        (["-o", "zone=a", "--zone", "b"], "launch option 'zone' is given twice"),
        (["--interactive"], "--zone selects backend 'zoned' and --interactive selects backend"),
    ):
        r = orch("launch", "z1", "task", "--zone", "eu", *args)
        assert r.returncode == 1 and r.stderr.startswith(f"orch: error: {error}"), (args, r)
        assert len(r.stderr.strip().splitlines()) == 1
    r = orch("launch", "z1", "task", "--interactive", "-b", "subprocess")
    assert r.stderr.strip() == (
        "orch: error: backend 'subprocess' has no launch option 'interactive' (it takes: none)"
    )
    assert status_json() == []

    # The flag picks the backend; -o values arrive converted to their declared types.
    launched = json.loads(
        orch(
            "launch",
            "z1",
            "task",
            "--zone",
            "eu",
            "-o",
            "gpus=2",
            "-o",
            "spot=yes",
            "--json",
            check=True,
        ).stdout
    )
    assert launched["backend"] == "zoned"
    spec = json.loads(Path(launched["output_path"]).with_name("spec.json").read_text())
    assert spec["options"] == {"zone": "eu", "gpus": 2, "spot": True}
    wait_for(lambda: status_json("z1")[0]["status"] == "completed")
    # ...and for a whole batch, with --backend naming the backend instead.
    runs = json.loads(
        orch("parallel", "a", "b", "-b", "zoned", "-o", "zone=us", "--json", check=True).stdout
    )
    assert {r["backend"] for r in runs} == {"zoned"}

    listed = orch("backends", "--options", check=True).stdout
    assert "-o zone=STR (--zone)  Zone to run in" in listed and "-o gpus=INT  GPUs" in listed
    rows = {b["name"]: b for b in json.loads(orch("backends", "--options", "--json").stdout)}
    assert rows["ssh"]["options"] == [
        {
            "key": "host",
            "type": "str",
            "flag": "--host",
            "selects_backend": True,
            "help": "Remote host for the ssh backend (implies --backend ssh).",
        }
    ]
    assert "options" not in json.loads(orch("backends", "--json").stdout)[0]

    # A backend's own doctor checks, with the hosts asked for.
    rows = json.loads(orch("doctor", "--json", "--host", "h9").stdout)
    mine = [r for r in rows if r["check"] == "zones"]
    assert mine == [
        {
            "where": "local",
            "check": "zones",
            "ok": True,
            "level": "warn",
            "detail": "hosts asked: h9",
        }
    ]


def test_the_command_line_names_no_backend() -> None:
    for path in sorted(CLI.glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            modules = []
            if isinstance(node, ast.ImportFrom):
                modules = [node.module or ""]
            elif isinstance(node, ast.Import):
                modules = [a.name for a in node.names]
            for module in modules:
                assert not module.startswith("orch_plugins.backends"), f"{path.name}: {module}"
        words = re.findall(r"tmux|ssh", path.read_text(encoding="utf-8"), re.I)
        assert not words, f"{path.name} names a backend: {words}"


def test_builtin_backend_plugins_load_without_their_parts() -> None:
    """The tmux and ssh plugin modules (what orch registers) import none of their parts, so
    loading plugins (orch --help, orch plugins) does not pay for them; the parts import."""
    code = (
        "import sys, orch_plugins.backends.tmux, orch_plugins.backends.ssh; "
        "print(' '.join(sorted(sys.modules)))"
    )
    loaded = set(
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout.split()
    )
    assert not {
        m
        for m in loaded
        if m.startswith(("orch_plugins.backends.tmux.", "orch_plugins.backends.ssh."))
    }, loaded
    assert "orch_plugins.supervisor" not in loaded and "orch_plugins.store" not in loaded
    for part in (
        "tmux.client",
        "tmux.backend",
        "tmux.dashboard",
        "tmux.command",
        "ssh.hosts",
        "ssh.transport",
        "ssh.remote",
        "ssh.backend",
        "ssh.doctor",
    ):
        importlib.import_module(f"orch_plugins.backends.{part}")
    # The dashboard's pane programs answer under the package's old module name too.
    r = subprocess.run(
        [sys.executable, "-m", "orch_plugins.backends.tmux"], capture_output=True, text=True
    )
    assert r.returncode == 2 and "view STATE_DIR RUN_ID" in r.stderr

"""The ray backend's parts that need no cluster: the records a node sends through the job's
log and their reading, what of a project travels, launch options, and the missing extra."""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from orch_plugins.backends.ray import node
from orch_plugins.backends.ray.package import project_files
from tests.helpers import ORCH, git, git_project, orch


def _node_output(run_dir: Path, files: dict[str, Path]) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        print("Running entrypoint for job x: python3 -S -m orch_ray_node")  # Ray's own line
        feeder = node.Feeder(str(run_dir))
        feeder.feed()
        for name, path in files.items():
            node.send_file(name, str(path))
        print("a stray line from somewhere")
        node._emit("D", json.dumps({"rc": 0}))
    return out.getvalue()


def test_records_come_back_byte_for_byte(tmp_path: Path) -> None:
    events = [
        json.dumps({"type": "system", "subtype": "init", "session_id": "s1"}),
        '{"type":"assistant","text":"line\\u2028sep ünï 🚀 \\"q\\""}',
        '{"raw": "\u2028 a real U+2028 and \x85 NEL inside"}',
    ]
    raw = ("\n".join(events) + "\n").encode() + b'{"bad": "\xff\xfe"}\n' + b'{"half": '
    (tmp_path / "events.jsonl").write_bytes(raw)
    (tmp_path / "state.json").write_text(json.dumps({"status": "completed", "cost_usd": 0.5}))
    big = bytes(range(256)) * 1000  # several chunks
    (tmp_path / "blob").write_bytes(big)
    (tmp_path / "out").write_text("answer\n", encoding="utf-8")
    text = _node_output(
        tmp_path, {"transcript.jsonl": tmp_path / "blob", "output.md": tmp_path / "out"}
    )
    assert all(ord(c) < 128 for c in text)  # Ray's log is read as text: ASCII travels safely
    got = node.parse(text)
    back = "".join(line + "\n" for line in got.events).encode("utf-8", "surrogateescape")
    assert back == raw[: raw.rindex(b"\n") + 1]  # the half-written last line waits
    assert got.state == {"status": "completed", "cost_usd": 0.5}
    assert got.files == {"transcript.jsonl": big, "output.md": b"answer\n"}
    assert got.done


def test_a_file_cut_short_or_altered_is_left_out(tmp_path: Path) -> None:
    (tmp_path / "out").write_bytes(b"x" * 200_000)
    text = _node_output(tmp_path, {"output.md": tmp_path / "out"})
    lines = text.split("\n")
    cut = "\n".join(line for i, line in enumerate(lines) if not (i == 2 and "F output.md" in line))
    assert "output.md" not in node.parse(cut).files
    assert node.parse(text).files["output.md"] == b"x" * 200_000


def test_the_text_being_written_travels_as_it_grows(tmp_path: Path) -> None:
    live = tmp_path / "live.txt"
    feeder = node.Feeder(str(tmp_path))
    out = io.StringIO()
    seen = []
    with contextlib.redirect_stdout(out):
        for content in ("msg1\nHel", "msg1\nHello wörld", "msg2\nother", None, "msg3\nx"):
            if content is None:
                live.unlink()
            else:
                live.write_text(content, encoding="utf-8")
            feeder.feed()
            seen.append(node.parse(out.getvalue()).live)
    assert seen == ["msg1\nHel", "msg1\nHello wörld", "msg2\nother", None, "msg3\nx"]
    assert out.getvalue().count("L +") == 1  # the growth went as the added text only


def test_what_of_a_project_travels(tmp_path: Path) -> None:
    (tmp_path / "p").mkdir()
    repo = git_project(tmp_path / "p")
    (repo / ".gitignore").write_text("build/\n*.log\n")
    (repo / "build").mkdir()
    (repo / "build" / "out.bin").write_text("big")
    (repo / "x.log").write_text("log")
    (repo / "new.py").write_text("untracked, not ignored")
    (repo / ".orchestrate" / "runs").mkdir(parents=True)
    (repo / ".orchestrate" / "state.db").write_text("db")
    (repo / "secret.pem").write_text("key")
    (repo / "sub").mkdir()
    (repo / "sub" / "a.txt").write_text("a")
    git(repo, "add", "sub/a.txt")
    (repo / "sub" / "a.txt").unlink()  # tracked but deleted: not there
    files = project_files(repo, repo / ".orchestrate", ["*.pem"])
    assert files == [".gitignore", "f.txt", "new.py"]
    # Not a repository: every file but .git directories and the state directory.
    plain = tmp_path / "plain"
    (plain / ".git").mkdir(parents=True)
    (plain / ".git" / "HEAD").write_text("x")
    (plain / "d").mkdir()
    (plain / "d" / "b.txt").write_text("b")
    (plain / "state").mkdir()
    (plain / "state" / "state.db").write_text("db")
    assert project_files(plain, plain / "state") == ["d/b.txt"]


def test_bad_resources_are_refused_before_anything_is_recorded(project: Path) -> None:
    for value, said in (
        ("{nope", "must be JSON"),
        ('{"claude": -1}', "positive number"),
        ("{}", "non-empty"),
    ):
        out = orch("launch", "x", "task", "-b", "ray", "-o", f"resources={value}")
        assert out.returncode != 0 and said in out.stderr, out
        assert out.stderr.startswith("orch: error: ") and out.stderr.count("\n") == 1
    assert json.loads(orch("status", "--json", check=True).stdout) == []


def test_without_ray_the_backend_names_the_pip_line(project: Path) -> None:
    """A Python where ``ray`` cannot be found: one line naming the extra, nothing recorded."""
    hide = (
        "import importlib.util as u, sys; f = u.find_spec; "
        "u.find_spec = lambda n, *a: None if n == 'ray' else f(n, *a); "
        "from orch_plugins.cli import main; sys.argv = ['orch'] + sys.argv[1:]; main()"
    )
    proc = subprocess.run(
        [sys.executable, "-c", hide, "launch", "x", "task", "-b", "ray"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode != 0
    assert proc.stderr == (
        "orch: error: the ray backend needs Ray on this machine: pip install 'orch-plugins[ray]'\n"
    )
    assert json.loads(orch("status", "--json", check=True).stdout) == []


def test_the_doctor_says_nothing_of_ray_without_a_cluster(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    out = orch("doctor").stdout
    assert " ray: " not in out and "ray extra" not in out, out


def test_the_cli_does_not_import_ray(project: Path) -> None:
    code = (
        "import sys; from orch_plugins.cli import main; sys.argv = ['orch', 'status'];\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "from orch_plugins.plugins import get_plugins; "
        "get_plugins().backend_class('ray'); print('ray' in sys.modules)"
    )
    proc = subprocess.run([*ORCH[:1], "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.stdout.strip().endswith("False"), proc.stderr


pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

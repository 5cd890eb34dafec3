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


class _FakeJobs:
    """Stands in for the job API client: ``jobs`` by submission id, ``logs`` by id."""

    address = "http://ray.invalid:8265"
    timeout = 1.0

    def __init__(self, jobs: dict[str, dict], logs: dict[str, str]) -> None:
        self._jobs, self._logs = jobs, logs
        self.headers: dict[str, str] = {}

    def job(self, sid: str) -> dict | None:
        return self._jobs.get(sid)

    def jobs(self) -> list[dict]:
        return [{"submission_id": k, **v} for k, v in self._jobs.items()]

    def logs(self, sid: str) -> str:
        return self._logs.get(sid, "")


def _ray_run(tmp_path: Path, run_id: int, error: str | None = None) -> dict:
    run_dir = tmp_path / f"run{run_id}"
    run_dir.mkdir()
    return {
        "run_id": run_id,
        "name": f"a{run_id}",
        "status": "running",
        "error": error,
        "run_dir": str(run_dir),
        "log_path": str(run_dir / "events.jsonl"),
        "output_path": str(run_dir / "output.md"),
        "handle": {"submission_id": f"s{run_id}", "address": _FakeJobs.address},
    }


def test_ray_job_states_map_to_orch_statuses(tmp_path: Path) -> None:
    from orch_plugins.backend import BackendContext
    from orch_plugins.backends.ray.backend import RayBackend

    ended_state = node.PREFIX + "S " + json.dumps({"status": "completed", "session_id": "x"})
    died = (
        "Job supervisor actor died: The actor died unexpectedly\n\tclass_name: JobSupervisor\n"
        "The actor died because its node has died. Node Id: abc\n\tthe actor's node was "
        "terminated unexpectedly: health check failed"
    )
    jobs = {
        "s1": {"status": "PENDING"},
        "s2": {"status": "FAILED", "error_type": "JOB_SUPERVISOR_ACTOR_DIED", "message": died},
        "s3": {"status": "STOPPED", "message": "Job was intentionally stopped."},
        "s4": {"status": "FAILED", "error_type": "RUNTIME_ENV_SETUP_FAILURE", "message": "no"},
        "s5": {"status": "SUCCEEDED"},
        "s7": {"status": "RUNNING"},
    }
    logs = {"s5": ended_state + "\n" + node.PREFIX + "D {}\n"}
    backend = RayBackend(BackendContext(tmp_path, {"address": _FakeJobs.address}))
    backend._client = _FakeJobs(jobs, logs)  # type: ignore[assignment]
    runs = [_ray_run(tmp_path, i, "queued: old note" if i == 7 else None) for i in range(1, 8)]
    got = backend.poll(runs)  # type: ignore[arg-type]
    assert got[1].alive and got[1].fields["error"].startswith("queued: waiting in the Ray")
    assert got[2].fields["status"] == "lost" and "node has died" in got[2].fields["error"]
    assert got[3].fields["status"] == "cancelled"
    assert got[4].fields["status"] == "failed" and got[4].fields["error"].endswith(": no")
    assert got[5].fields == {"session_id": "x", "status": "completed"}
    assert got[6].fields["status"] == "lost"  # the cluster does not know the job
    assert got[7].alive and got[7].fields == {"error": None}  # started: the note goes


def test_an_unreachable_cluster_leaves_agents_running_with_a_note(tmp_path: Path) -> None:
    from orch_plugins.backend import BackendContext
    from orch_plugins.backends.ray.backend import RayBackend
    from tests.ray.cluster import free_port

    address = f"http://127.0.0.1:{free_port()}"  # nothing listens
    backend = RayBackend(BackendContext(tmp_path, {"address": address, "timeout": 2}))
    run = _ray_run(tmp_path, 1)
    run["handle"]["address"] = address
    [update] = backend.poll([run]).values()  # type: ignore[list-item]
    assert update.alive and update.fields["error"].startswith("status unknown: cannot reach")

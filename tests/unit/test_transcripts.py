"""The transcript copy a run keeps and a resume puts back (supervisor functions, no claude):
sizes, a full disk, which transcript wins, damaged copies, CLAUDE_CONFIG_DIR."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from orch_plugins.supervisor import (
    TRANSCRIPT_COPY,
    TranscriptError,
    claude_projects,
    keep_transcript,
    place_transcript,
    transcript_key,
)
from tests.helpers import git_project, orch, status_json

SID = "0b6f5a2e-1c1d-4d7e-9a0b-2f1e3d4c5b6a"


def _lines(n: int, tag: str = "turn") -> bytes:
    entries = (
        {"type": "user", "sessionId": SID, "message": f"{tag} {i} " + "x" * 200} for i in range(n)
    )
    return b"".join(json.dumps(e).encode() + b"\n" for e in entries)


def _put(env: dict[str, str], cwd: str, data: bytes) -> Path:
    path = claude_projects(env) / transcript_key(cwd) / f"{SID}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_the_copy_is_the_transcript_gzipped_and_a_full_disk_leaves_nothing(
    tmp_path: Path,
) -> None:
    env = {"HOME": str(tmp_path / "home")}
    data = _lines(15_000)  # ~3.5 MB
    _put(env, "/work/a", data)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    size = keep_transcript(SID, "/work/a", run_dir, env)
    copy = run_dir / TRANSCRIPT_COPY
    assert gzip.decompress(copy.read_bytes()) == data
    assert size == copy.stat().st_size < len(data) / 5
    # A run directory whose file system fills up (a file-size limit stands in for it): an
    # OSError for the supervisor to log, and no half-written copy left behind.
    full = tmp_path / "full"
    full.mkdir()
    script = (
        "import resource, signal, sys; from orch_plugins.supervisor import keep_transcript\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (1024, 1024))\n"
        "try:\n"
        f"    keep_transcript({SID!r}, '/work/a', {str(full)!r}, {env!r})\n"
        "except OSError as exc:\n"
        "    print(exc.errno); sys.exit(3)\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == 3, proc.stderr
    assert proc.stdout.strip() == "27"  # EFBIG
    assert list(full.iterdir()) == []


def test_the_largest_transcript_is_put_where_claude_looks(tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path / "home")}
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "in.jsonl.gz").write_bytes(gzip.compress(_lines(30, "copy")))
    spec = {"resume_session": SID, "cwd": "/b", "run_dir": str(run_dir)}
    target = claude_projects(env) / transcript_key("/b") / f"{SID}.jsonl"

    # Nothing on this machine: the copy goes in place.
    assert place_transcript({**spec, "resume_transcript": "in.jsonl.gz"}, env) == {
        "placed": str(run_dir / "in.jsonl.gz")
    }
    assert target.read_bytes() == _lines(30, "copy")
    # A shorter transcript in place (an older state of the session) is replaced ...
    target.write_bytes(_lines(10))
    place_transcript({**spec, "resume_transcript": str(run_dir / "in.jsonl.gz")}, env)
    assert target.read_bytes() == _lines(30, "copy")
    # ... a longer one (continued here after the copy was made) is kept, and so is one of the
    # same size; the copy is not even unpacked then (its gzip trailer gives its size).
    target.write_bytes(_lines(40))
    assert place_transcript({**spec, "resume_transcript": "in.jsonl.gz"}, env) == {}
    assert target.read_bytes() == _lines(40)
    packed = gzip.compress(_lines(30, "copy"))
    (run_dir / "bad.jsonl.gz").write_bytes(packed[:20] + bytes(len(packed) - 28) + packed[-8:])
    assert place_transcript({**spec, "resume_transcript": "bad.jsonl.gz"}, env) == {}
    # Without a copy, another directory's transcript on this machine (a fork elsewhere).
    target.unlink()
    _put(env, "/a", _lines(5))
    assert place_transcript(spec, env)["placed"].endswith(f"{transcript_key('/a')}/{SID}.jsonl")
    assert target.read_bytes() == _lines(5)
    # Something that is no session id never names a file.
    with pytest.raises(TranscriptError, match="that is no session id"):
        place_transcript({**spec, "resume_session": "../../escape"}, env)
    with pytest.raises(ValueError, match="no session id"):
        keep_transcript("*", "/b", run_dir, env)
    # No session to resume: nothing to do.
    assert place_transcript({"cwd": "/b", "run_dir": str(run_dir)}, env) == {}
    assert not list(target.parent.glob(".*.tmp"))


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (None, "it is missing"),
        (b"", "it is empty"),
        (b"not gzip at all", "it is damaged"),
        (gzip.compress(_lines(50))[:-20], "it is damaged"),  # cut short
        (gzip.compress(_lines(10) + b"[1, 2]\n"), "line 11 is not a JSON object"),
    ],
)
def test_a_damaged_copy_yields_to_this_machine_or_fails_clearly(
    tmp_path: Path, content: bytes | None, why: str
) -> None:
    env = {"HOME": str(tmp_path / "home"), "CLAUDE_CONFIG_DIR": str(tmp_path / "cfg")}
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    if content is not None:
        (run_dir / "in.jsonl.gz").write_bytes(content)
    spec = {"resume_session": SID, "cwd": "/b", "run_dir": str(run_dir)}
    spec["resume_transcript"] = "in.jsonl.gz"
    with pytest.raises(TranscriptError) as caught:
        place_transcript(spec, env)
    message = str(caught.value)
    assert message.startswith(f"cannot resume session {SID}: the transcript copy ")
    assert why in message and "no transcript of it on this machine" in message
    # CLAUDE_CONFIG_DIR is where Claude Code keeps them (not HOME/.claude).
    live = _put(env, "/a", _lines(3))
    assert str(tmp_path / "cfg" / "projects") in str(live)
    done = place_transcript(spec, env)
    assert why in done["copy_problem"] and done["placed"] == str(live)
    assert (tmp_path / "cfg" / "projects" / transcript_key("/b") / f"{SID}.jsonl").is_file()
    assert not (tmp_path / "home" / ".claude").exists()
    assert os.listdir(run_dir) == ([] if content is None else ["in.jsonl.gz"])


def test_a_copy_that_cannot_be_made_never_fails_the_run(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fake claude keeps no transcript where Claude Code would: the run still completes,
    and its log says why no copy was kept. With ``keep_transcripts = false`` none is tried."""
    orch("launch", "a", "task one", check=True)
    orch("wait", "a", check=True)
    [run] = status_json("a")
    assert run["status"] == "completed" and run["error"] is None
    run_dir = Path(run["output_path"]).parent
    events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    [note] = [e for e in events if e.get("subtype") == "transcript_not_kept"]
    assert f"no transcript of session {run['session_id']}" in note["message"]
    assert not (run_dir / TRANSCRIPT_COPY).exists()
    (project.parent / "config.toml").write_text("keep_transcripts = false\n")
    orch("launch", "b", "task two", check=True)
    orch("wait", "b", check=True)
    log = (Path(status_json("b")[0]["output_path"]).parent / "events.jsonl").read_text()
    assert "transcript_not_kept" not in log
    monkeypatch.setenv("ORCH_KEEP_TRANSCRIPTS", "maybe")
    r = orch("launch", "c", "task three")
    assert r.returncode == 1
    assert r.stderr == "orch: error: $ORCH_KEEP_TRANSCRIPTS: expected boolean, got 'maybe'\n"


def test_an_agent_with_a_worktree_is_not_moved_by_resume(project: Path, tmp_path: Path) -> None:
    git_project(project)
    orch("launch", "w", "task", "--worktree", check=True)
    orch("wait", "w", check=True)
    for extra, said in (
        (["--cwd", str(tmp_path)], "works in a worktree"),
        (["--backend", "tmux"], "works in its worktree on backend 'subprocess'"),
    ):
        r = orch("resume", "w", "more", *extra)
        assert r.returncode == 1 and r.stderr.startswith(f"orch: error: agent 'w' {said}")
        assert r.stderr.count("\n") == 1
    assert [r["status"] for r in status_json("w", all_=True)] == ["completed"]

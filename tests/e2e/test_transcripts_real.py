"""A run keeps its session's transcript, and a resume or fork elsewhere takes it along (issue
16): the real Claude Code CLI against the Messages API stand-in, each test its own HOME."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import pytest

from orch_plugins.supervisor import TRANSCRIPT_COPY, transcript_key
from orch_plugins.testing.api import ApiRequest, MessagesStandIn, Reply
from tests.helpers import orch, status_json

pytestmark = pytest.mark.e2e


def _transcripts(session_id: str) -> list[Path]:
    """This machine's transcripts of ``session_id`` (under the test's HOME)."""
    return sorted(Path(os.environ["HOME"], ".claude", "projects").glob(f"*/{session_id}.jsonl"))


def _copy(run: dict) -> Path:
    """The copy in the run's directory (which holds its output file)."""
    return Path(run["output_path"]).parent / TRANSCRIPT_COPY


def _request_with(api: MessagesStandIn, text: str) -> ApiRequest:
    return next(r for r in api.conversation_requests() if text in r.prompt_text)


def _events(run: dict) -> list[dict]:
    log = Path(run["output_path"]).parent / "events.jsonl"
    return [json.loads(line) for line in log.read_text().splitlines()]


def _first_run(word: str) -> tuple[dict, str, Path]:
    """Agent ``alpha`` told to remember ``word``, ended: its run, session id and transcript."""
    orch("launch", "alpha", f"FIRST task: remember the word {word}", check=True)
    orch("wait", "alpha", check=True, timeout=120)
    run = status_json("alpha")[0]
    [live] = _transcripts(run["session_id"])
    return run, run["session_id"], live


def test_copy_is_kept_and_a_fork_or_resume_elsewhere_keeps_context(
    real_project: Path, messages_api: MessagesStandIn, tmp_path: Path
) -> None:
    messages_api.on("FIRST", Reply.text("first answer"))
    messages_api.on("FORKED", Reply.text("fork answer"))
    messages_api.on("AGAIN", Reply.text("again answer"))
    first, sid, live = _first_run("PELICAN")
    # The copy is with the run, gzipped, the transcript byte for byte.
    copy = _copy(first)
    assert gzip.decompress(copy.read_bytes()) == live.read_bytes()
    assert copy.stat().st_size < live.stat().st_size

    # A fork into another directory: Claude Code looks under that directory's key.
    other = tmp_path / "elsewhere"
    other.mkdir()
    orch("launch", "beta", "FORKED turn", "--from", "alpha", "--cwd", str(other), check=True)
    orch("wait", "beta", check=True, timeout=120)
    fork = status_json("beta")[0]
    assert fork["status"] == "completed", fork["error"]
    assert Path(fork["cwd"]) == other
    assert fork["session_id"] != sid
    assert any("PELICAN" in t for t in _request_with(messages_api, "FORKED").all_user_texts)
    assert (live.parent.parent / transcript_key(str(other)) / f"{sid}.jsonl").is_file()

    # The machine lost the transcript (Claude Code deletes old ones; another HOME): the copy
    # kept with the run brings the context back, here resumed in a third directory.
    for path in _transcripts(sid):
        path.unlink()
    third = tmp_path / "third"
    third.mkdir()
    orch("resume", "alpha", "AGAIN: which word?", "--cwd", str(third), check=True)
    orch("wait", "alpha", check=True, timeout=120)
    again = status_json("alpha")[0]
    assert again["status"] == "completed", again["error"]
    assert again["session_id"] == sid and Path(again["cwd"]) == third
    assert any("PELICAN" in t for t in _request_with(messages_api, "AGAIN").all_user_texts)
    assert any(e.get("subtype") == "transcript_placed" for e in _events(again))
    # The newest run keeps the newest transcript: both turns.
    text = gzip.decompress(_copy(again).read_bytes()).decode()
    assert "PELICAN" in text and "again answer" in text


def test_a_damaged_copy_fails_clearly_or_yields_to_the_machines_transcript(
    real_project: Path, messages_api: MessagesStandIn
) -> None:
    messages_api.on("FIRST", Reply.text("first answer"))
    messages_api.on("SECOND", Reply.text("second answer"))
    first, sid, live = _first_run("HERON")
    kept = live.read_bytes()
    packed = _copy(first).read_bytes()
    _copy(first).write_bytes(packed[: len(packed) // 2])  # cut short (a full disk, a crash)
    live.unlink()
    started = len(messages_api.conversation_requests())

    # Nothing usable anywhere: the run fails before claude starts, saying why.
    orch("resume", "alpha", "SECOND: which word?")
    orch("wait", "alpha", timeout=120)
    failed = status_json("alpha")[0]
    assert failed["status"] == "failed"
    assert failed["error"].startswith(f"cannot resume session {sid}: the transcript copy ")
    assert "cannot be used: it is damaged" in failed["error"]
    assert "no transcript of it on this machine" in failed["error"]
    assert len(messages_api.conversation_requests()) == started  # claude never asked

    # This machine still has the session: it is used, and the log says the copy was not.
    live.write_bytes(kept)
    orch("resume", "alpha", "SECOND: which word?", check=True)
    orch("wait", "alpha", check=True, timeout=120)
    second = status_json("alpha")[0]
    assert second["status"] == "completed", second["error"]
    assert any("HERON" in t for t in _request_with(messages_api, "SECOND").all_user_texts)
    unusable = [e for e in _events(second) if e.get("subtype") == "transcript_copy_unusable"]
    assert unusable and "resuming from this machine's transcript" in unusable[0]["message"]

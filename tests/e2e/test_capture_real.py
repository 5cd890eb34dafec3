"""Claude Code's output reaches the store whole, at any size, with many agents at once (real
CLI against the stand-in). Claude Code 2.1.197 can exit before a large write into a pipe has
drained; the supervisor gives it a regular file instead and follows that."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from orch_plugins.procs import descendants, proc_stat
from orch_plugins.testing.api import ApiRequest, MessagesStandIn, Reply, default_responder
from tests.helpers import (
    Follow,
    big_answer,
    megabyte_answers,
    orch,
    output_bytes,
    status_json,
    wait_for,
)

pytestmark = pytest.mark.e2e


def test_one_and_two_megabyte_answers(real_project: Path, messages_api: MessagesStandIn) -> None:
    for run, text in megabyte_answers(messages_api, "subprocess").values():
        results = [
            json.loads(line)
            for line in Path(run["log_path"]).read_bytes().splitlines()
            if b'"type":"result"' in line
        ]
        assert [r["result"] for r in results] == [text]  # the raw log holds it whole too


def _supervisors(project: Path) -> list[int]:
    con = sqlite3.connect(project / ".orchestrate" / "state.db")
    try:
        rows = con.execute("SELECT handle FROM runs WHERE handle IS NOT NULL").fetchall()
    finally:
        con.close()
    return [json.loads(h)["pid"] for (h,) in rows]


def _claude_done(supervisor: int) -> bool:
    """Its claude has exited (a zombie until the stopped supervisor reaps it)."""
    return all((proc_stat(p) or ["Z"])[0] in ("Z", "X") for p in descendants(supervisor))


def _results_written(project: Path) -> bool:
    """Every run's claude has written its ``result`` line (claude keeps running after it while
    its stdin, the supervisor's message channel, is open)."""
    outs = list((project / ".orchestrate" / "runs").glob("*/stdout.jsonl"))
    return len(outs) == 6 and all(b'"type":"result"' in p.read_bytes() for p in outs)


def test_six_parallel_answers_of_300_kb(real_project: Path, messages_api: MessagesStandIn) -> None:
    """Six answers at once, while every supervisor is held still (SIGSTOP, as a busy machine
    deschedules it) until its claude has written everything: nothing may be lost."""
    answers = [big_answer(300_000, f"PAR{i}") for i in range(6)]
    paused: list[int] = []

    def pause_readers() -> None:  # runs once, when all six requests are in
        paused.extend(_supervisors(real_project))
        for pid in paused:
            os.kill(pid, signal.SIGSTOP)

        def resume() -> None:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not (
                all(_claude_done(p) for p in paused) or _results_written(real_project)
            ):
                time.sleep(0.05)
            for pid in paused:
                os.kill(pid, signal.SIGCONT)

        threading.Thread(target=resume, daemon=True).start()

    barrier = threading.Barrier(6, action=pause_readers, timeout=120)

    @messages_api.respond_with
    def answer(request: ApiRequest) -> Reply:
        match = re.search(r"PARALLEL (\d) ", request.prompt_text)
        if not match:
            return default_responder(request)
        barrier.wait()
        return Reply.text(answers[int(match[1])])

    tasks = [f"PARALLEL {i} answer" for i in range(6)]
    try:
        orch("parallel", *tasks, "--max-parallel", "6", check=True)
        orch("wait", "--timeout", "170", timeout=200)
    finally:
        for pid in paused:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGCONT)
    runs = sorted(status_json(), key=lambda r: r["name"])
    assert len(paused) == 6 and len(runs) == 6
    for run, text in zip(runs, answers):
        assert run["status"] == "completed", run
        assert output_bytes(run) == text.encode("utf-8")


def test_logs_follow_shows_the_answer_as_it_is_generated(
    real_project: Path, messages_api: MessagesStandIn
) -> None:
    pieces = [f"piece{i:02d} ünï 🚀 " for i in range(16)]
    text = "".join(pieces)
    messages_api.on("STREAMED", Reply.text(text, chunk=len(pieces[0]), pace=0.3))
    orch("launch", "streamer", "STREAMED answer please", check=True)
    follow = Follow("streamer")
    first = wait_for(lambda: "piece03" in follow.text() and follow.text(), timeout=60)
    assert "piece15" not in first and "[writing] piece00 ünï 🚀 piece01" in first
    run = status_json("streamer")[0]
    assert run["status"] == "running"
    assert b"piece00" not in Path(run["log_path"]).read_bytes()  # no event holds it yet
    shown = follow.wait(60)
    assert f"[writing] {text}\n" in shown and "[assistant]" not in shown, shown
    assert shown.splitlines()[-1] == "[completed]"
    log = Path(run["log_path"]).read_text()
    assert '"stream_event"' not in log and log.count("piece07") == 2  # the message and result
    assert not (Path(run["log_path"]).parent / "live.txt").exists()

"""``orch logs`` (fake claude): -f returns on every kind of ended run without spinning, and
shows an answer while it is being written."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.helpers import Follow, orch, status_json, wait_for


def _baseline_cpu(name: str) -> float:
    """CPU time of a plain ``orch logs NAME`` (start-up, imports): what -f may add little to."""
    f = Follow(name, follow=False)
    f.wait(60)
    return f.cpu


def test_follow_returns_on_every_kind_of_ended_run(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Queued, then cancelled: it never started, so it has no event log.
    r = orch("parallel", "SLEEP=30 first", "second", "--max-parallel", "1", "--json", check=True)
    assert [x["status"] for x in json.loads(r.stdout)] == ["running", "queued"]
    orch("cancel", "agent2", check=True)
    # A claude that cannot start: failed, no event log either.
    broken = tmp_path / "claude"
    broken.write_text("#!/nonexistent/interpreter\n")
    broken.chmod(0o755)
    monkeypatch.setenv("ORCH_CLAUDE_BIN", str(broken))
    orch("launch", "nostart", "task", check=True)
    wait_for(lambda: status_json("nostart")[0]["status"] == "failed")
    assert not Path(status_json("nostart")[0]["log_path"]).exists()
    baseline = _baseline_cpu("agent2")
    ends = {"agent2": "[cancelled] cancelled", "nostart": "[failed] cannot start claude"}
    for name, end in ends.items():
        f = Follow(name)
        text = f.wait(20)
        assert f.rc == 0 and text.splitlines()[-1].startswith(end), text
        assert f.cpu < baseline + 0.5, (f.cpu, baseline)
    # Ended while followed (cancelled with a log): -f prints it and returns at once.
    f = Follow("agent1")
    time.sleep(1.5)
    assert f.proc.poll() is None and f.running_cpu() < baseline + 0.5  # waiting, not spinning
    orch("cancel", "agent1", check=True)
    text = f.wait(20)
    assert "[start] session" in text and text.splitlines()[-1] == "[cancelled] cancelled"


def test_follow_shows_the_answer_while_it_is_written(project: Path) -> None:
    orch("launch", "writer", "STREAM=12 please", check=True)
    f = Follow("writer")
    # The first words show while claude is still writing: no assistant event in the log yet.
    first = wait_for(lambda: "word2 " in f.text() and f.text(), timeout=20)
    assert first.count("[writing] ") == 1 and "word11" not in first
    run = status_json("writer")[0]
    assert run["status"] == "running"
    assert b'"assistant"' not in Path(run["log_path"]).read_bytes()
    text = f.wait(30)
    words = "".join(f"word{i} " for i in range(12))
    assert f"[writing] {words}\n" in text, repr(text)  # the whole answer, once, as it came
    assert "[assistant]" not in text  # not repeated when its message is complete
    assert text.splitlines()[-1] == "[completed]"
    run = status_json("writer")[0]
    log = Path(run["log_path"]).read_text()
    assert '"stream_event"' not in log  # the deltas are not kept
    assert not (Path(run["log_path"]).parent / "live.txt").exists()
    assert orch("output", "writer", check=True).stdout == words + "\n"
    # Without -f, a running agent's message being written is one line.
    orch("launch", "writer2", "STREAM=30 please", check=True)
    wait_for(lambda: "word3" in orch("logs", "writer2").stdout, timeout=20)
    line = orch("logs", "writer2").stdout.splitlines()[-1]
    assert line.startswith("[writing] word0 word1 word2 word3")

"""The Messages API stand-in, checked against the real Claude Code CLI.

``e2e`` tests each start real ``claude`` processes (sequentially: each costs ~0.75 CPU-s). The
unmarked ones talk HTTP to the stand-in directly and take milliseconds.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from orch_plugins.testing.api import MessagesStandIn, Reply
from orch_plugins.testing.pytest_plugin import ClaudeRun, claude_version, run_claude

STREAM_JSON = ["--output-format", "stream-json", "--verbose"]


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    path = tmp_path / "work"
    path.mkdir()
    return path


@pytest.fixture
def claude(claude_bin: str, claude_env: dict[str, str], workdir: Path):
    """``claude("-p", prompt, ...)`` in ``workdir`` with stream-json output, parsed."""

    def run(*args: str, input: str | None = None, env: dict[str, str] | None = None) -> ClaudeRun:
        return run_claude(
            [*args, *STREAM_JSON],
            env=claude_env if env is None else env,
            cwd=workdir,
            input=input,
            claude=claude_bin,
        )

    return run


# --------------------------------------------------------------------------------------------
# Against the real Claude Code
# --------------------------------------------------------------------------------------------


@pytest.mark.e2e
def test_text_reply_and_title_request_leaves_script_alone(
    claude, claude_bin: str, claude_env: dict[str, str], messages_api: MessagesStandIn
) -> None:
    # Let Claude Code send its session-title request, which the quiet env otherwise suppresses.
    env = {k: v for k, v in claude_env.items() if k != "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC"}
    rule = messages_api.on(
        "TEXT-MARKER", Reply.text("scripted answer"), Reply.text("must stay unused")
    )
    prompt = "Please answer TEXT-MARKER for this test"

    run = claude("-p", prompt, env=env)

    assert run.returncode == 0, run.describe()
    assert run.result_text == "scripted answer"
    assert run.init is not None and run.session_id == run.init["session_id"]
    assert run.result is not None and run.result["is_error"] is False
    assert run.result["total_cost_usd"] > 0 and run.result["usage"]["input_tokens"] > 0
    titles = [r for r in messages_api.requests if r.is_title_request]
    if claude_version(claude_bin) == "2.1.197":  # 2.1.332 sends none in -p mode
        assert titles, "2.1.197 titles every session whose prompt has >= 10 characters"
    assert all(not r.tools and "TEXT-MARKER" in r.last_user_text for r in titles)
    assert rule.hits == 1
    (request,) = messages_api.conversation_requests()
    assert request.last_user_text == prompt
    assert request.session_id == run.session_id
    assert "Bash" in request.tools


@pytest.mark.e2e
def test_bash_tool_use_really_runs(claude, messages_api: MessagesStandIn, workdir: Path) -> None:
    prompt = "BASH-MARKER: write the marker file"
    messages_api.on(
        "BASH-MARKER",
        Reply.bash("echo hi > marker.txt; cat marker.txt", "write marker"),
        Reply.text("wrote it"),
    )

    run = claude("-p", prompt, "--allowedTools", "Bash")

    assert run.returncode == 0, run.describe()
    assert (workdir / "marker.txt").read_text() == "hi\n"
    assert run.result_text == "wrote it"
    assert run.result is not None and run.result["num_turns"] == 2
    first, second = messages_api.conversation_requests()
    assert first.last_user_text == prompt and first.tool_results == []
    assert second.tool_results == ["hi"]
    assert second.last_user_text == "" and second.prompt_text == prompt


@pytest.mark.e2e
def test_resume_carries_earlier_turns_and_fork_gets_new_id(
    claude, messages_api: MessagesStandIn
) -> None:
    messages_api.on("FIRST-TURN", Reply.text("first done"))
    messages_api.on("SECOND-TURN", Reply.text("second done"))

    first = claude("-p", "FIRST-TURN task")
    assert first.returncode == 0, first.describe()
    sid = first.session_id
    assert sid

    second = claude("-p", "-r", sid, "SECOND-TURN follow-up")
    assert second.returncode == 0, second.describe()
    assert second.result_text == "second done"
    assert second.session_id == sid
    resumed = messages_api.conversation_requests()[-1]
    assert resumed.all_user_texts == ["FIRST-TURN task", "SECOND-TURN follow-up"]
    assert resumed.session_id == sid

    fork = claude("-p", "-r", sid, "--fork-session", "third, unscripted")
    assert fork.returncode == 0, fork.describe()
    assert fork.session_id and fork.session_id != sid
    assert fork.result_text == "echo: third, unscripted"
    forked = messages_api.conversation_requests()[-1]
    assert forked.all_user_texts[:2] == ["FIRST-TURN task", "SECOND-TURN follow-up"]


@pytest.mark.e2e
def test_api_error_ends_the_run(claude, claude_env, messages_api: MessagesStandIn) -> None:
    messages_api.on("FAIL-MARKER", Reply.error(529))

    run = claude("-p", "FAIL-MARKER", env={**claude_env, "CLAUDE_CODE_MAX_RETRIES": "0"})

    assert run.returncode == 1, run.describe()
    assert run.result is not None
    assert run.result["is_error"] is True
    assert run.result["api_error_status"] == 529
    assert len(messages_api.conversation_requests()) == 1  # no retries


@pytest.mark.e2e
def test_parallel_sessions_keep_their_own_scripts(
    claude_bin: str, claude_env: dict[str, str], messages_api: MessagesStandIn, tmp_path: Path
) -> None:
    names = ["alpha", "beta"]
    for name in names:
        messages_api.on(f"TASK-{name}", Reply.bash(f"echo {name}"), Reply.text(f"{name} finished"))
    runs: dict[str, ClaudeRun] = {}

    def go(name: str) -> None:
        cwd = tmp_path / name
        cwd.mkdir()
        args = ["-p", f"TASK-{name}", "--allowedTools", "Bash", *STREAM_JSON]
        runs[name] = run_claude(args, env=claude_env, cwd=cwd, claude=claude_bin)

    threads = [threading.Thread(target=go, args=(name,)) for name in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=90)

    for name in names:
        run = runs[name]
        assert run.returncode == 0, run.describe()
        assert run.result_text == f"{name} finished"
        mine = [r for r in messages_api.conversation_requests() if r.session_id == run.session_id]
        assert [r.tool_results for r in mine] == [[], [name]]


HOSTILE = (
    "it's \"quoted\" 'single' $(rm -rf /) `uname -a` ${HOME} %s {0} \\n \\\\ <tag/>\n"
    "second line\twith tab\r\nthird line ünïcødé 日本語 🚀 \x1b[31m\n\n  trailing spaces  "
)


@pytest.mark.e2e
def test_stdin_prompt_arrives_byte_identical(claude, messages_api: MessagesStandIn) -> None:
    run = claude("-p", input=HOSTILE)

    assert run.returncode == 0, run.describe()
    (request,) = messages_api.conversation_requests()
    assert request.last_user_text == HOSTILE
    assert run.result_text == "echo: " + HOSTILE


@pytest.mark.e2e
def test_stdin_prompt_of_a_megabyte(claude, messages_api: MessagesStandIn) -> None:
    line = "0123456789 the quick brown fox jumps over the lazy dog ünïcødé\n"
    big = (line * (1_000_000 // len(line) + 1))[:1_000_000]

    run = claude("-p", input=big)

    assert run.returncode == 0, run.describe()
    assert run.result_text == "echo sha256=" + hashlib.sha256(big.encode()).hexdigest()
    print(f"1 MB prompt on stdin: claude took {run.duration:.2f}s")


# --------------------------------------------------------------------------------------------
# The stand-in on its own (no claude process)
# --------------------------------------------------------------------------------------------


def _post(url: str, body: dict[str, Any], timeout: float = 10.0) -> tuple[int, str]:
    request = urllib.request.Request(
        url + "/v1/messages?beta=true",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _sse(text: str) -> list[dict[str, Any]]:
    return [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: ")]


def _user(*blocks: dict[str, Any]) -> dict[str, Any]:
    return {"role": "user", "content": list(blocks)}


def test_stream_shape_and_rule_semantics(messages_api: MessagesStandIn) -> None:
    rule = messages_api.on("go", Reply.bash("ls"), Reply.text("done"))
    first = {"stream": True, "model": "m", "messages": [_user({"type": "text", "text": "go"})]}
    tool_turn = {
        "stream": True,
        "messages": [
            *first["messages"],
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "Bash"}]},
            _user({"type": "tool_result", "tool_use_id": "t", "content": "a\nb"}),
        ],
    }

    status, text = _post(messages_api.url, first)
    events = _sse(text)
    assert status == 200
    assert [e["type"] for e in events] == [
        "message_start",
        "ping",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert events[2]["content_block"]["name"] == "Bash"
    assert json.loads(events[3]["delta"]["partial_json"]) == {"command": "ls", "description": "run"}
    assert events[5]["delta"]["stop_reason"] == "tool_use"

    for _ in range(2):  # the tool-result turn still matches "go"; the last reply is sticky
        assert _sse(_post(messages_api.url, tool_turn)[1])[3]["delta"]["text"] == "done"
    assert rule.hits == 3
    assert messages_api.requests[1].tool_results == ["a\nb"]


def test_title_request_is_answered_without_the_script(messages_api: MessagesStandIn) -> None:
    rule = messages_api.on("anything", Reply.text("scripted"))
    schema = {"type": "object", "properties": {"title": {"type": "string"}}}
    status, text = _post(
        messages_api.url,
        {
            "system": [{"type": "text", "text": "Generate a concise title"}],
            "output_config": {"format": {"type": "json_schema", "schema": schema}},
            "messages": [_user({"type": "text", "text": "<session>\nanything\n</session>"})],
        },
    )
    assert status == 200
    assert "title" in json.loads(json.loads(text)["content"][0]["text"])
    assert rule.hits == 0
    assert messages_api.requests[0].is_title_request
    assert messages_api.conversation_requests() == []


def test_side_requests_and_errors(messages_api: MessagesStandIn) -> None:
    head = urllib.request.Request(messages_api.url + "/", method="HEAD")
    with urllib.request.urlopen(head, timeout=5) as response:
        assert response.status == 200
    count = urllib.request.Request(
        messages_api.url + "/v1/messages/count_tokens?beta=true", data=b'{"messages": []}'
    )
    with urllib.request.urlopen(count, timeout=5) as response:
        assert json.load(response)["input_tokens"] >= 1

    messages_api.respond_with(lambda request: Reply.error(429, "rate_limit_error", "slow down"))
    status, text = _post(messages_api.url, {"messages": []})
    assert status == 429
    assert json.loads(text) == {
        "type": "error",
        "error": {"type": "rate_limit_error", "message": "slow down"},
    }

    def broken(request: object) -> Reply:
        raise RuntimeError("bug in a test responder")

    messages_api.respond_with(broken)
    status, text = _post(messages_api.url, {"messages": []})
    assert status == 500 and "bug in a test responder" in text
    assert ("HEAD", "/") in messages_api.side_requests


def test_delayed_reply_does_not_block_stop() -> None:
    api = MessagesStandIn().start()
    api.on("slow", Reply.text("late", delay=30))
    outcome: list[object] = []
    body = {"messages": [_user({"type": "text", "text": "slow"})]}
    client = threading.Thread(target=lambda: outcome.append(_safe_post(api.url, body)))
    client.start()
    api.wait_for(lambda r: r.last_user_text == "slow", timeout=5)

    started = time.monotonic()
    api.stop()
    client.join(timeout=5)

    assert time.monotonic() - started < 10  # far below the reply's 30 s delay
    assert not client.is_alive()
    assert outcome and isinstance(outcome[0], Exception)  # dropped, not answered


def _safe_post(url: str, body: dict[str, Any]) -> object:
    try:
        return _post(url, body, timeout=60)
    except Exception as exc:
        return exc


def test_command_line_serves_a_script(tmp_path: Path) -> None:
    script = tmp_path / "script.json"
    script.write_text(json.dumps([{"match": "hello", "replies": [{"text": "hi there"}]}]))
    proc = subprocess.Popen(
        [sys.executable, "-m", "orch_plugins.testing.api", "--script", str(script)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        _, text = _post(url, {"messages": [_user({"type": "text", "text": "hello"})]})
        assert json.loads(text)["content"] == [{"type": "text", "text": "hi there"}]
        _, text = _post(url, {"messages": [_user({"type": "text", "text": "other"})]})
        assert json.loads(text)["content"][0]["text"] == "echo: other"
    finally:
        proc.kill()
        proc.wait(timeout=5)

#!/usr/bin/env python3
"""A fast stand-in for ``claude -p`` in unit tests (the e2e tests use the real CLI).

Reads the prompt from stdin and prints stream-json events. Directives in the prompt:
``SLEEP=N`` sleeps N seconds first, ``GATE=PATH`` waits (up to 120 s) until PATH exists,
``PAUSE=N`` after the first tool call (``HOLD=PATH``: there until PATH exists), ``EXIT=N`` exits
with N and no result, ``API=529`` reports an API error (``FAKE_API_FAIL_FILE`` counts
attempts: fail only while it holds fewer than ``API_FAILS=K`` lines), ``TASKFAIL`` reports a
task error, ``NOTERM`` ignores SIGTERM (a claude that outlives a polite stop). The result
echoes the prompt's sha256. After the result, ``LINGER=N`` stays N seconds more; ``HOLDOUT=N``
leaves a child (``sleep N``) holding stdout open and exits. ``STREAM=N`` answers N words, one
every 0.3 s, as partial messages (``stream_event`` deltas, as with
``--include-partial-messages``) and then as the message and the result. ``APPEND=FILE:WORD``
appends the line WORD to FILE (relative to the working directory), as an agent's edit would.

Sessions: each prompt is kept under ``$HOME/.fake-claude/SESSION``; ``--resume SESSION`` also
reads the ``API=``/``API_FAILS=`` directives of the session's earlier prompts (the model would
see them), so a retry that continues a session behaves like the attempt it continues.
"""

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid

argv = sys.argv[1:]
if argv == ["--version"]:  # as the pinned release answers (orch doctor reads it)
    print("2.1.197 (Claude Code)")
    sys.exit(0)
#: ``--input-format stream-json``: the prompt is the first user turn (a JSON line) on stdin,
#: later lines are more turns (each answered ``reply: TEXT``), until stdin closes.
stream_in = "--input-format" in argv and argv[argv.index("--input-format") + 1] == "stream-json"


def read_turn():
    line = sys.stdin.buffer.readline()
    if not line:
        return None
    content = json.loads(line)["message"]["content"]
    if isinstance(content, list):
        content = "".join(b.get("text", "") for b in content if isinstance(b, dict))
    return content


def more_turns():
    """Answer every further user turn until stdin closes (stream-json input)."""
    while stream_in and (text := read_turn()) is not None:
        emit(
            {
                "type": "result",
                "subtype": "success",
                "is_error": False,
                "session_id": sid,
                "result": f"reply: {text}",
                "num_turns": 1,
            }
        )


data = (read_turn() or "").encode("utf-8") if stream_in else sys.stdin.buffer.read()
prompt = data.decode("utf-8", "replace")
if "NOTERM" in prompt:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
sid = str(uuid.uuid4())
if "--resume" in argv and "--fork-session" not in argv:
    sid = argv[argv.index("--resume") + 1]


def emit(event):
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


sessions = os.path.join(os.path.expanduser("~"), ".fake-claude")
earlier = ""
if "--resume" in argv:
    try:
        with open(os.path.join(sessions, argv[argv.index("--resume") + 1]), encoding="utf-8") as fh:
            earlier = fh.read()
    except OSError:
        pass
os.makedirs(sessions, exist_ok=True)
with open(os.path.join(sessions, sid), "a", encoding="utf-8") as fh:
    fh.write(earlier if "--fork-session" in argv else "")
    fh.write(prompt + "\n")
directives = " ".join(re.findall(r"API(?:_FAILS)?=\d+", earlier)) + " " + prompt

emit({"type": "system", "subtype": "init", "session_id": sid, "model": "fake", "argv": argv})
m = re.search(r"STREAM=(\d+)", prompt)
if m:
    words = [f"word{i} " for i in range(int(m.group(1)))]

    def stream(event):
        emit({"type": "stream_event", "event": event, "session_id": sid})

    stream({"type": "message_start", "message": {"id": "msg_fake_1", "content": []}})
    stream({"type": "content_block_start", "index": 0, "content_block": {"type": "text"}})
    for word in words:
        time.sleep(0.3)
        delta = {"type": "text_delta", "text": word}
        stream({"type": "content_block_delta", "index": 0, "delta": delta})
    text = "".join(words)
    message = {"id": "msg_fake_1", "content": [{"type": "text", "text": text}]}
    emit({"type": "assistant", "session_id": sid, "message": message})
    stream({"type": "content_block_stop", "index": 0})
    stream({"type": "message_stop"})
    emit(
        {
            "type": "result",
            "subtype": "success",
            "is_error": False,
            "session_id": sid,
            "result": text,
            "num_turns": 1,
        }
    )
    more_turns()
    sys.exit(0)
for m in re.finditer(r"APPEND=([\w./-]+):(\S+)", prompt):
    os.makedirs(os.path.dirname(m.group(1)) or ".", exist_ok=True)
    with open(m.group(1), "a") as fh:
        fh.write(m.group(2) + "\n")
m = re.search(r"SLEEP=([0-9.]+)", prompt)
if m:
    time.sleep(float(m.group(1)))
m = re.search(r"GATE=(\S+)", prompt)
if m:
    gate_deadline = time.monotonic() + 120
    while not os.path.exists(m.group(1)) and time.monotonic() < gate_deadline:
        time.sleep(0.05)
m = re.search(r"EXIT=(\d+)", prompt)
if m:
    sys.exit(int(m.group(1)))
emit(
    {
        "type": "assistant",
        "session_id": sid,
        "message": {
            "content": [
                {"type": "text", "text": "working"},
                {"type": "tool_use", "name": "Bash", "input": {"command": "true"}},
            ]
        },
    }
)
m = re.search(r"PAUSE=([0-9.]+)", prompt)
if m:  # mid-turn, as during a long tool call
    time.sleep(float(m.group(1)))
m = re.search(r"HOLD=(\S+)", prompt)
if m:  # mid-turn until the test says so (up to 120 s)
    hold_deadline = time.monotonic() + 120
    while not os.path.exists(m.group(1)) and time.monotonic() < hold_deadline:
        time.sleep(0.05)
digest = hashlib.sha256(data).hexdigest()
m = re.search(r"API=(\d+)", directives)
fails = int((re.search(r"API_FAILS=(\d+)", directives) or [0, 99])[1])
if m:
    counter = os.environ.get("FAKE_API_FAIL_FILE")
    n = 0
    if counter:
        with open(counter, "a+") as fh:
            fh.seek(0)
            n = len(fh.readlines())
            fh.write("x\n")
    if n < fails:
        emit(
            {
                "type": "result",
                "subtype": "success",
                "is_error": True,
                "session_id": sid,
                "api_error_status": int(m.group(1)),
                "result": "API Error: overloaded",
                "num_turns": 1,
                "total_cost_usd": 0,
            }
        )
        sys.exit(1)
if "TASKFAIL" in prompt:
    emit(
        {
            "type": "result",
            "subtype": "error_during_execution",
            "is_error": True,
            "session_id": sid,
            "result": "task failed",
            "num_turns": 1,
        }
    )
    sys.exit(1)
emit(
    {
        "type": "result",
        "subtype": "success",
        "is_error": False,
        "session_id": sid,
        "result": f"sha256={digest}\nargv={json.dumps(argv)}",
        "num_turns": 2,
        "total_cost_usd": 0.0012,
        "duration_ms": 5,
        "usage": {"input_tokens": 3},
    }
)
m = re.search(r"HOLDOUT=([0-9.]+)", prompt)
if m:  # a background child that inherited stdout, as a Bash tool's may
    subprocess.Popen(["sleep", m.group(1)], stdin=subprocess.DEVNULL, start_new_session=True)
m = re.search(r"LINGER=([0-9.]+)", prompt)
if m:  # the result is out, the process stays (waiting for a background task, say)
    time.sleep(float(m.group(1)))
more_turns()

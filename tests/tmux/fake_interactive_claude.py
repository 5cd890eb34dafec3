"""A fast stand-in for *interactive* ``claude`` (no ``-p``) in the tmux unit tests.

Like Claude Code, it runs the ``SessionStart`` and ``Stop`` hooks given with ``--settings``
(through a shell, the payload on stdin) and writes a transcript under
``$HOME/.claude/projects``. Its first prompt is the argument after ``--``; each further line
typed in the terminal is another turn; ``/exit`` quits. ``SLEEP=N`` in a prompt delays the
answer; ``NOSTOP`` skips the Stop hook; ``NOLAST`` leaves ``last_assistant_message`` out of
its payload; ``SUBAGENT`` first runs the Stop hooks with a sub-agent's payload (``agent_id``),
as a Claude Code whose Task tool reports that way would. ``/clear`` starts a new session.
"""

import json
import os
import re
import subprocess
import sys
import time
import uuid
from datetime import datetime, timezone

argv = sys.argv[1:]
settings = json.loads(argv[argv.index("--settings") + 1]) if "--settings" in argv else {}
prompt = argv[argv.index("--") + 1] if "--" in argv else ""
sid = argv[argv.index("--resume") + 1] if "--resume" in argv else str(uuid.uuid4())
cwd = os.getcwd()
tdir = os.path.join(os.environ["HOME"], ".claude", "projects", re.sub(r"[^A-Za-z0-9]", "-", cwd))
os.makedirs(tdir, exist_ok=True)
transcript = os.path.join(tdir, f"{sid}.jsonl")


def hook(event: str, **extra: object) -> None:
    payload = {
        "session_id": sid,
        "transcript_path": transcript,
        "cwd": cwd,
        "hook_event_name": event,
        **extra,
    }
    for group in settings.get("hooks", {}).get(event, []):
        for h in group.get("hooks", []):
            subprocess.run(h["command"], shell=True, input=json.dumps(payload).encode())


def entry(kind: str, content: list) -> None:
    stamp = datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")
    message = {"role": kind, "content": content}
    if kind == "assistant":
        message.update(id=f"msg_{uuid.uuid4().hex[:8]}", usage={"input_tokens": 5})
    with open(transcript, "a") as fh:
        fh.write(json.dumps({"type": kind, "timestamp": stamp, "message": message}) + "\n")


def turn(text: str) -> None:
    print(f"> {text}", flush=True)
    entry("user", [{"type": "text", "text": text}])
    if "SUBAGENT" in text:
        hook(
            "Stop",
            agent_id="fake-sub",
            agent_type="general-purpose",
            stop_hook_active=False,
            last_assistant_message="sub-agent answer",
        )
        print("sub-agent stopped", flush=True)
    m = re.search(r"SLEEP=([0-9.]+)", text)
    if m:
        time.sleep(float(m.group(1)))
    answer = f"answer: {text}"
    entry(
        "assistant",
        [{"type": "text", "text": answer}, {"type": "tool_use", "name": "Bash", "input": {}}],
    )
    print(answer, flush=True)
    if "NOSTOP" not in text:  # NOLAST: a Claude Code that does not send the last message
        last = {} if "NOLAST" in text else {"last_assistant_message": answer}
        hook("Stop", stop_hook_active=False, **last)


hook("SessionStart", source="resume" if "--resume" in argv else "startup")
print(f"fake interactive claude, session {sid}", flush=True)
if prompt:
    turn(prompt)
for line in sys.stdin:
    line = line.strip()
    if line == "/exit":
        break
    if line == "/clear":
        sid = str(uuid.uuid4())
        transcript = os.path.join(tdir, f"{sid}.jsonl")
        hook("SessionStart", source="clear")
        print(f"cleared: session {sid}", flush=True)
        continue
    if line:
        turn(line)

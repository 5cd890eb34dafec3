"""Human-readable text: progress lines from Claude Code's stream-json events (``orch logs``,
tmux) and the one way each figure is written everywhere (costs, counts, model names).

Standard library only: the supervisor uses it for the tmux pane when it is importable.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

WIDTH = 160
#: Claude Code's suffix for a model's context window, e.g. ``claude-opus-4-8[1m]``.
_CONTEXT_SUFFIX = re.compile(r"^(.+)\[(\d+)([km])\]$", re.IGNORECASE)


def plural(n: int, word: str, many: str | None = None) -> str:
    """``1 turn``, ``2 turns``, ``0 turns`` (``many`` for irregular plurals)."""
    return f"{n} {word if n == 1 else (many or word + 's')}"


def money(usd: float | None) -> str:
    """A cost in US dollars, the same everywhere (status, logs, the dashboard): two
    significant digits, and at least cents: ``$0.0002``, ``$0.096``, ``$0.50``, ``$12.30``;
    ``-`` when unknown (an interactive agent's session reports none)."""
    if usd is None:
        return "-"
    if usd <= 0:
        return "$0.00"
    decimals = max(2, 1 - math.floor(math.log10(usd)))
    text = f"{usd:.{decimals}f}"
    if decimals > 2:
        text = text.rstrip("0")
        head, _, tail = text.partition(".")
        text = f"{head}.{tail.ljust(2, '0')}"
    return "$" + text


def model_label(model: Any) -> str:
    """A model id for people: Claude Code writes a larger context window as a suffix,
    ``claude-opus-4-8[1m]``, which reads like a terminal escape; this gives
    ``claude-opus-4-8 (1M context)``. Anything else is returned as is."""
    text = str(model)
    m = _CONTEXT_SUFFIX.match(text)
    return f"{m[1]} ({m[2]}{m[3].upper()} context)" if m else text


def _short(text: Any, width: int = WIDTH) -> str:
    s = " ".join(str(text).split())
    return s if len(s) <= width else s[: width - 1] + "…"


def describe(event: dict[str, Any]) -> list[str]:
    """One or more lines for an event; nothing for events a person does not need."""
    kind, sub = event.get("type"), event.get("subtype")
    if kind == "system" and sub == "init":
        model = model_label(event.get("model"))
        return [f"[start] session {event.get('session_id')} model {model}"]
    if kind == "system" and sub == "api_retry":
        return [
            f"[api retry] attempt {event.get('attempt')}/{event.get('max_retries')} "
            f"after HTTP {event.get('error_status')}"
        ]
    if kind == "orch" and sub == "retry":
        sid = event.get("resume_session")
        how = f", continuing session {sid}" if sid else ""
        return [
            f"[orch retry] attempt {event.get('attempt')}/{event.get('max_attempts')} in "
            f"{event.get('delay_s')} s (API error {event.get('api_error_status')}{how})"
        ]
    if kind == "orch" and sub == "message":
        return [
            f"[message from {event.get('from')} at {event.get('at')}] {_short(event.get('text'))}"
        ]
    if kind == "orch" and sub == "message_delivered":
        n = event.get("count")
        return [f"[orch] {n} message{'s' * (n != 1)} handed to the agent as its next turn"]
    if kind == "orch" and sub == "message_undelivered":
        return [f"[orch] a message never reached the agent (it ended): {_short(event.get('text'))}"]
    if kind == "orch" and event.get("message"):
        return [f"[orch] {_short(event['message'])}"]
    if kind == "orch" and sub == "retry_fresh":
        return ["[orch retry] the session could not be continued: starting afresh"]
    if kind == "assistant":
        lines = []
        for block in (event.get("message") or {}).get("content") or []:
            if block.get("type") == "text" and str(block.get("text", "")).strip():
                lines.append(f"[assistant] {_short(block['text'])}")
            elif block.get("type") == "tool_use":
                inp = block.get("input") or {}
                detail = inp.get("command") or inp.get("file_path") or inp.get("pattern") or inp
                lines.append(f"[tool] {block.get('name')}: {_short(detail)}")
        return lines
    if kind == "user":
        lines = []
        for block in (event.get("message") or {}).get("content") or []:
            if isinstance(block, dict) and block.get("type") == "tool_result":
                content = block.get("content")
                if isinstance(content, list):
                    content = " ".join(
                        str(c.get("text", "")) for c in content if isinstance(c, dict)
                    )
                flag = " (error)" if block.get("is_error") else ""
                lines.append(f"[tool result{flag}] {_short(content or '', 120)}")
        return lines
    if kind == "result":
        cost = event.get("total_cost_usd")
        cost_s = f", {money(cost)}" if isinstance(cost, (int, float)) else ""
        state = "error" if event.get("is_error") else "done"
        secs = (event.get("duration_ms") or 0) / 1000
        turns = event.get("num_turns")
        turns_s = plural(turns, "turn") if isinstance(turns, int) else "? turns"
        head = f"[{state}] {turns_s}, {secs:.1f} s{cost_s}"
        return [head, f"[result] {_short(event.get('result', ''), 400)}"]
    return []


def describe_line(raw: bytes | str) -> list[str]:
    try:
        event = json.loads(raw)
    except ValueError:
        return []
    return describe(event) if isinstance(event, dict) else []


class LogReader:
    """What ``orch logs`` prints for one run, read a bit at a time: the event log's new lines
    (complete lines only) and, with ``live``, the text of the message being written now
    (``live.txt``, kept by the supervisor while claude streams it: its message id on the first
    line, then the text so far).

    A streamed message is printed as it grows after ``[writing]``; when its ``assistant`` event
    comes, the rest of its text is printed first and the event's ``[assistant]`` lines are left
    out (the text was shown in full). :meth:`read` returns the text to print next.
    """

    def __init__(
        self, log_path: str | Path, live_path: str | Path, *, raw: bool = False, live: bool = False
    ) -> None:
        self.log_path = Path(log_path)
        self.live_path = Path(live_path)
        self.raw = raw
        self.live = live and not raw
        self.pos = 0
        self.buf = b""
        #: The live message being printed: its id and how many of its bytes were shown.
        self.head: str | None = None
        self.live_pos = 0
        self.decoder: Any = None
        self.printed = 0  # characters of its text printed
        self.event_text = ""  # its text as its assistant events (one per block) told so far
        self.open_line = False  # what was printed last does not end with a newline
        self.streamed: set[str] = set()  # messages whose text was printed as it came
        self.logged: set[str] = set()  # messages whose assistant event was read

    def read(self, *, final: bool = False) -> str:
        """New text; ``final``: the run has ended, so a last line without its newline counts
        and an unfinished line of streamed text is closed."""
        out: list[str] = []
        for line in self._new_lines(final):
            if self.raw:
                out.append(line.decode("utf-8", "replace") + "\n")
                continue
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if not isinstance(event, dict):
                continue
            mid = _message_id(event)
            texts = describe(event)
            if mid is not None:
                if self.live and mid == self.head:
                    out.append(self._rest_of(mid, event))  # the rest of its text, first
                self.logged.add(mid)
                if mid in self.streamed:
                    texts = [t for t in texts if not t.startswith("[assistant] ")]
            if texts or mid == self.head:
                out.append(self._end_line())
            out.extend(t + "\n" for t in texts)
        if self.live and not final:
            out.append(self._live_text())
        if final:
            out.append(self._end_line())
        return "".join(out)

    def writing(self) -> str | None:
        """One line on the message being written now, after :meth:`read` has read the log (for
        ``orch logs`` without ``-f``); None when there is none."""
        mid, data = self._live_file(0)
        if mid is None or mid in self.logged:
            return None
        text = " ".join(data.decode("utf-8", "replace").split())
        if not text:
            return None
        return "[writing] " + ("…" + text[-(WIDTH - 1) :] if len(text) > WIDTH else text)

    def _new_lines(self, final: bool) -> list[bytes]:
        try:
            with open(self.log_path, "rb") as fh:
                if fh.seek(0, 2) < self.pos:  # rewritten from the start (a remote log reset)
                    self.pos, self.buf = 0, b""
                fh.seek(self.pos)
                chunk = fh.read()
        except OSError:
            chunk = b""
        self.pos += len(chunk)
        *lines, self.buf = (self.buf + chunk).split(b"\n")
        if final and self.buf:
            lines.append(self.buf)
            self.buf = b""
        return [line for line in lines if line.strip()]

    def _live_file(self, offset: int) -> tuple[str | None, bytes]:
        """live.txt's message id and its text from ``offset`` (from the start when the message
        is not the one being printed)."""
        try:
            with open(self.live_path, "rb") as fh:
                head = fh.readline()
                if not head.endswith(b"\n"):
                    return None, b""
                mid = head.decode("utf-8", "replace").strip()
                if mid == self.head:
                    fh.seek(len(head) + offset)
                return mid, fh.read()
        except OSError:
            return None, b""

    def _live_text(self) -> str:
        """New text of the message being written (a new message starts a ``[writing]`` line)."""
        import codecs

        mid, data = self._live_file(self.live_pos)
        if mid is None or (mid != self.head and mid in self.logged):
            return ""  # nothing, or a message whose event was read already
        out = ""
        if mid != self.head:
            out = self._end_line()
            self.head, self.live_pos, self.printed, self.event_text = mid, 0, 0, ""
            self.decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self.live_pos += len(data)
        return out + self._show(mid, self.decoder.decode(data) if data else "")

    def _rest_of(self, mid: str, event: dict[str, Any]) -> str:
        """The text of the streamed message ``mid`` not printed yet, when its assistant event
        comes: from live.txt while it still holds it, else from the event itself (the run may
        have ended and live.txt gone before this reader looked again)."""
        out = ""
        fmid, data = self._live_file(self.live_pos)
        if fmid == mid and data:
            self.live_pos += len(data)
            out = self._show(mid, self.decoder.decode(data))
        content = (event.get("message") or {}).get("content") or []
        self.event_text += "".join(
            str(b.get("text", ""))
            for b in content
            if isinstance(b, dict) and b.get("type") == "text"
        )
        return out + self._show(mid, self.event_text[self.printed :])

    def _show(self, mid: str, text: str) -> str:
        if not text:
            return ""
        out = ""
        if mid not in self.streamed:
            self.streamed.add(mid)
            out = "[writing] "
        self.printed += len(text)
        self.open_line = not text.endswith("\n")
        return out + text

    def _end_line(self) -> str:
        if self.open_line:
            self.open_line = False
            return "\n"
        return ""


def _message_id(event: dict[str, Any]) -> str | None:
    """The API message id of an ``assistant`` event (one per content block, same id)."""
    if event.get("type") != "assistant":
        return None
    message = event.get("message")
    mid = message.get("id") if isinstance(message, dict) else None
    return str(mid) if mid else None

"""Human-readable text: progress lines from Claude Code's stream-json events (``orch logs``,
tmux) and the one way each figure is written everywhere (costs, counts, model names).

Standard library only: the supervisor uses it for the tmux pane when it is importable.
"""

from __future__ import annotations

import json
import math
import re
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
        return [
            f"[orch retry] attempt {event.get('attempt')}/{event.get('max_attempts')} in "
            f"{event.get('delay_s')} s (API error {event.get('api_error_status')})"
        ]
    if kind == "orch" and event.get("message"):
        return [f"[orch] {_short(event['message'])}"]
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

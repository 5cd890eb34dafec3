"""Human-readable progress lines from Claude Code's stream-json events (``orch logs``, tmux)."""

from __future__ import annotations

import json
from typing import Any

WIDTH = 160


def _short(text: Any, width: int = WIDTH) -> str:
    s = " ".join(str(text).split())
    return s if len(s) <= width else s[: width - 1] + "…"


def describe(event: dict[str, Any]) -> list[str]:
    """One or more lines for an event; nothing for events a person does not need."""
    kind, sub = event.get("type"), event.get("subtype")
    if kind == "system" and sub == "init":
        return [f"[start] session {event.get('session_id')} model {event.get('model')}"]
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
        cost_s = f", ${cost:.4f}" if isinstance(cost, (int, float)) else ""
        state = "error" if event.get("is_error") else "done"
        secs = (event.get("duration_ms") or 0) / 1000
        head = f"[{state}] {event.get('num_turns')} turns, {secs:.1f} s{cost_s}"
        return [head, f"[result] {_short(event.get('result', ''), 400)}"]
    return []


def describe_line(raw: bytes | str) -> list[str]:
    try:
        event = json.loads(raw)
    except ValueError:
        return []
    return describe(event) if isinstance(event, dict) else []

"""A scripted stand-in for the Anthropic Messages API, for driving the real Claude Code CLI.

Tests point ``ANTHROPIC_BASE_URL`` at a :class:`MessagesStandIn` and script what the "model"
answers, so Claude Code runs for real (tools, sessions, resume, retries) without network or cost::

    with MessagesStandIn() as api:
        api.on("build it", Reply.bash("make"), Reply.text("built"))
        subprocess.run(["claude", "-p", "build it", "--allowedTools", "Bash"], env=...)
        assert api.conversation_requests()[-1].tool_results

Scripting model
    Every Messages call is answered by the *responder* (``respond_with`` replaces it). The default
    responder tries the rules registered with :meth:`MessagesStandIn.on`, in registration order,
    against :attr:`ApiRequest.prompt_text` -- the most recent user turn that has text. A tool-result
    turn therefore keeps matching the rule of the prompt that started it, and a resumed session's
    new prompt can match a different rule. Each rule consumes one reply per matching request; the
    last reply is sticky. When no rule matches, :attr:`MessagesStandIn.default` answers (an echo).

Title requests
    Claude Code asks the model to title a session (a tool-less request whose system prompt and
    ``output_config.format`` JSON schema ask for a ``title``). Those are answered with
    :attr:`MessagesStandIn.title_reply` and never reach the responder, so they cannot eat a script.

Rate limits, stalls, answers that never end
    :meth:`MessagesStandIn.rate_limit` answers every Messages call with a 429 (or 529) and a
    ``retry-after`` header for a few seconds, as an API key over its limit gets;
    :attr:`MessagesStandIn.rejected` counts the calls answered so. ``Reply.stall`` starts an
    answer and then sends nothing more (a stalled stream); ``Reply.endless`` keeps writing
    text forever (a slow but live answer); both end when the server stops.

Keys and models
    By default any key is accepted. Set :attr:`MessagesStandIn.api_keys` to answer other keys
    (``x-api-key``, or ``Authorization: Bearer``) with the API's 401 ``authentication_error``.
    ``GET /v1/models`` lists :data:`MODELS`, as the real API does (a way to check a key without
    spending tokens).

Only the standard library is used so third-party plugin authors can ship tests with it.
Run ``python -m orch_plugins.testing.api`` to serve the default responder to other processes.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import hashlib
import itertools
import json
import sys
import threading
import time
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar
from urllib.parse import urlsplit

__all__ = [
    "MODELS",
    "ApiRequest",
    "EndlessReply",
    "ErrorReply",
    "MessagesStandIn",
    "Reply",
    "Responder",
    "Rule",
    "StallReply",
    "TextReply",
    "ToolUseReply",
    "default_responder",
    "load_script",
    "main",
]

#: Claude Code injects context (date, CLAUDE.md, ...) as user text blocks wrapped in this tag;
#: they are not what the user typed, so the text views below skip them.
SYSTEM_REMINDER_PREFIX = "<system-reminder>"

#: Above this many characters the default responder answers a digest instead of echoing, so a
#: multi-megabyte task does not come back through the event stream.
ECHO_LIMIT = 2000

_ids = itertools.count(1)

#: What ``GET /v1/models`` lists (the real API's shape: ``data``, ``has_more``, ids).
MODELS = ("claude-sonnet-4-5-20250929", "claude-opus-4-1-20250805", "claude-haiku-4-5-20251001")


def _next_id(prefix: str) -> str:
    """Unique, recognisable ids (``msg_standin_…``) so transcripts show where a turn came from."""
    return f"{prefix}_standin_{next(_ids):06d}"


# --------------------------------------------------------------------------------------------
# Replies
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Reply:
    """What the stand-in answers to one Messages call. Build with the class-method constructors.

    ``delay`` (seconds) sleeps before answering; it lets tests hold a session mid-turn (timeouts,
    cancellation). A delay is cut short when the server stops, so it never blocks shutdown.
    """

    delay: float = 0.0

    @staticmethod
    def text(text: str, *, delay: float = 0.0, chunk: int = 4096, pace: float = 0.0) -> TextReply:
        """An assistant text turn that ends the agent loop (``stop_reason: end_turn``).

        The text streams in ``text_delta`` events of ``chunk`` characters, ``pace`` seconds
        apart (0: all at once), so a test can watch an answer while it is being written."""
        if chunk < 1 or pace < 0:
            raise ValueError("chunk must be at least 1 and pace not negative")
        return TextReply(content=text, delay=delay, chunk=chunk, pace=pace)

    @staticmethod
    def bash(command: str, description: str = "run", *, delay: float = 0.0) -> ToolUseReply:
        """A ``Bash`` tool call; with ``--allowedTools Bash`` Claude Code really runs it."""
        return ToolUseReply(
            name="Bash", input={"command": command, "description": description}, delay=delay
        )

    @staticmethod
    def tool(
        name: str, input: Mapping[str, Any], *, preface: str = "", delay: float = 0.0
    ) -> ToolUseReply:
        """A call of any Claude Code tool (``Write``, ``Read``, …) with the given input."""
        return ToolUseReply(name=name, input=dict(input), preface=preface, delay=delay)

    @staticmethod
    def error(
        status: int = 529,
        error_type: str = "overloaded_error",
        message: str = "Overloaded",
        *,
        delay: float = 0.0,
        retry_after: float | None = None,
    ) -> ErrorReply:
        """An HTTP error with Anthropic's error JSON; Claude Code retries it per its settings
        (after ``retry_after`` seconds when given: the ``retry-after`` header, which Claude
        Code 2.1.197 honours as its ``retry_delay_ms``)."""
        return ErrorReply(
            status=status,
            error_type=error_type,
            message=message,
            delay=delay,
            retry_after=retry_after,
        )

    @staticmethod
    def stall(text: str = "thinking", *, delay: float = 0.0) -> StallReply:
        """Start an answer (``message_start`` and one ``text_delta`` of ``text``), then send
        nothing more, the connection held open, until the server stops: a stalled stream."""
        return StallReply(content=text, delay=delay)

    @staticmethod
    def endless(text: str = "still working ", *, pace: float = 0.5) -> EndlessReply:
        """An answer that never finishes: a ``text_delta`` of ``text`` every ``pace`` seconds
        until the server stops (a slow but live model)."""
        if not pace > 0:
            raise ValueError("pace must be positive")
        return EndlessReply(content=text, pace=pace)

    @staticmethod
    def from_json(spec: Mapping[str, Any]) -> Reply:
        """Parse the ``--script`` form: ``{"text": s}``, ``{"bash": cmd}``, ``{"error": 529}``,
        ``{"stall": s}`` or ``{"endless": s}``.

        Optional keys: ``delay``; ``chunk`` and ``pace`` (text, endless); ``description``
        (bash); ``type``, ``message`` and ``retry_after`` (error).
        """
        delay = float(spec.get("delay", 0.0))
        if "text" in spec:
            chunk, pace = int(spec.get("chunk", 4096)), float(spec.get("pace", 0.0))
            return Reply.text(str(spec["text"]), delay=delay, chunk=chunk, pace=pace)
        if "bash" in spec:
            return Reply.bash(str(spec["bash"]), str(spec.get("description", "run")), delay=delay)
        if "error" in spec:
            retry_after = spec.get("retry_after")
            return ErrorReply(
                status=int(spec["error"]),
                error_type=str(spec.get("type", "overloaded_error")),
                message=str(spec.get("message", "Overloaded")),
                retry_after=None if retry_after is None else float(retry_after),
                delay=delay,
            )
        if "stall" in spec:
            return Reply.stall(str(spec["stall"]), delay=delay)
        if "endless" in spec:
            return Reply.endless(str(spec["endless"]), pace=float(spec.get("pace", 0.5)))
        raise ValueError(
            f"reply needs one of 'text', 'bash', 'error', 'stall', 'endless': {dict(spec)!r}"
        )


@dataclass(frozen=True, kw_only=True)
class TextReply(Reply):
    """A plain text answer, streamed ``chunk`` characters a delta, ``pace`` seconds apart."""

    content: str
    chunk: int = 4096
    pace: float = 0.0


@dataclass(frozen=True, kw_only=True)
class ToolUseReply(Reply):
    """A single ``tool_use`` block (``stop_reason: tool_use``), optionally after a text block."""

    name: str
    input: dict[str, Any] = field(default_factory=dict)
    preface: str = ""


@dataclass(frozen=True, kw_only=True)
class ErrorReply(Reply):
    """An HTTP error response in the shape the Anthropic SDK understands."""

    status: int = 529
    error_type: str = "overloaded_error"
    message: str = "Overloaded"
    #: Seconds for the ``retry-after`` header (None: no header).
    retry_after: float | None = None


@dataclass(frozen=True, kw_only=True)
class StallReply(Reply):
    """The start of a text answer, then silence until the server stops."""

    content: str


@dataclass(frozen=True, kw_only=True)
class EndlessReply(Reply):
    """Text deltas of ``content`` every ``pace`` seconds, never finished."""

    content: str
    pace: float = 0.5


# --------------------------------------------------------------------------------------------
# Requests
# --------------------------------------------------------------------------------------------


def _block_text(content: Any) -> str:
    """Flatten a content value (string or list of blocks) to its text; other blocks are skipped."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [
            b["text"]
            for b in content
            if isinstance(b, dict) and b.get("type") == "text" and isinstance(b.get("text"), str)
        ]
        return "\n".join(parts)
    return ""


def _user_texts(message: Mapping[str, Any]) -> list[str]:
    """Text blocks the user wrote in one message, without Claude Code's system reminders."""
    content = message.get("content")
    if isinstance(content, str):
        blocks: list[Any] = [{"type": "text", "text": content}]
    elif isinstance(content, list):
        blocks = content
    else:
        return []
    return [
        b["text"]
        for b in blocks
        if isinstance(b, dict)
        and b.get("type") == "text"
        and isinstance(b.get("text"), str)
        and not b["text"].startswith(SYSTEM_REMINDER_PREFIX)
    ]


@dataclass(frozen=True, eq=False)
class ApiRequest:
    """One ``POST /v1/messages`` call as the stand-in saw it, with views tests usually want.

    Text views skip Claude Code's ``<system-reminder>`` blocks and join a message's text blocks
    with ``"\\n"``; ``body`` keeps everything verbatim.
    """

    body: dict[str, Any]
    headers: dict[str, str]
    path: str = "/v1/messages"
    received_at: float = field(default_factory=time.time)

    @property
    def messages(self) -> list[dict[str, Any]]:
        """The conversation; Claude Code also sends ``role: system`` entries mid-conversation."""
        msgs = self.body.get("messages")
        return [m for m in msgs if isinstance(m, dict)] if isinstance(msgs, list) else []

    @property
    def model(self) -> str:
        return str(self.body.get("model", ""))

    @property
    def stream(self) -> bool:
        return bool(self.body.get("stream", False))

    @property
    def tools(self) -> list[str]:
        """Names of the tools offered to the model."""
        tools = self.body.get("tools") or []
        return [str(t.get("name")) for t in tools if isinstance(t, dict)]

    @property
    def session_id(self) -> str | None:
        """Claude Code's session id (``X-Claude-Code-Session-Id``), to tell processes apart."""
        for key, value in self.headers.items():
            if key.lower() == "x-claude-code-session-id":
                return value
        return None

    @property
    def system_text(self) -> str:
        """The system prompt flattened to one string."""
        return _block_text(self.body.get("system"))

    def _user_messages(self) -> list[dict[str, Any]]:
        return [m for m in self.messages if m.get("role") == "user"]

    @property
    def last_user_text(self) -> str:
        """Text of the last user message; ``""`` when that message only carries tool results."""
        users = self._user_messages()
        return "\n".join(_user_texts(users[-1])) if users else ""

    @property
    def prompt_text(self) -> str:
        """Text of the most recent user message that has any: the prompt this turn serves.

        Equals :attr:`last_user_text` unless the last user message is a tool-result turn, in
        which case it is the prompt that led to the tool call. Rules match against this.
        """
        for message in reversed(self._user_messages()):
            texts = _user_texts(message)
            if texts:
                return "\n".join(texts)
        return ""

    @property
    def tool_results(self) -> list[str]:
        """Contents of the ``tool_result`` blocks in the last user message, as strings."""
        users = self._user_messages()
        content = users[-1].get("content") if users else None
        if not isinstance(content, list):
            return []
        return [
            _block_text(b.get("content"))
            for b in content
            if isinstance(b, dict) and b.get("type") == "tool_result"
        ]

    @property
    def all_user_texts(self) -> list[str]:
        """Every user text block in the conversation, in order (proves a resume carried turns)."""
        return [t for m in self._user_messages() for t in _user_texts(m)]

    @property
    def is_title_request(self) -> bool:
        """Whether this is Claude Code's side request asking for a session title.

        Recognised by: no tools offered, and either an ``output_config.format`` JSON schema with
        a ``title`` property (2.1.x) or a system prompt asking to generate a title.
        """
        if self.body.get("tools"):
            return False
        output_format = (self.body.get("output_config") or {}).get("format") or {}
        properties = (output_format.get("schema") or {}).get("properties") or {}
        if "title" in properties:
            return True
        system = self.system_text.lower()
        return "title" in system and "generate" in system


# --------------------------------------------------------------------------------------------
# Responders
# --------------------------------------------------------------------------------------------

#: Anything that turns a request into a reply.
Responder = Callable[[ApiRequest], Reply]


def default_responder(request: ApiRequest) -> Reply:
    """Echo, so unscripted tests can still assert what arrived.

    A tool-result turn answers ``"tool said: " + <results joined by newlines>``; otherwise
    ``"echo: " + last_user_text``, or ``"echo sha256=<hex>"`` when that text is longer than
    :data:`ECHO_LIMIT` characters (hash of its UTF-8 bytes).
    """
    results = request.tool_results
    if results:
        return Reply.text("tool said: " + "\n".join(results))
    text = request.last_user_text
    if len(text) > ECHO_LIMIT:
        return Reply.text("echo sha256=" + hashlib.sha256(text.encode("utf-8")).hexdigest())
    return Reply.text("echo: " + text)


class Rule:
    """A scripted sequence of replies for prompts containing ``marker``.

    Thread-safe: the owning :class:`MessagesStandIn` takes replies under its lock.
    """

    def __init__(self, marker: str, replies: Sequence[Reply]) -> None:
        if not replies:
            raise ValueError("a rule needs at least one reply")
        self.marker = marker
        self.replies: tuple[Reply, ...] = tuple(replies)
        #: How many requests this rule has answered.
        self.hits = 0

    def matches(self, request: ApiRequest) -> bool:
        return self.marker in request.prompt_text

    def take(self) -> Reply:
        """The next reply; the last one repeats forever."""
        reply = self.replies[min(self.hits, len(self.replies) - 1)]
        self.hits += 1
        return reply

    def __repr__(self) -> str:
        return f"Rule({self.marker!r}, {len(self.replies)} replies, hits={self.hits})"


# --------------------------------------------------------------------------------------------
# Wire format
# --------------------------------------------------------------------------------------------


def _estimate_tokens(n_chars: int) -> int:
    """Roughly 4 characters a token, so bigger prompts cost more, as with the real API."""
    return max(1, n_chars // 4)


def _content_blocks(reply: TextReply | ToolUseReply) -> tuple[list[dict[str, Any]], str]:
    """The assistant content blocks and stop reason for a successful reply."""
    if isinstance(reply, TextReply):
        return [{"type": "text", "text": reply.content}], "end_turn"
    blocks: list[dict[str, Any]] = []
    if reply.preface:
        blocks.append({"type": "text", "text": reply.preface})
    blocks.append(
        {"type": "tool_use", "id": _next_id("toolu"), "name": reply.name, "input": reply.input}
    )
    return blocks, "tool_use"


def _event(kind: str, **fields: Any) -> tuple[str, dict[str, Any]]:
    return kind, {"type": kind, **fields}


def _usage(input_tokens: int, output_tokens: int) -> dict[str, int]:
    return {
        "input_tokens": input_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": output_tokens,
    }


def _sse_events(
    message_id: str,
    model: str,
    blocks: list[dict[str, Any]],
    stop_reason: str,
    input_tokens: int,
    chunk: int = 4096,
) -> Iterator[tuple[str, dict[str, Any]]]:
    """The server-sent events the Messages API streams for one assistant message.

    ``message_start`` (usage with input tokens), ``ping``, per block ``content_block_start`` /
    ``content_block_delta``… (text in pieces of ``chunk`` characters) / ``content_block_stop``,
    then ``message_delta`` (stop reason and output tokens) and ``message_stop``.
    """
    message: dict[str, Any] = {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": _usage(input_tokens, 1),
    }
    yield _event("message_start", message=message)
    yield _event("ping")
    output_chars = 0
    for index, block in enumerate(blocks):
        if block["type"] == "text":
            text: str = block["text"]
            yield _event("content_block_start", index=index, content_block={**block, "text": ""})
            for start in range(0, len(text), chunk):
                delta = {"type": "text_delta", "text": text[start : start + chunk]}
                yield _event("content_block_delta", index=index, delta=delta)
            output_chars += len(text)
        else:
            partial = json.dumps(block["input"])
            yield _event("content_block_start", index=index, content_block={**block, "input": {}})
            delta = {"type": "input_json_delta", "partial_json": partial}
            yield _event("content_block_delta", index=index, delta=delta)
            output_chars += len(partial)
        yield _event("content_block_stop", index=index)
    yield _event(
        "message_delta",
        delta={"stop_reason": stop_reason, "stop_sequence": None},
        usage={"output_tokens": _estimate_tokens(output_chars)},
    )
    yield _event("message_stop")


def _models_page() -> dict[str, Any]:
    """``GET /v1/models``'s answer, in the real API's shape."""
    data = [
        {"type": "model", "id": m, "display_name": m, "created_at": "2025-01-01T00:00:00Z"}
        for m in MODELS
    ]
    return {"data": data, "has_more": False, "first_id": MODELS[0], "last_id": MODELS[-1]}


def _error_body(error_type: str, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": error_type, "message": message}}


# --------------------------------------------------------------------------------------------
# Server
# --------------------------------------------------------------------------------------------


class _Server(ThreadingHTTPServer):
    """Daemon handler threads, and no joining them on close: a handler sleeping in a long
    ``delay`` (or streaming to a killed client) must not hold up test teardown."""

    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    standin: MessagesStandIn

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients (Claude Code being killed mid-stream) hang up; that is not worth a traceback."""
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError)):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    server_version = "orch-plugins-standin/1"

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: tests inspect :attr:`MessagesStandIn.requests` instead of stderr noise."""

    # -- verbs -------------------------------------------------------------------------------

    def do_HEAD(self) -> None:
        """Claude Code probes ``HEAD /`` for connectivity before the first call."""
        self._drain()
        self.server.standin._note_side_request(self.command, self.path)
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self) -> None:
        self._drain()
        self.server.standin._note_side_request(self.command, self.path)
        if urlsplit(self.path).path.rstrip("/").endswith("/v1/models"):
            if self._authorized():
                self._send_json(200, _models_page())
            return
        self._send_json(200, {})

    def do_POST(self) -> None:
        raw = self._drain()
        path = urlsplit(self.path).path.rstrip("/")
        standin = self.server.standin
        if path.endswith("/v1/messages/count_tokens"):
            standin._note_side_request(self.command, self.path)
            self._send_json(200, {"input_tokens": _estimate_tokens(len(raw))})
            return
        if not path.endswith("/v1/messages"):
            standin._note_side_request(self.command, self.path)
            self._send_json(404, _error_body("not_found_error", f"no route for {self.path}"))
            return
        try:
            body = json.loads(raw or b"{}")
            if not isinstance(body, dict):
                raise ValueError("body is not a JSON object")
        except ValueError as exc:
            self._send_json(400, _error_body("invalid_request_error", f"bad JSON: {exc}"))
            return
        if not self._authorized():
            return
        request = ApiRequest(body=body, headers=dict(self.headers.items()), path=self.path)
        reply = standin._answer(request)
        if reply.delay > 0 and standin._stopping.wait(reply.delay):
            self.close_connection = True  # server is stopping: drop the call unanswered
            return
        self._send_reply(request, reply, len(raw))

    def do_PUT(self) -> None:
        self._not_allowed()

    def do_DELETE(self) -> None:
        self._not_allowed()

    def do_PATCH(self) -> None:
        self._not_allowed()

    # -- helpers -----------------------------------------------------------------------------

    def _drain(self) -> bytes:
        """Read the whole body (Content-Length or chunked), decompressing if it is encoded."""
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            raw = b"".join(chunks)
        else:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        encoding = self.headers.get("Content-Encoding", "").lower()
        if encoding == "gzip":
            raw = gzip.decompress(raw)
        elif encoding == "deflate":
            raw = zlib.decompress(raw)
        return raw

    def _authorized(self) -> bool:
        """True when :attr:`MessagesStandIn.api_keys` is unset or holds the request's key;
        else answers 401 as the API does and returns False."""
        keys = self.server.standin.api_keys
        if keys is None:
            return True
        bearer = self.headers.get("Authorization", "")
        given = {self.headers.get("x-api-key"), bearer.removeprefix("Bearer ") or None}
        if given & set(keys):
            return True
        self._send_json(401, _error_body("authentication_error", "invalid x-api-key"))
        return False

    def _not_allowed(self) -> None:
        self._drain()
        self.server.standin._note_side_request(self.command, self.path)
        self._send_json(405, _error_body("invalid_request_error", "method not allowed"))

    def _send_json(
        self, status: int, payload: Any, headers: Mapping[str, str] | None = None
    ) -> None:
        data = json.dumps(payload).encode("utf-8")
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("request-id", _next_id("req"))
        self.end_headers()
        self.wfile.write(data)

    def _send_reply(self, request: ApiRequest, reply: Reply, body_size: int) -> None:
        if isinstance(reply, (StallReply, EndlessReply)):
            self._send_unfinished(request, reply)
            return
        if isinstance(reply, ErrorReply):
            # No x-should-retry header: the SDK's own status rules (429, 5xx, 529) then apply.
            extra = {"retry-after": str(reply.retry_after)} if reply.retry_after else {}
            self._send_json(reply.status, _error_body(reply.error_type, reply.message), extra)
            return
        assert isinstance(reply, (TextReply, ToolUseReply))  # _answer vetted it
        blocks, stop_reason = _content_blocks(reply)
        message_id = _next_id("msg")
        model = request.model or "claude-standin"
        input_tokens = _estimate_tokens(body_size)
        if not request.stream:
            message = {
                "id": message_id,
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": blocks,
                "stop_reason": stop_reason,
                "stop_sequence": None,
                "usage": _usage(input_tokens, _estimate_tokens(len(json.dumps(blocks)))),
            }
            self._send_json(200, message)
            return
        # Stream without a length and close afterwards: simplest framing every client accepts.
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.send_header("request-id", _next_id("req"))
        self.end_headers()
        self.close_connection = True
        chunk = reply.chunk if isinstance(reply, TextReply) else 4096
        pace = reply.pace if isinstance(reply, TextReply) else 0.0
        events = _sse_events(message_id, model, blocks, stop_reason, input_tokens, chunk)
        for event, data in events:
            if pace and event == "content_block_delta" and self.server.standin._stopping.wait(pace):
                return  # the server is stopping
            self.wfile.write(f"event: {event}\ndata: {json.dumps(data)}\n\n".encode())
            self.wfile.flush()

    def _send_unfinished(self, request: ApiRequest, reply: StallReply | EndlessReply) -> None:
        """A stream that starts and never finishes: after its first text delta, silence
        (stall) or one more delta every ``pace`` seconds (endless), until the server stops."""
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        blocks = [{"type": "text", "text": reply.content}]
        events = _sse_events(_next_id("msg"), request.model or "claude-standin", blocks, "", 1)
        stopping = self.server.standin._stopping
        for event, data in events:
            self.wfile.write(f"event: {event}\ndata: {json.dumps(data)}\n\n".encode())
            self.wfile.flush()
            if event == "content_block_delta":
                break
        pace = reply.pace if isinstance(reply, EndlessReply) else None
        while not stopping.wait(pace if pace else 3600):
            if pace:
                delta = {"type": "text_delta", "text": reply.content}
                data = {"type": "content_block_delta", "index": 0, "delta": delta}
                self.wfile.write(
                    f"event: content_block_delta\ndata: {json.dumps(data)}\n\n".encode()
                )
                self.wfile.flush()


class MessagesStandIn:
    """A Messages API server on 127.0.0.1 answering Claude Code from a script.

    Use as a context manager (or :meth:`start` / :meth:`stop`). All methods are thread-safe:
    several Claude Code processes may talk to one stand-in at once.
    """

    #: Answer to title requests: the JSON object Claude Code's title schema asks for.
    title_reply: Reply = Reply.text(json.dumps({"title": "Stand-in session"}))

    _poll_interval: ClassVar[float] = 0.05

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port
        #: Fallback responder for requests no rule matches; replace it freely.
        self.default: Responder = default_responder
        #: The keys accepted (``x-api-key`` or ``Authorization: Bearer``); None: any key.
        self.api_keys: set[str] | None = None
        self._responder: Responder = self._scripted
        self._rules: list[Rule] = []
        self._requests: list[ApiRequest] = []
        self._side_requests: list[tuple[str, str]] = []
        self._cond = threading.Condition()
        self._stopping = threading.Event()
        #: Until when (``time.monotonic``) every Messages call gets the limiter's error reply
        #: (None: from the next call on, for ``_limit_seconds``).
        self._limited_until: float | None = 0.0
        self._limit_seconds = 0.0
        self._limit_reply: ErrorReply | None = None
        self._rejected = 0
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> MessagesStandIn:
        """Bind (an ephemeral port unless one was given) and serve in a daemon thread."""
        if self._server is not None:
            raise RuntimeError("stand-in already started")
        self._stopping.clear()
        server = _Server((self.host, self.port), _Handler)
        server.standin = self
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": self._poll_interval},
            name=f"messages-standin:{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving; wakes handlers sleeping in a ``delay`` so nothing lingers."""
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> MessagesStandIn:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """Base URL for ``ANTHROPIC_BASE_URL``."""
        if self._server is None:
            raise RuntimeError("stand-in not started")
        return f"http://{self.host}:{self.port}"

    # -- scripting ---------------------------------------------------------------------------

    def on(self, marker: str, *replies: Reply) -> Rule:
        """Answer requests whose :attr:`ApiRequest.prompt_text` contains ``marker``.

        Rules are tried in registration order; a matching request takes the rule's next reply
        and the last reply repeats. Returns the rule, whose ``hits`` counts answered requests.
        """
        rule = Rule(marker, replies)
        with self._cond:
            self._rules.append(rule)
        return rule

    def respond_with(self, responder: Responder) -> Responder:
        """Replace the whole responder (rules and default); usable as a decorator."""
        with self._cond:
            self._responder = responder
        return responder

    def rate_limit(
        self, seconds: float, *, status: int = 429, retry_after: float | None = 1.0
    ) -> None:
        """For ``seconds`` from the next Messages call on, answer every Messages call (title
        requests too) with ``status`` (429 ``rate_limit_error``, or 529 ``overloaded_error``)
        and a ``retry-after`` header of ``retry_after`` seconds (None: no header), as an API
        key over its rate limit gets. :attr:`rejected` counts these answers."""
        kind = "rate_limit_error" if status == 429 else "overloaded_error"
        reply = ErrorReply(
            status=status, error_type=kind, message="stand-in rate limit", retry_after=retry_after
        )
        with self._cond:
            self._limit_reply = reply
            self._limit_seconds = seconds
            self._limited_until = None

    @property
    def rejected(self) -> int:
        """How many Messages calls :meth:`rate_limit` has refused so far."""
        with self._cond:
            return self._rejected

    def reset(self) -> None:
        """Forget rules, requests and a custom responder; keep serving."""
        with self._cond:
            self._rules.clear()
            self._requests.clear()
            self._side_requests.clear()
            self._limited_until, self._rejected = 0.0, 0
            self._responder = self._scripted
            self.default = default_responder

    def _scripted(self, request: ApiRequest) -> Reply:
        """The scripted responder: first matching rule, else :attr:`default`."""
        with self._cond:
            for rule in self._rules:
                if rule.matches(request):
                    return rule.take()
            default = self.default
        return default(request)

    # -- observation -------------------------------------------------------------------------

    @property
    def requests(self) -> list[ApiRequest]:
        """Snapshot of every Messages call so far, title requests included (see the flag)."""
        with self._cond:
            return list(self._requests)

    def conversation_requests(self) -> list[ApiRequest]:
        """The Messages calls that are not title requests."""
        return [r for r in self.requests if not r.is_title_request]

    @property
    def side_requests(self) -> list[tuple[str, str]]:
        """``(method, path)`` of calls that were not Messages calls (probes, token counts)."""
        with self._cond:
            return list(self._side_requests)

    def wait_for(
        self, predicate: Callable[[ApiRequest], bool] | None = None, timeout: float = 30.0
    ) -> ApiRequest:
        """Block until a conversation request matching ``predicate`` has arrived; return it.

        Lets a test act while Claude Code is mid-turn (e.g. kill it during a delayed reply).
        """

        def find() -> ApiRequest | None:
            for r in self._requests:
                if not r.is_title_request and (predicate is None or predicate(r)):
                    return r
            return None

        with self._cond:
            found = self._cond.wait_for(find, timeout)
        if found is None:
            raise TimeoutError(f"no matching request within {timeout} s")
        return found

    # -- internals ---------------------------------------------------------------------------

    def _answer(self, request: ApiRequest) -> Reply:
        with self._cond:
            self._requests.append(request)
            self._cond.notify_all()
            responder = self._responder
            if self._limit_reply is not None:
                now = time.monotonic()
                if self._limited_until is None:
                    self._limited_until = now + self._limit_seconds
                if now < self._limited_until:
                    self._rejected += 1
                    return self._limit_reply
        if request.is_title_request:
            return self.title_reply
        try:
            reply = responder(request)
        except Exception as exc:  # a broken responder must surface in the test, not hang it
            return Reply.error(500, "api_error", f"stand-in responder failed: {exc!r}")
        if not isinstance(reply, (TextReply, ToolUseReply, ErrorReply, StallReply, EndlessReply)):
            return Reply.error(500, "api_error", f"stand-in responder returned {reply!r}")
        return reply

    def _note_side_request(self, method: str, path: str) -> None:
        with self._cond:
            self._side_requests.append((method, path))


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


def load_script(path: str, api: MessagesStandIn) -> None:
    """Register rules from a JSON file: ``[{"match": str, "replies": [reply spec, ...]}]``."""
    with open(path, encoding="utf-8") as fh:
        rules = json.load(fh)
    if not isinstance(rules, list):
        raise ValueError("script must be a JSON list of rules")
    for rule in rules:
        api.on(str(rule["match"]), *(Reply.from_json(r) for r in rule["replies"]))


def main(argv: Sequence[str] | None = None) -> int:
    """Serve until killed; the first stdout line is the base URL, for the parent to read."""
    parser = argparse.ArgumentParser(
        prog="python -m orch_plugins.testing.api",
        description="Scripted Anthropic Messages API stand-in for driving Claude Code in tests. "
        "Prints its base URL: set ANTHROPIC_BASE_URL to it and ANTHROPIC_API_KEY to any value.",
        epilog='A script is a JSON list of rules: [{"match": "TEXT", "replies": [REPLY, ...]}]. '
        "A request whose prompt contains TEXT gets the rule's replies in order, then the last "
        'one again. A REPLY is {"text": "..."}, {"bash": "COMMAND"} (a Bash tool call), '
        '{"error": 529} (with "retry_after", "type", "message"), {"stall": "..."} or '
        '{"endless": "..."}; any may add "delay" (seconds). Unmatched prompts are echoed: '
        '"echo: PROMPT".',
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (default)")
    parser.add_argument("--script", metavar="FILE", help="rules to answer with (see below)")
    args = parser.parse_args(argv)
    api = MessagesStandIn(args.host, args.port)
    if args.script:
        load_script(args.script, api)
    with api:
        print(api.url, flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``orch web``: the dashboard's ASGI app (Starlette, Jinja2 templates, server-sent events).

* Access: every request needs the token printed with the URL. ``GET /?token=T`` sets an
  HttpOnly, SameSite=Strict cookie (named per port: cookies are not per port) and redirects to
  the URL without it; later pages send the cookie. Actions are POSTs that must carry the token
  in the ``X-Orch-Token`` header (a cookie alone is refused): another site can neither read
  the token nor send that header, so actions are safe against cross-site requests.
* Live updates: one ``/events`` stream per tab (server-sent events). One task of the server
  reads the store twice a second (only when SQLite says it changed) and checks running agents'
  liveness every 2 s (as ``orch status`` does); each stream sends the rows that changed.
* Actions call :class:`orch_plugins.core.Orchestrator`, the same core as the CLI.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode

import jinja2
import markupsafe
from markdown_it import MarkdownIt
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from orch_plugins import costs
from orch_plugins.core import Orchestrator
from orch_plugins.errors import OrchError
from orch_plugins.model import FINAL, LaunchRequest, Run
from orch_plugins.progress import LogReader
from orch_plugins.supervisor import GitError
from orch_plugins.web import data

HERE = Path(__file__).resolve().parent
TOKEN_HEADER = "X-Orch-Token"
#: Seconds between store reads, and between liveness checks of running agents.
TICK = 0.5
REFRESH_EVERY = 2.0
#: Seconds between log reads of a followed agent.
LOG_TICK = 0.3
#: At most this many characters of a worktree's diff on an agent page.
DIFF_MAX = 500_000

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_md = MarkdownIt("commonmark", {"html": False, "linkify": False}).enable("table")


def markdown(text: str) -> str:
    """``text`` as HTML: CommonMark with tables; raw HTML in it is shown as text, and links
    with unsafe schemes (``javascript:``) are not made (markdown-it's ``validateLink``)."""
    return _md.render(text)


class TokenGate:
    """ASGI middleware: refuse every request without the token (see the module docstring)."""

    def __init__(self, app: ASGIApp, token: str, cookie: str) -> None:
        self.app, self.token, self.cookie = app, token, cookie

    def _ok(self, value: str | None) -> bool:
        return bool(value) and hmac.compare_digest(str(value), self.token)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        jar: SimpleCookie = SimpleCookie()
        with contextlib.suppress(Exception):
            jar.load(headers.get("cookie", ""))
        by_cookie = self.cookie in jar and self._ok(jar[self.cookie].value)
        by_header = self._ok(headers.get(TOKEN_HEADER.lower()))
        if scope["method"] not in ("GET", "HEAD"):
            allowed = by_header  # a cookie alone never authorises an action
        else:
            allowed = by_header or by_cookie
            given = query.get("token", [None])[0]
            if self._ok(given):
                rest = {k: v for k, v in query.items() if k != "token"}
                target = scope["path"] + ("?" + urlencode(rest, doseq=True) if rest else "")
                response: Response = RedirectResponse(target, status_code=303)
                response.set_cookie(
                    self.cookie, self.token, httponly=True, samesite="strict", path="/"
                )
                await response(scope, receive, send)
                return
        if not allowed:
            refused = PlainTextResponse(
                "orch web: refused: open the URL that 'orch web' printed (it carries the token)\n",
                status_code=403,
            )
            await refused(scope, receive, send)
            return
        await self.app(scope, receive, send)


@dataclass
class Snapshot:
    """The newest run of each listed name, as last read, with its row key."""

    version: int = 0
    runs: dict[str, Run] = field(default_factory=dict)
    keys: dict[str, tuple[object, ...]] = field(default_factory=dict)
    at: float = 0.0
    #: Admission and the budget (:func:`orch_plugins.costs.admission` and ``budget``).
    fleet: dict[str, Any] = field(default_factory=dict)
    budget: dict[str, dict[str, float]] = field(default_factory=dict)
    #: When a rate-limit pause ends (epoch seconds; 0: none): the next read after it is new.
    pause_ends: float = 0.0


class Hub:
    """Reads the store for every open stream: one reader however many tabs are open."""

    def __init__(self, state: WebState) -> None:
        self.state = state
        self.snapshot = Snapshot()
        self.changed = asyncio.Condition()
        self._data_version: int | None = None
        self._refreshed = 0.0
        self.task: asyncio.Task[None] | None = None
        # One connection of its own, one reader at a time: SQLite's data_version compares
        # only values read on the same connection.
        self._orch: Orchestrator | None = None
        self._lock = threading.Lock()

    def read(self, force: bool = False) -> Snapshot | None:
        """A new snapshot (also made :attr:`snapshot`) when the store changed (or ``force``);
        None when it did not.
        Running agents' liveness is checked every :data:`REFRESH_EVERY` seconds."""
        with self._lock:
            if self._orch is None:
                self._orch = Orchestrator()
            return self._read(self._orch, force)

    def _read(self, orch: Orchestrator, force: bool) -> Snapshot | None:
        now = time.monotonic()
        if now - self._refreshed >= REFRESH_EVERY:
            self._refreshed = now
            active = orch.store.runs(statuses=("queued", "running"), latest_only=False)
            if active:
                orch.refresh(active)
        dv = orch.store.conn.execute("PRAGMA data_version").fetchone()[0]
        ended = self.snapshot.pause_ends and time.time() >= self.snapshot.pause_ends
        if not force and dv == self._data_version and not ended:
            return None
        self._data_version = dv
        runs = orch.store.runs()
        fleet = costs.admission(orch.store, orch.config)
        left = float(fleet["pause_left_s"] or 0)
        snap = Snapshot(
            version=self.snapshot.version + 1,
            runs={r["name"]: r for r in runs},
            keys={r["name"]: data.row_key(r) for r in runs},
            at=time.time(),
            fleet=fleet,
            budget=costs.budget(orch.store, orch.config),
            pause_ends=time.time() + left if left > 0 else 0.0,
        )
        self.snapshot = snap  # under the lock: versions are never handed out twice
        return snap

    async def run(self) -> None:
        while True:
            try:
                snap = await run_in_threadpool(self.read)
            except Exception:  # a locked store, a backend that failed: try again next tick
                snap = None
            if snap is not None:
                async with self.changed:
                    self.changed.notify_all()
            await asyncio.sleep(TICK)

    async def wait(self, version: int, timeout: float) -> Snapshot:
        """The snapshot once its version differs from ``version`` (or after ``timeout``)."""
        async with self.changed:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(
                    self.changed.wait_for(lambda: self.snapshot.version != version), timeout
                )
            return self.snapshot


class WebState:
    """What the app's handlers share: the token, the mode, one core per thread."""

    def __init__(self, *, token: str, read_only: bool, cwd: str) -> None:
        self.token = token
        self.read_only = read_only
        self.cwd = cwd
        self._local = threading.local()
        self._choices: tuple[float, tuple[list[str], list[str]]] | None = None

    def choices(self) -> tuple[list[str], list[str]]:
        """The registered backend and role names (for the launch form), read again at most
        every 10 s (roles come from files too: .claude/agents/*.md)."""
        now = time.monotonic()
        cached = self._choices
        if cached is None or now - cached[0] > 10:
            backends, roles = self.orch().plugins.everything()
            cached = self._choices = (now, (backends.names(), roles.names()))
        return cached[1]

    def orch(self) -> Orchestrator:
        """This thread's :class:`Orchestrator` (a SQLite connection serves one thread)."""
        orch = getattr(self._local, "orch", None)
        if orch is None:
            orch = self._local.orch = Orchestrator()
        return orch


def _sse(event: str, payload: object) -> bytes:
    text = payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False)
    body = "".join(f"data: {line}\n" for line in text.split("\n"))
    return f"event: {event}\n{body}\n".encode()


def create_app(
    *,
    token: str,
    read_only: bool = False,
    cwd: str = ".",
    port: int = 0,
    on_ready: Callable[[], None] | None = None,
) -> Starlette:
    """The dashboard app. ``token``: the access token; ``read_only``: no actions; ``cwd``:
    where launched agents run (the directory ``orch web`` was started in); ``port``: names the
    cookie; ``on_ready``: called once the app has read the store and may serve."""
    state = WebState(token=token, read_only=read_only, cwd=cwd)
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(HERE / "templates")),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals.update(
        money=data.money,
        fmt_time=data.fmt_time,
        elapsed=data.elapsed,
        host_of=data.host_of,
        changes_line=data.changes_line,
        read_only=read_only,
        token=token,
        FINAL=FINAL,
    )
    hub = Hub(state)
    row_macro = env.get_template("_row.html").module.row  # type: ignore[attr-defined]
    summary_macro = env.get_template("_row.html").module.summary  # type: ignore[attr-defined]
    #: Each agent's row as last rendered, by name: (what it shows, the columns, its HTML). A
    #: row is rendered again only when its data changed, so a page of 550 rows joins strings.
    rows: dict[str, tuple[tuple[object, ...], tuple[bool, ...], str]] = {}

    def row_html(run: Run, key: tuple[object, ...], cols: dict[str, bool]) -> str:
        shape = tuple(cols.values())
        cached = rows.get(run["name"])
        if cached is None or cached[0] != key or cached[1] != shape:
            cached = rows[run["name"]] = (key, shape, str(row_macro(run, cols)))
        return cached[2]

    def columns(runs: list[Run]) -> dict[str, bool]:
        return {c: data.has_column(runs, c) for c in data.OPTIONAL_FIELDS}

    def render(name: str, **ctx: Any) -> HTMLResponse:
        return HTMLResponse(env.get_template(name).render(**ctx))

    def summary(snap: Snapshot) -> data.Admission:
        return data.admission_state(list(snap.runs.values()), snap.fleet, snap.budget)

    async def agents(request: Request) -> Response:
        snap = hub.snapshot
        if not snap.version:  # the first page before the hub's first read
            await run_in_threadpool(hub.read, True)
            snap = hub.snapshot
        runs = list(snap.runs.values())
        backends, roles = ([], []) if read_only else await run_in_threadpool(state.choices)
        cols = columns(runs)
        return render(
            "agents.html",
            runs=runs,
            rows=[markupsafe.Markup(row_html(r, snap.keys[r["name"]], cols)) for r in runs],
            backends=backends,
            roles=roles,
            defaults=state.orch().config,
            cols=cols,
            adm=summary(snap),
            version=snap.version,
        )

    def _agent_page(run_id: int) -> HTMLResponse:
        orch = state.orch()
        try:
            run = orch.store.get_run(run_id)
        except (OrchError, KeyError, LookupError):
            return HTMLResponse("no such run", status_code=404)
        orch.fetch_files(run)
        ended = run["status"] in FINAL
        output = data.read_output(run) if ended else None
        reader = LogReader(run["log_path"], Path(run["run_dir"]) / "live.txt")
        log = reader.read(final=ended)
        worktree = _worktree_view(orch, run)
        return render(
            "agent.html",
            **worktree,
            run=run,
            timeline=data.timeline(run["log_path"]),
            log=log,
            log_pos=reader.pos,
            output_html=markdown(output) if output is not None else None,
            lineage=data.lineage(orch.store, run),
            cols=columns([run]),
        )

    def _worktree_view(orch: Orchestrator, run: Run) -> dict[str, Any]:
        """The diff (``orch diff``, the core's) of a run with a worktree, when it is its
        agent's newest run and the worktree was not discarded; and whether merge and discard
        are offered (an ended run, not read-only)."""
        view: dict[str, Any] = {"worktree_actions": False, "diff_error": None}
        if not run.get("branch"):
            return view
        changes = data.changes_of(run)
        newest = orch.store.latest(run["name"])
        if changes.get("discarded"):
            view["diff_error"] = "its worktree and branch were discarded"
            return view
        if newest is None or newest["run_id"] != run["run_id"]:
            view["diff_error"] = "a later run of this agent has the worktree now"
            return view
        view["worktree_actions"] = not read_only and run["status"] in FINAL
        try:
            _, text, summary = orch.diff(run["name"])
        except (OrchError, GitError) as exc:
            view["diff_error"] = f"no diff: {exc}"
            return view
        view.update(
            diff_summary=summary,
            diff_lines=text[:DIFF_MAX].splitlines(),
            diff_cut=DIFF_MAX if len(text) > DIFF_MAX else 0,
        )
        return view

    async def agent(request: Request) -> Response:
        return await run_in_threadpool(_agent_page, int(request.path_params["run_id"]))

    def _cost_page() -> HTMLResponse:
        # The cost ledger, as `orch cost --all` reads it: cleared runs' money counts too.
        rows = state.orch().store.costs(include_gone=True)
        hub.read(force=True)
        return render(
            "cost.html",
            total=costs.total(rows),
            chart=data.cost_chart(rows),
            adm=summary(hub.snapshot),
        )

    async def cost(request: Request) -> Response:
        return await run_in_threadpool(_cost_page)

    async def events(request: Request) -> Response:
        """One stream per tab. ``?since=V``: the page was rendered from snapshot V, so rows
        changed since are sent at once. ``?run=ID``: the agent page: that run's status row
        and its log as it grows (``orch logs -f`` text), then its output once it ends."""
        since = int(request.query_params.get("since") or 0)
        run_id = request.query_params.get("run")

        async def table() -> AsyncIterator[bytes]:
            version = since
            sent: dict[str, tuple[object, ...]] = {}
            first = True
            while True:
                snap = await hub.wait(version, 15.0)
                if snap.version == version and not first:
                    yield b": keep-alive\n\n"
                    continue
                if first and since == snap.version:
                    sent = dict(snap.keys)
                elif first:
                    sent = {}
                first = False
                version = snap.version
                runs = list(snap.runs.values())
                cols = columns(runs)
                for name, key in snap.keys.items():
                    if sent.get(name) != key:
                        html = row_html(snap.runs[name], key, cols)
                        yield _sse("row", {"name": name, "html": html})
                for name in [n for n in sent if n not in snap.keys]:
                    yield _sse("remove", {"name": name})
                sent = dict(snap.keys)
                yield _sse("summary", str(summary_macro(summary(snap))))

        async def follow(rid: int) -> AsyncIterator[bytes]:
            try:
                orch_run = await run_in_threadpool(lambda: state.orch().store.get_run(rid))
            except OrchError:  # no such run (cleared since the page was made)
                yield _sse("end", "")
                return
            reader = LogReader(
                orch_run["log_path"], Path(orch_run["run_dir"]) / "live.txt", live=True
            )
            # The page showed the log as it was; the stream goes on from there (?log=BYTES).
            reader.pos = int(request.query_params.get("log") or 0)
            status = None
            ticks = 0
            while True:
                run = await run_in_threadpool(lambda: state.orch().store.get_run(rid))
                ended = run["status"] in FINAL
                if ticks % 5 == 0 and run["backend"] not in ("subprocess", "tmux"):
                    await run_in_threadpool(state.orch().fetch_files, run)
                ticks += 1
                text = await run_in_threadpool(reader.read, final=ended)
                if text:
                    yield _sse("log", text)
                if run["status"] != status:
                    status = run["status"]
                    yield _sse(
                        "status",
                        {"status": status, "error": run["error"] or "", "final": ended},
                    )
                if ended:
                    out = await run_in_threadpool(data.read_output, run)
                    yield _sse("output", markdown(out) if out is not None else "")
                    yield _sse("end", "")
                    return
                await asyncio.sleep(LOG_TICK)

        stream = follow(int(run_id)) if run_id else table()
        return StreamingResponse(
            stream,
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    # -- actions: the same core as the CLI ----------------------------------------------------

    def _act(fn: Callable[[], object]) -> Response:
        if state.read_only:
            return JSONResponse({"error": "orch web runs --read-only"}, status_code=403)
        try:
            result = fn()
        except OrchError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse({"ok": True, "result": result})

    async def form(request: Request) -> dict[str, str]:
        """The fields of an urlencoded form (what htmx posts; the standard library parses it,
        so no multipart parser is needed); empty for any other body."""
        kind = request.headers.get("content-type", "").split(";")[0].strip()
        if kind != "application/x-www-form-urlencoded":
            return {}
        body = (await request.body()).decode("utf-8", "replace")
        return {k: v[0] for k, v in parse_qs(body, keep_blank_values=True).items()}

    async def do_cancel(request: Request) -> Response:
        name = request.path_params["name"]

        def go() -> object:
            runs = state.orch().cancel([name])
            return [{"name": r["name"], "status": r["status"]} for r in runs]

        return await run_in_threadpool(_act, go)

    async def do_resume(request: Request) -> Response:
        name = request.path_params["name"]
        fields = await form(request)

        def go() -> object:
            run = state.orch().resume(name, fields.get("task", ""))
            return {"name": run["name"], "run_id": run["run_id"], "status": run["status"]}

        return await run_in_threadpool(_act, go)

    async def do_launch(request: Request) -> Response:
        fields = await form(request)

        def go() -> object:
            launch = LaunchRequest(
                name=fields.get("name", "").strip(),
                task=fields.get("task", ""),
                role=fields.get("role") or None,
                backend=fields.get("backend") or None,
                cwd=state.cwd,
            )
            run = state.orch().launch(launch)
            return {"name": run["name"], "run_id": run["run_id"], "status": run["status"]}

        return await run_in_threadpool(_act, go)

    async def do_merge(request: Request) -> Response:
        name = request.path_params["name"]
        fields = await form(request)

        def go() -> object:
            result = state.orch().merge(name, squash=bool(fields.get("squash")))
            return {"name": name, "status": result.summary()}

        return await run_in_threadpool(_act, go)

    async def do_discard(request: Request) -> Response:
        name = request.path_params["name"]
        fields = await form(request)

        def go() -> object:
            run = state.orch().discard(name, force=bool(fields.get("force")))
            return {"name": name, "status": f"removed its worktree and branch {run['branch']}"}

        return await run_in_threadpool(_act, go)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # Warm up before the first request: the store read, liveness, the plugins.
        with contextlib.suppress(Exception):
            await run_in_threadpool(hub.read, True)
            if not read_only:
                await run_in_threadpool(state.choices)
        hub.task = asyncio.create_task(hub.run())
        if on_ready is not None:
            on_ready()
        try:
            yield
        finally:
            hub.task.cancel()

    routes = [
        Route("/", agents),
        Route("/agents/{run_id:int}", agent),
        Route("/cost", cost),
        Route("/events", events),
        Route("/api/cancel/{name}", do_cancel, methods=["POST"]),
        Route("/api/resume/{name}", do_resume, methods=["POST"]),
        Route("/api/launch", do_launch, methods=["POST"]),
        Route("/api/merge/{name}", do_merge, methods=["POST"]),
        Route("/api/discard/{name}", do_discard, methods=["POST"]),
        Mount("/static", app=StaticFiles(directory=str(HERE / "static")), name="static"),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.add_middleware(TokenGate, token=token, cookie=f"orch_web_{port}")
    return app

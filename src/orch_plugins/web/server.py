"""How ``orch web`` serves the dashboard: a socket bound first (so a taken port is a one-line
error and ``--port 0`` can print the port it got), then uvicorn on it."""

from __future__ import annotations

import ipaddress
import os
import secrets
import socket
import sys
import threading
import webbrowser

import uvicorn

from orch_plugins.errors import OrchError
from orch_plugins.web.app import create_app

#: Seconds uvicorn waits for open streams (the tabs' event streams) when stopped.
SHUTDOWN_GRACE = 1


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine only (127.0.0.0/8, ::1, ``localhost``)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (0: a free port); :class:`OrchError` when the
    address cannot be had (in use, not this machine's)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise OrchError(f"cannot resolve --host {host!r}: {exc}") from None
    family, _, _, _, addr = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(addr)
    except OSError as exc:
        sock.close()
        raise OrchError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def serve(
    *,
    host: str = "127.0.0.1",
    port: int = 8765,
    open_browser: bool = False,
    read_only: bool = False,
) -> None:
    """Serve the dashboard until interrupted; its URL (with the token) is printed once it is
    ready to serve."""
    token = secrets.token_urlsafe(24)
    sock = bind(host, port)
    port = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{port}/?token={token}"

    def ready() -> None:
        """The URL once the app has read the store (so the first page is quick)."""
        mode = " (read-only)" if read_only else ""
        print(f"orch web: serving{mode} on {url}", flush=True)
        if not is_loopback(host):
            print(
                f"orch web: warning: listening on {host}, not only this machine; anyone who has "
                "the URL with its token can act on your agents",
                file=sys.stderr,
                flush=True,
            )
        if open_browser:
            threading.Thread(target=webbrowser.open, args=(url,), daemon=True).start()

    app = create_app(token=token, read_only=read_only, cwd=os.getcwd(), port=port, on_ready=ready)
    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=SHUTDOWN_GRACE,
        lifespan="on",
    )
    uvicorn.Server(config).run(sockets=[sock])

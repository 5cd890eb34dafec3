"""``orch web``: the browser dashboard (the optional ``web`` extra, imported only here)."""

from __future__ import annotations

import typer

from orch_plugins.errors import OrchError

app = typer.Typer()


@app.command()
def web(
    port: int = typer.Option(8765, "--port", metavar="PORT", help="TCP port (0: any free one)."),
    host: str = typer.Option(
        "127.0.0.1",
        "--host",
        metavar="HOST",
        help="Address to listen on (default: this machine only).",
    ),
    open_: bool = typer.Option(False, "--open", help="Open the dashboard in a browser."),
    read_only: bool = typer.Option(
        False, "--read-only", help="Show only: no cancel, resume, launch."
    ),
) -> None:
    """Serve a live dashboard of the agents; prints its URL with an access token."""
    import importlib

    from orch_plugins.web import INSTALL_HINT, REQUIRED

    missing = []
    for module, dist in REQUIRED.items():
        try:
            importlib.import_module(module)
        except ImportError:
            missing.append(dist)
    if missing:
        raise OrchError(f"orch web needs {', '.join(missing)}: {INSTALL_HINT}")
    if not 0 <= port <= 65535:
        raise OrchError("--port must be between 0 and 65535")
    from orch_plugins.web.server import serve

    serve(host=host, port=port, open_browser=open_, read_only=read_only)

"""``orch web``: a live dashboard of the agents in a browser (the optional ``web`` extra).

Nothing in the core, the hooks or the supervisor imports this package; the CLI imports it
only inside ``orch web``. :mod:`orch_plugins.web.app` is the ASGI app, :mod:`.data` what it
shows, :mod:`.server` how ``orch web`` serves it.
"""

#: The distributions the extra installs, by the module each provides (``orch web`` names the
#: missing ones).
REQUIRED = {
    "starlette": "starlette",
    "uvicorn": "uvicorn",
    "jinja2": "Jinja2",
    "markdown_it": "markdown-it-py",
}
INSTALL_HINT = "pip install 'orch-plugins[web]'"

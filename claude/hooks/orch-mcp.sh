#!/bin/sh
# The plugin form's MCP server (.claude-plugin/plugin.json "mcpServers"): sh orch-mcp.sh runs
# `orch mcp` over stdio. The interpreter is found as the hook shim finds it: $ORCH_PYTHON, else
# the one in install.py's default virtual environment, else python3 on PATH; the plugin's own
# src/ comes first on the path. It needs the mcp SDK there (install.py installs it); without
# it, `orch mcp` says on stderr what to install and exits 1, and Claude Code shows the server
# as failed.
# An agent launched without orch's tools (ORCH_TOOLS=0, see orch launch --orch-tools) gets no
# server: exiting at once spares it the SDK's import (about 2 CPU-seconds).
[ "${ORCH_TOOLS:-}" = 0 ] && exit 0
case $0 in */*) here=${0%/*} ;; *) here=. ;; esac
py=${ORCH_PYTHON:-}
if [ -z "$py" ]; then
    for candidate in \
        "${XDG_DATA_HOME:-$HOME/.local/share}/orch-plugins/venv/bin/python3" \
        "$HOME/Library/Application Support/orch-plugins/venv/bin/python3"; do
        if [ -x "$candidate" ]; then py=$candidate; break; fi
    done
    [ -n "$py" ] || py=$(command -v python3) || py=
fi
if [ -z "$py" ] || [ ! -x "$py" ]; then
    echo "orch: error: no Python for orch mcp: run install.py, or set ORCH_PYTHON" >&2
    exit 1
fi
if [ -d "$here/../../src/orch_plugins" ]; then
    PYTHONPATH="$here/../../src${PYTHONPATH:+:$PYTHONPATH}"
    export PYTHONPATH
fi
exec "$py" -m orch_plugins.cli mcp

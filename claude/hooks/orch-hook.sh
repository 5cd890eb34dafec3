#!/bin/sh
# Plugin form of the orch-plugins hooks (hooks.json): pick a Python, run orch_hook.py.
# Interpreter: $ORCH_PYTHON, else the one install.py put in its default virtual environment,
# else python3 on PATH. Package: the plugin's own src/ when present (the hooks need only the
# standard library), else that interpreter's site-packages. Never fails the session.
root=${CLAUDE_PLUGIN_ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
py=${ORCH_PYTHON:-}
if [ -z "$py" ]; then
    for candidate in \
        "${XDG_DATA_HOME:-$HOME/.local/share}/orch-plugins/venv/bin/python3" \
        "$HOME/Library/Application Support/orch-plugins/venv/bin/python3"; do
        if [ -x "$candidate" ]; then py=$candidate; break; fi
    done
fi
if [ -z "$py" ]; then py=$(command -v python3) || { cat >/dev/null; exit 0; }; fi
"$py" -I -S "$root/claude/hooks/orch_hook.py" "$1" "$root/src"
exit 0

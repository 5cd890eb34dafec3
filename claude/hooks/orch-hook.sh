#!/bin/sh
# The orch-plugins hook shim: sh orch-hook.sh EVENT [PYTHON [PACKAGE_DIR]]
# An install (settings.json) passes the interpreter and package directory it installed; the
# plugin form (hooks.json) passes neither, and the interpreter is $ORCH_PYTHON, else the one in
# install.py's default virtual environment, else python3 on PATH, with the plugin's own src/.
# It runs orch_hook.py beside this file. When the interpreter or orch_hook.py is gone (an
# uninstalled or purged environment), it reads the event, says nothing and exits 0: a hook must
# never put an error in front of the session. Never fails the session.
case $0 in */*) here=${0%/*} ;; *) here=. ;; esac
py=${2:-${ORCH_PYTHON:-}}
pkg=${3:-}
if [ -z "$py" ]; then
    for candidate in \
        "${XDG_DATA_HOME:-$HOME/.local/share}/orch-plugins/venv/bin/python3" \
        "$HOME/Library/Application Support/orch-plugins/venv/bin/python3"; do
        if [ -x "$candidate" ]; then py=$candidate; break; fi
    done
    [ -n "$py" ] || py=$(command -v python3) || py=
fi
if [ -z "$pkg" ] && [ -d "$here/../../src/orch_plugins" ]; then pkg=$here/../../src; fi
if [ -n "$py" ] && [ -x "$py" ] && [ -f "$here/orch_hook.py" ]; then
    "$py" -I -S "$here/orch_hook.py" "$1" ${pkg:+"$pkg"}
    exit 0
fi
cat >/dev/null 2>&1
exit 0

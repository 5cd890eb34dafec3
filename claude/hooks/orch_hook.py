"""Claude Code hook shim for orch-plugins: find the package, hand the event to it.

Run as ``PYTHON -I -S orch_hook.py EVENT [PACKAGE_PARENT_DIR]``. ``-I -S`` skip the site start-up
(and any slow ``.pth`` file) that a hook would otherwise pay on every event, so the directory
holding ``orch_plugins`` comes as an argument; without it, or when it does not hold the
package, the interpreter's site-packages are tried. Whatever goes wrong, the session must not
notice: failures are logged and the exit status is 0.
"""

import os
import sys


def _fallback_log(message: str) -> None:
    base = os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state")
    path = os.path.join(base, "orch-plugins", "log", "hooks.log")
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(f"orch_hook.py {' '.join(sys.argv[1:2])}: {message}\n")
    except OSError:
        pass


def _main() -> int:
    if len(sys.argv) > 2 and os.path.isdir(os.path.join(sys.argv[2], "orch_plugins")):
        sys.path.append(sys.argv[2])
    else:
        import site

        site.main()
    try:
        from orch_plugins.claude_hooks import main
    except BaseException as exc:
        import contextlib

        with contextlib.suppress(BaseException):
            sys.stdin.buffer.read()
        _fallback_log(f"cannot import orch_plugins.claude_hooks ({exc!r}); sys.path={sys.path}")
        return 0
    return main(sys.argv[1:2])


if __name__ == "__main__":
    sys.exit(_main())

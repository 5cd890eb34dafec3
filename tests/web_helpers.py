"""Helpers of the dashboard tests: ``orch web`` as a real server process, plain HTTP to it."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

URL_RE = re.compile(r"serving(?: \(read-only\))? on (http://\S+)/\?token=(\S+)")


@dataclass
class WebServer:
    base: str
    token: str
    proc: subprocess.Popen[str]

    @property
    def url(self) -> str:
        return f"{self.base}/?token={self.token}"


@contextmanager
def orch_web(*args: str) -> Iterator[WebServer]:
    """``orch web --port 0 ARGS`` in the current environment, until the block ends."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "orch_plugins.cli", "web", "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        m = URL_RE.search(line)
        if not m:
            proc.kill()
            raise AssertionError(f"orch web printed {line!r}; stderr {proc.communicate()[1]!r}")
        yield WebServer(m[1], m[2], proc)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


def http(
    url: str,
    *,
    method: str = "GET",
    headers: dict[str, str] | None = None,
    data: bytes | None = None,
    read: bool = True,
) -> tuple[int, dict[str, str], str]:
    """(status, headers, body) of one request, redirects not followed."""
    opener = urllib.request.build_opener(_NoRedirect)
    req = urllib.request.Request(url, method=method, headers=headers or {}, data=data)
    try:
        with opener.open(req, timeout=10) as resp:
            body = resp.read().decode() if read else ""
            return resp.status, dict(resp.headers), body
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read().decode()

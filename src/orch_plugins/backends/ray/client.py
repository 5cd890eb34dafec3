"""The few calls orch makes to a Ray cluster's job API, over HTTP with the standard library.

The same endpoints Ray's own ``JobSubmissionClient`` uses (``ray/dashboard/modules/job/sdk.py``
and ``dashboard_sdk.py`` in Ray 2.x): ``POST /api/jobs/`` submits, ``GET /api/jobs/`` and
``GET /api/jobs/ID`` read states, ``GET /api/jobs/ID/logs`` the driver's log, ``POST
/api/jobs/ID/stop`` stops; ``GET``/``PUT /api/packages/gcs/NAME`` check and upload a
runtime_env package. Importing ``ray`` for these JSON calls would cost ~1 s per ``orch``
command (measured: ``import ray.dashboard.modules.job.sdk`` 0.97 s here); ``urllib`` costs a
few milliseconds.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from typing import Any

from orch_plugins.errors import OrchError

#: Where a local cluster's dashboard listens (``ray start --head``).
DEFAULT_ADDRESS = "http://127.0.0.1:8265"


class RayUnreachable(OrchError):
    """The cluster's job API did not answer (down, wrong address, network)."""


class RayApiError(OrchError):
    """The job API answered with an error status."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def address_of(config: Mapping[str, Any]) -> str:
    """The job API's base URL: ``[backends.ray] address``, else ``RAY_ADDRESS``, else the
    local default; ``host:port`` gets ``http://``. A ``ray://`` (Ray Client) address is refused:
    the job API is the dashboard's HTTP port (8265 by default)."""
    raw = str(config.get("address") or os.environ.get("RAY_ADDRESS") or DEFAULT_ADDRESS).strip()
    if raw.startswith("ray://") or raw == "auto":
        raise OrchError(
            f"Ray address {raw!r} is not the job API: set [backends.ray] address (or "
            "RAY_ADDRESS) to the dashboard's URL, e.g. http://HEAD:8265"
        )
    if "://" not in raw:
        raw = f"http://{raw}"
    return raw.rstrip("/")


class RayJobs:
    """A client of one cluster's job API. ``headers``: sent with every call (authentication:
    ``[backends.ray] headers``, or ``RAY_AUTH_TOKEN`` as ``Authorization: Bearer``);
    ``timeout``: seconds per call."""

    def __init__(
        self, address: str, headers: Mapping[str, str] | None = None, timeout: float = 10.0
    ) -> None:
        self.address = address
        self.headers = dict(headers or {})
        token = os.environ.get("RAY_AUTH_TOKEN")
        if token and not any(k.lower() == "authorization" for k in self.headers):
            self.headers["Authorization"] = f"Bearer {token}"
        self.timeout = timeout

    def call(
        self,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        content_type: str = "application/json",
        timeout: float | None = None,
    ) -> bytes:
        """One request; the answer's body. :class:`RayApiError` for an error status (``status``
        404 for an unknown job or package), :class:`RayUnreachable` when nothing answered."""
        headers = dict(self.headers)
        if body is not None:
            headers["Content-Type"] = content_type
        req = urllib.request.Request(self.address + path, data=body, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=timeout or self.timeout) as resp:
                return bytes(resp.read())
        except urllib.error.HTTPError as exc:
            text = exc.read().decode("utf-8", "replace").strip()
            line = text.splitlines()[-1] if text else exc.reason
            raise RayApiError(
                f"Ray job API {method} {path}: HTTP {exc.code}: {line}", exc.code
            ) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise RayUnreachable(
                f"cannot reach the Ray job API at {self.address}: {reason}"
            ) from None

    def json(self, method: str, path: str, payload: object = None, **kw: Any) -> Any:
        body = json.dumps(payload).encode() if payload is not None else None
        data = self.call(method, path, body=body, **kw)
        try:
            return json.loads(data) if data else None
        except ValueError:
            raise RayApiError(
                f"Ray job API {method} {path}: not JSON: {data[:200]!r}", 200
            ) from None

    def version(self) -> dict[str, Any]:
        """``{"version", "ray_version", "ray_commit", "session_name"}``."""
        return dict(self.json("GET", "/api/version"))

    def package_exists(self, uri: str) -> bool:
        """Whether the cluster holds runtime_env package ``gcs://NAME`` (asking pins it for a
        while, as Ray's client does, so it is not collected before the job names it)."""
        try:
            self.call("GET", "/api/packages/" + _package_path(uri))
        except RayApiError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def upload(self, uri: str, data: bytes) -> None:
        """Store a package (zip bytes) in the cluster under ``uri``."""
        self.call(
            "PUT",
            "/api/packages/" + _package_path(uri),
            body=data,
            content_type="application/octet-stream",
            timeout=max(self.timeout, 300.0),
        )

    def submit(self, payload: Mapping[str, Any]) -> str:
        """Submit a job (``JobSubmitRequest`` fields); its submission id."""
        answer = self.json("POST", "/api/jobs/", payload)
        return str(answer["submission_id"])

    def job(self, submission_id: str) -> dict[str, Any] | None:
        """A job's details (``status``, ``message``, ``error_type``, ``driver_node_id``, ...);
        None when the cluster does not know it."""
        try:
            return dict(self.json("GET", "/api/jobs/" + urllib.parse.quote(submission_id)))
        except RayApiError as exc:
            if exc.status == 404:
                return None
            raise

    def jobs(self) -> list[dict[str, Any]]:
        """Every job the cluster knows (one call)."""
        return list(self.json("GET", "/api/jobs/") or [])

    def logs(self, submission_id: str) -> str:
        """The job driver's whole log (its entrypoint's stdout and stderr)."""
        answer = self.json("GET", f"/api/jobs/{urllib.parse.quote(submission_id)}/logs")
        return str((answer or {}).get("logs") or "")

    def stop(self, submission_id: str) -> bool:
        """Ask Ray to stop the job (SIGTERM to its process tree, SIGKILL after
        ``RAY_JOB_STOP_WAIT_TIME_S``); False when it had ended already."""
        answer = self.json("POST", f"/api/jobs/{urllib.parse.quote(submission_id)}/stop")
        return bool((answer or {}).get("stopped"))


def _package_path(uri: str) -> str:
    protocol, _, name = uri.partition("://")
    return f"{protocol}/{urllib.parse.quote(name)}"

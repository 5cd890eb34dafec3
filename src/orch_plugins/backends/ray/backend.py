"""The ray backend: each agent is one job on a Ray cluster, placed and queued by Ray.

A launch uploads the project (the job's ``working_dir``) and the run's files (a ``py_modules``
package: spec, prompt, supervisor, the node module) and submits a job whose entrypoint is the
constant ``python3 -S -m orch_ray_node`` and whose ``entrypoint_resources`` are the agent's
(default ``{"claude": 1}``): Ray starts it on a node that has a free slot, or keeps it
``PENDING`` until one frees up. On the node, :mod:`orch_plugins.backends.ray.node` runs orch's
supervisor and sends its events, state, output, the session's transcript and the worktree's
branch home through the job's log, which :meth:`RayBackend.poll` and
:meth:`RayBackend.fetch_files` read over HTTP (:mod:`.client`; no ``import ray``).

See docs/ray.md.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shlex
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, cast

from orch_plugins.backend import (
    Backend,
    BackendContext,
    DoctorCheck,
    Handle,
    LaunchOption,
    LaunchSpec,
    OptionValue,
    RunUpdate,
)
from orch_plugins.backends.ray import node as node_module
from orch_plugins.backends.ray.client import (
    RayApiError,
    RayJobs,
    RayUnreachable,
    address_of,
)
from orch_plugins.backends.ray.package import (
    base_bundle,
    project_files,
    project_package,
    run_package,
)
from orch_plugins.backends.ssh.backend import PROGRESS_FIELDS, STATE_FIELDS
from orch_plugins.backends.ssh.hosts import project_id
from orch_plugins.errors import OrchError
from orch_plugins.model import Run
from orch_plugins.store import BACKEND_QUEUED, FINAL, LOST, atomic_write

log = logging.getLogger(__name__)

#: What to install when Ray is missing (the one line the backend prints).
INSTALL = "pip install 'orch-plugins[ray]'"
#: The ``error`` note of a run whose job waits in Ray's queue: ``orch status`` shows it
#: ``queued`` (see :func:`orch_plugins.store.shown_status`).
QUEUED_NOTE = BACKEND_QUEUED

#: Prefix of the note while the cluster does not answer (cleared when it does).
UNREACHABLE = "status unknown: "
#: Ray's job states that never change again.
TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")
#: Beside a local run directory once everything of an ended run came home.
SYNCED = ".ray-synced"
#: When this process last read each run's log (monotonic), for ``orch wait``/``logs -f``.
_LAST_READ: dict[int, float] = {}


def _job_payload_env(kill_grace: float) -> dict[str, str]:
    # Ray stops a job with SIGTERM to its whole tree and SIGKILL after this many seconds: the
    # supervisor needs its own grace and a moment to record the end, the node module to send it.
    return {"RAY_JOB_STOP_WAIT_TIME_S": str(int(kill_grace) + 20)}


class RayBackend(Backend):
    name = "ray"
    description = "one Ray job per agent on a Ray cluster ([backends.ray] address; Ray queues)"
    place_kind = "node"
    makes_worktrees = True
    options = (
        LaunchOption(
            "resources",
            "Ray resources the agent needs, as JSON (default [backends.ray] resources, "
            'else {"claude": 1}).',
        ),
    )

    def __init__(self, context: BackendContext) -> None:
        super().__init__(context)
        self._client: RayJobs | None = None
        #: Project packages uploaded by this process: {root: uri}.
        self._uploaded: dict[str, str] = {}
        self._lock = threading.Lock()

    # -- configuration ----------------------------------------------------------------------

    @property
    def client(self) -> RayJobs:
        if self._client is None:
            headers = self.config.get("headers") or {}
            if not isinstance(headers, Mapping):
                raise OrchError("[backends.ray] headers must be a table of HTTP headers")
            self._client = RayJobs(
                address_of(self.config),
                {str(k): str(v) for k, v in headers.items()},
                float(self.config.get("timeout", 10.0)),
            )
        return self._client

    def client_for(self, handle: Handle) -> RayJobs:
        """The client of the cluster a run was submitted to (the address may change since)."""
        address = handle.get("address")
        if isinstance(address, str) and address != self.client.address:
            return RayJobs(address, self.client.headers, self.client.timeout)
        return self.client

    @property
    def poll_interval(self) -> float:
        """Within one process, read a running job's log at most this often (seconds)."""
        return float(self.config.get("poll_interval", 1.0))

    @classmethod
    def check_options(cls, options: Mapping[str, object]) -> dict[str, OptionValue]:
        """Also where a launch without Ray stops, before anything is recorded."""
        require_ray()
        out = super().check_options(options)
        if "resources" in out:
            _resources(out["resources"], "-o resources")
        return out

    def resources(self, spec: LaunchSpec) -> dict[str, float]:
        """The agent's Ray resources: ``-o resources``, else its role's in
        ``[backends.ray.role_resources]``, else ``[backends.ray] resources``, else
        ``{"claude": 1}``."""
        if "resources" in spec.options:
            return _resources(spec.options["resources"], "-o resources")
        role = _role_name(spec)
        per_role = self.config.get("role_resources") or {}
        if role and isinstance(per_role, Mapping) and role in per_role:
            return _resources(per_role[role], f"[backends.ray.role_resources] {role}")
        if "resources" in self.config:
            return _resources(self.config["resources"], "[backends.ray] resources")
        return {"claude": 1.0}

    # -- launching --------------------------------------------------------------------------

    def launch(self, spec: LaunchSpec) -> Handle:
        return self._submit(spec, None)

    def resume(self, spec: LaunchSpec, source: Handle) -> Handle:
        """Any node may take a resumed session: the transcript copy the source run kept
        (``spec.resume_transcript``) and a worktree's branch travel with the job."""
        return self._submit(spec, source)

    def _submit(self, spec: LaunchSpec, source: Handle | None) -> Handle:
        import secrets

        resources = self.resources(spec)
        project = project_id(spec.state_dir)
        token = secrets.token_hex(3)
        run_name = f"{spec.run_id}-{spec.name}-{token}"
        job: dict[str, Any] = {
            "project": project,
            "run_name": run_name,
            "base_dir": str(self.config.get("base_dir") or "~/.orch-ray"),
            "claude": str(self.config.get("claude") or "claude"),
        }
        files: dict[str, bytes] = {}
        # The agent's directory goes as the job's working_dir (a worktree is made on the node
        # from the repository's bundle instead, and the agent works there).
        root = Path(spec.cwd)
        data = spec.to_json()
        env = {k: v for k, v in spec.env.items() if k != "ORCH_STATE_DIR"}  # a local path
        table_env = self.config.get("env") or {}
        if isinstance(table_env, Mapping):
            env.update({str(k): str(v) for k, v in table_env.items()})
        forward = self.config.get("forward_env") or []
        env.update({k: os.environ[k] for k in forward if k in os.environ})
        data["env"] = env
        data["options"] = {**spec.options, "report": "file"}
        if spec.worktree:
            self._ship_worktree(spec, source, data, job, files)
        if spec.resume_transcript:
            # The session's transcript copy travels with the job; the supervisor on the node
            # puts it where Claude Code looks (node.py rewrites the field to its copy).
            try:
                path = Path(spec.resume_transcript)
                if not path.is_absolute():
                    path = Path(spec.run_dir, path)
                files[node_module.RESUME_TRANSCRIPT] = path.read_bytes()
            except OSError as exc:
                log.warning("%s: cannot ship the transcript copy: %s", spec.name, exc)
        files["job.json"] = json.dumps(job).encode()
        files["spec.json"] = json.dumps(data).encode()
        files["prompt.txt"] = Path(spec.prompt_path).read_bytes()
        from orch_plugins import procs, supervisor

        files["supervisor.py"] = Path(supervisor.__file__).read_bytes()
        files["procs.py"] = Path(procs.__file__).read_bytes()
        client = self.client
        working_dir = self._upload_project(client, root, Path(spec.state_dir))
        pkg, run_uri = run_package(Path(node_module.__file__).read_bytes(), files)
        client.upload(run_uri, pkg)
        python = str(self.config.get("python") or "python3")
        submission_id = f"orch-{project}-{run_name}"[:120]
        payload = {
            "entrypoint": f"{shlex.quote(python)} -S -m orch_ray_node",
            "submission_id": "".join(c if c.isalnum() or c in "-_" else "_" for c in submission_id),
            "runtime_env": {
                "working_dir": working_dir,
                "py_modules": [run_uri],
                "env_vars": _job_payload_env(spec.kill_grace),
            },
            "entrypoint_resources": resources,
            "metadata": {
                "orch_agent": spec.name,
                "orch_run": str(spec.run_id),
                "orch_project": project,
            },
        }
        sid = client.submit(payload)
        handle: Handle = {
            "submission_id": sid,
            "address": client.address,
            "run_id": spec.run_id,
            "run_dir": spec.run_dir,
            "resources": cast(Any, resources),
        }
        if spec.keep_children:
            handle["keep_children"] = True
        return handle

    def _upload_project(self, client: RayJobs, root: Path, state_dir: Path) -> str:
        key = f"{client.address} {root.resolve()}"
        with self._lock:
            if key in self._uploaded:
                return self._uploaded[key]
            excludes = [str(p) for p in (self.config.get("excludes") or [])]
            files = project_files(root, state_dir, excludes)
            data, uri = project_package(root, files)
            if not client.package_exists(uri):
                client.upload(uri, data)
            self._uploaded[key] = uri
            return uri

    def _ship_worktree(
        self,
        spec: LaunchSpec,
        source: Handle | None,
        data: dict[str, Any],
        job: dict[str, Any],
        files: dict[str, bytes],
    ) -> None:
        """A new worktree: the base commit as a bundle (the node makes the worktree from it).
        A resumed one: also the branch as it came home from the source run."""
        from orch_plugins.worktrees import repo_top

        wt = dict(spec.worktree or {})
        repo = repo_top(spec.cwd) if os.path.isdir(spec.cwd) else repo_top(os.getcwd())
        base = str(wt.get("base") or "HEAD")
        bundle, sha, ref = base_bundle(repo, base)
        files["base.bundle"] = bundle
        job["base_ref"] = ref
        if wt.get("create"):
            wt["base"] = sha
            wt["repo"] = "(made on the node)"
            wt["path"] = "(made on the node)"
        else:
            origin = source or spec.resume_from or {}
            src_dir = origin.get("run_dir")
            branch = Path(str(src_dir), "branch.bundle") if src_dir else None
            if branch is None or not branch.exists():
                raise OrchError(
                    f"the branch {wt.get('branch')} of the run this resumes did not come home "
                    "from its Ray node, so it cannot continue elsewhere"
                )
            files["branch.bundle"] = branch.read_bytes()
        data["worktree"] = wt

    # -- status -----------------------------------------------------------------------------

    def is_alive(self, handle: Handle) -> bool:
        try:
            job = self.client_for(handle).job(str(handle["submission_id"]))
        except RayUnreachable:
            return True
        return job is not None and job.get("status") in ("PENDING", "RUNNING")

    def poll(self, runs: Sequence[Run]) -> dict[int, RunUpdate]:
        """Job states in one call per cluster; the log of each running job (at most every
        ``poll_interval`` within one process) and of each ended one, read in parallel."""
        updates: dict[int, RunUpdate] = {}
        by_address: dict[str, list[Run]] = {}
        for run in runs:
            handle = run["handle"] or {}
            if not handle.get("submission_id"):
                updates[run["run_id"]] = RunUpdate(alive=False)
                continue
            by_address.setdefault(str(handle.get("address")), []).append(run)
        work: list[tuple[Run, dict[str, Any]]] = []
        for group in by_address.values():
            client = self.client_for(group[0]["handle"] or {})
            try:
                if len(group) == 1:
                    sid = str((group[0]["handle"] or {})["submission_id"])
                    found = client.job(sid)
                    jobs = {sid: found} if found else {}
                else:
                    jobs = {str(j.get("submission_id")): j for j in client.jobs()}
            except (RayUnreachable, RayApiError) as exc:
                for run in group:
                    note = f"{UNREACHABLE}{exc}"
                    fields = {"error": note} if run.get("error") != note else {}
                    updates[run["run_id"]] = RunUpdate(alive=True, fields=fields)
                continue
            for run in group:
                job = jobs.get(str((run["handle"] or {})["submission_id"]))
                if job is None:
                    updates[run["run_id"]] = RunUpdate(
                        alive=False,
                        fields={
                            "status": LOST,
                            "error": "the Ray cluster no longer knows the agent's job "
                            "(the cluster restarted?)",
                        },
                    )
                    continue
                work.append((run, job))
        now = time.monotonic()
        reads = []
        for run, job in work:
            state = job.get("status")
            if state == "PENDING":
                updates[run["run_id"]] = RunUpdate(alive=True, fields=self._pending(run, job))
                continue
            if (
                state == "RUNNING"
                and now - _LAST_READ.get(run["run_id"], -1e9) < self.poll_interval
            ):
                continue
            _LAST_READ[run["run_id"]] = now
            reads.append((run, job))
        results = _in_parallel(reads, self._read)
        for (run, _job), result in zip(reads, results):
            updates[run["run_id"]] = result
        return updates

    def _pending(self, run: Run, job: Mapping[str, Any]) -> dict[str, Any]:
        handle = run["handle"] or {}
        wants = json.dumps(handle.get("resources") or {"claude": 1}, sort_keys=True)
        note = f"{QUEUED_NOTE}waiting in the Ray cluster for a node with {wants} free"
        return {"error": note} if run.get("error") != note else {}

    def _read(self, run: Run, job: Mapping[str, Any]) -> RunUpdate:
        """Read a started job's log: store what came home, say what the run's state is."""
        handle = run["handle"] or {}
        client = self.client_for(handle)
        try:
            text = client.logs(str(handle["submission_id"]))
        except (RayUnreachable, RayApiError) as exc:
            if job.get("status") in ("PENDING", "RUNNING"):
                return RunUpdate(alive=True)
            text = ""
            log.warning("cannot read the log of %s: %s", run["name"], exc)
        records = node_module.parse(text)
        self._store(run, records)
        return RunUpdate(alive=True, fields=self._news(run, job, records))

    def _store(self, run: Run, records: node_module.Records) -> None:
        """Write what came home into the local run directory: events (append-only: only what
        the local copy lacks), output, transcript, branch bundle, the node's state."""
        run_dir = Path(run["run_dir"])
        if records.events:
            data = "".join(line + "\n" for line in records.events).encode(
                "utf-8", "surrogateescape"
            )
            log_path = Path(run["log_path"])
            try:
                have = log_path.stat().st_size
            except OSError:
                have = 0
            if len(data) > have:
                fd = os.open(log_path, os.O_WRONLY | os.O_CREAT, 0o644)
                try:
                    os.pwrite(fd, data[have:], have)
                finally:
                    os.close(fd)
        for name, blob in records.files.items():
            target = Path(run["output_path"]) if name == "output.md" else run_dir / name
            with contextlib.suppress(OSError):
                if target.exists() and target.read_bytes() == blob:
                    continue
            atomic_write(target, blob)
        live = run_dir / "live.txt"
        with contextlib.suppress(OSError):
            if records.live is None or records.done:
                live.unlink(missing_ok=True)
            else:
                text = records.live.encode("utf-8", "surrogateescape")
                if not live.exists() or live.read_bytes() != text:
                    atomic_write(live, text)
        if records.node:
            with contextlib.suppress(OSError):
                atomic_write(run_dir / "ray-node.json", json.dumps(records.node).encode())
        if records.done:
            (run_dir / SYNCED).touch()

    def _news(
        self, run: Run, job: Mapping[str, Any], records: node_module.Records
    ) -> dict[str, Any]:
        state: dict[str, Any] = records.state or {}
        status = job.get("status")
        if state.get("status") in FINAL and (records.done or status in TERMINAL):
            fields = {k: state[k] for k in STATE_FIELDS if k in state}
            fields["status"] = state["status"]
            return fields
        if status in TERMINAL:
            return self._ended_without_records(run, job, state)
        fields = {k: state[k] for k in PROGRESS_FIELDS if k in state and state[k] != run.get(k)}
        if run.get("error") and str(run["error"]).startswith((QUEUED_NOTE, UNREACHABLE)):
            fields["error"] = None
        return fields

    @staticmethod
    def _ended_without_records(
        run: Run, job: Mapping[str, Any], state: Mapping[str, Any]
    ) -> dict[str, Any]:
        """A job that ended before the node module sent the run's end: its node died (``lost``),
        it was stopped (``cancelled``), or it never got going (``failed``, with Ray's message)."""
        keep = {k: state[k] for k in STATE_FIELDS if k in state and k not in ("error", "status")}
        message = " ".join(str(job.get("message") or "").split())
        kind = str(job.get("error_type") or "")
        if job.get("status") == "STOPPED":
            return {**keep, "status": "cancelled", "error": "cancelled (the Ray job was stopped)"}
        if (
            kind == "JOB_SUPERVISOR_ACTOR_DIED"
            or "node has died" in message
            or "node" in kind.lower()
        ):
            node = _node_death(message)
            return {**keep, "status": LOST, "error": f"lost: the agent's Ray node died ({node})"}
        if not state:
            why = "its log, which holds orch's records, could not be read (node removed?)"
            if job.get("status") == "FAILED" and message:
                why = message[:400]
            return {**keep, "status": "failed", "error": f"Ray job {job.get('status')}: {why}"}
        why = message[:400] or "it ended without orch's records"
        return {**keep, "status": "failed", "error": f"Ray job {job.get('status')}: {why}"}

    # -- files ------------------------------------------------------------------------------

    def fetch_files(self, run: Run) -> None:
        """Bring the run's log, output, transcript and branch home (once for an ended run)."""
        handle = run["handle"] or {}
        if not handle.get("submission_id"):
            return
        run_dir = Path(run["run_dir"])
        if run["status"] in FINAL and (run_dir / SYNCED).exists():
            return
        now = time.monotonic()
        if run["status"] not in FINAL:
            if now - _LAST_READ.get(run["run_id"], -1e9) < self.poll_interval:
                return
            _LAST_READ[run["run_id"]] = now
        try:
            text = self.client_for(handle).logs(str(handle["submission_id"]))
        except (RayUnreachable, RayApiError) as exc:
            log.warning("cannot fetch %s's files: %s", run["name"], exc)
            return
        self._store(run, node_module.parse(text))

    def fetch_branch(self, run: Run, repo: str) -> None:
        """The agent's branch from the bundle its node sent home, into ``repo`` as
        ``refs/heads/BRANCH``."""
        from orch_plugins.supervisor import GitError, git

        self.fetch_files(run)
        branch = str(run["branch"])
        bundle = Path(run["run_dir"], "branch.bundle")
        if not bundle.exists():
            raise OrchError(f"the branch {branch} of agent {run['name']!r} has not come home yet")
        refspec = f"+refs/heads/{branch}:refs/heads/{branch}"
        try:
            git(repo, "fetch", "--quiet", "--no-tags", "--", str(bundle), refspec, timeout=600)
        except GitError as exc:
            raise OrchError(f"cannot fetch {branch} from its bundle: {exc}") from None

    def remove_worktree(self, run: Run, *, force: bool) -> None:
        """The worktree was on a Ray node and went with its job's directory there; what orch
        keeps is the branch bundle, removed here (the local branch is the core's)."""
        with contextlib.suppress(OSError):
            Path(run["run_dir"], "branch.bundle").unlink()

    def send(self, run: Run, text: str, event: Mapping[str, object]) -> None:
        raise OrchError(
            f"agent {run['name']!r} runs on a Ray node: orch send does not reach it (cancel "
            "and resume it with the new instructions instead)"
        )

    def cancel(self, handle: Handle, grace: float) -> None:
        """Stop the job (Ray signals its whole process tree; the supervisor stops its agent and
        records ``cancelled``), then wait for it to end, so that the poll the core makes next
        reads the run's end (session id, cost, transcript) from its log."""
        sid = handle.get("submission_id")
        if not sid:
            return
        client = self.client_for(handle)
        try:
            client.stop(str(sid))
        except (RayUnreachable, RayApiError) as exc:
            log.warning("could not stop Ray job %s: %s (it may still run)", sid, exc)
            return
        deadline = time.monotonic() + grace + 30
        while time.monotonic() < deadline:
            try:
                job = client.job(str(sid))
            except (RayUnreachable, RayApiError):
                return
            if job is None or job.get("status") in TERMINAL:
                return
            time.sleep(0.2)

    def doctor(self, hosts: Sequence[str]) -> list[DoctorCheck]:
        """When a cluster is configured (a ``[backends.ray]`` table or ``RAY_ADDRESS``): the
        ray extra here, the job API answering, the cluster's Ray version. Else nothing."""
        import importlib.util

        if not self.config and not os.environ.get("RAY_ADDRESS"):
            return []
        checks = [
            DoctorCheck(
                "local",
                "ray extra",
                importlib.util.find_spec("ray") is not None,
                "ray is installed" if importlib.util.find_spec("ray") else INSTALL,
            )
        ]
        try:
            version = self.client.version()
            checks.append(
                DoctorCheck(
                    "ray",
                    "job API",
                    True,
                    f"Ray {version.get('ray_version')} at {self.client.address}",
                )
            )
        except OrchError as exc:
            checks.append(DoctorCheck("ray", "job API", False, str(exc)))
        return checks


def require_ray() -> None:
    """``OrchError`` naming the pip line when Ray is not installed here. The ``ray`` extra is
    how a user gets a Ray matching the cluster for ``ray start``/``ray status``/``ray job``
    beside orch; orch's own calls go over HTTP and import nothing from it."""
    import importlib.util

    if importlib.util.find_spec("ray") is None:
        raise OrchError(f"the ray backend needs Ray on this machine: {INSTALL}")


def _resources(value: object, where: str) -> dict[str, float]:
    """A resources mapping from config (a table) or ``-o`` (JSON text), checked."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise OrchError(f'{where} must be JSON like {{"claude": 1}}, not {value!r}') from None
    if not isinstance(value, Mapping) or not value:
        raise OrchError(f"{where} must be a non-empty table of resource amounts")
    out = {}
    for key, amount in value.items():
        if isinstance(amount, bool) or not isinstance(amount, (int, float)) or amount <= 0:
            raise OrchError(f"{where}: {key!r} needs a positive number, not {amount!r}")
        out[str(key)] = float(amount)
    return out


def _role_name(spec: LaunchSpec) -> str | None:
    try:
        data = json.loads(Path(spec.run_dir, "role.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    name = data.get("name") if isinstance(data, dict) else None
    return name if isinstance(name, str) else None


def _node_death(message: str) -> str:
    for part in message.split("\t"):
        if "node" in part.lower() and ("died" in part or "terminated" in part):
            return part.strip()[:300]
    return message[:300] or "no reason given"


def _in_parallel(items: list[tuple[Run, dict[str, Any]]], fn: Any) -> list[RunUpdate]:
    if len(items) <= 1:
        return [fn(*item) for item in items]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=min(8, len(items))) as pool:
        return list(pool.map(lambda item: fn(*item), items))

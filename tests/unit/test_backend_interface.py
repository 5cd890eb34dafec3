"""The Backend interface the core drives: a context handed in (its config table, the state
directory, the hosts), one ``poll(runs)`` per status read whose ``RunUpdate``s the core records,
and ``fetch_files`` before a run's files are read."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from orch_plugins import hookimpl
from orch_plugins.backend import Backend, BackendContext, Handle, LaunchSpec, RunUpdate
from orch_plugins.config import load_config
from orch_plugins.core import Orchestrator
from orch_plugins.model import LaunchRequest
from orch_plugins.plugins import Plugins
from orch_plugins.store import Store


class Scripted(Backend):
    """Starts nothing; answers ``poll`` from :attr:`script` and notes what it was given."""

    name = "scripted"
    contexts: ClassVar[list[BackendContext]] = []
    polls: ClassVar[list[list[int]]] = []
    fetched: ClassVar[list[int]] = []
    script: ClassVar[dict[str, RunUpdate]] = {}

    def __init__(self, context: BackendContext) -> None:
        super().__init__(context)
        self.contexts.append(context)

    def launch(self, spec: LaunchSpec) -> Handle:
        return {"name": spec.name}

    def is_alive(self, handle: Handle) -> bool:
        raise AssertionError("poll answers for all; is_alive is never asked")

    def cancel(self, handle: Handle, grace: float) -> None:
        pass

    def poll(self, runs: Sequence[Mapping[str, Any]]) -> dict[int, RunUpdate]:
        self.polls.append([r["run_id"] for r in runs])
        return {r["run_id"]: self.script[r["name"]] for r in runs if r["name"] in self.script}

    def fetch_files(self, run: Mapping[str, Any]) -> None:
        self.fetched.append(run["run_id"])
        Path(run["output_path"]).write_text(f"fetched for {run['name']}\n")


class Plugin:
    @hookimpl
    def orch_register_backends(self, registry: Any) -> None:
        registry.add(Scripted)


def test_poll_updates_are_recorded_and_the_context_is_handed_in(
    project: Path, tmp_path: Path
) -> None:
    (tmp_path / "config.toml").write_text(
        '[backends.scripted]\nknob = 7\n\n[hosts.h9]\nssh = "box9"\nmax_parallel = 3\n'
    )
    plugins = Plugins(entry_points=list)
    plugins.register(Plugin(), "scripted", "test")
    store = Store.open()
    orch = Orchestrator(store=store, config=load_config(), plugins=plugins)
    names = ("busy", "gone", "done")
    runs = [orch.launch(LaunchRequest(n, "task", backend="scripted")) for n in names]
    assert [r["status"] for r in runs] == ["running"] * 3

    context = Scripted.contexts[-1]
    assert context.config == {"knob": 7}
    assert context.hosts == {"h9": {"ssh": "box9", "max_parallel": 3}}
    assert context.state_dir == store.state_dir

    Scripted.script = {
        "busy": RunUpdate(fields={"num_turns": 3, "tool_calls": 2}),
        "gone": RunUpdate(alive=False),
        "done": RunUpdate(alive=False, fields={"status": "completed", "exit_code": 0}),
    }
    Scripted.polls.clear()
    by_name = {r["name"]: r for r in orch.status()}
    assert Scripted.polls == [[r["run_id"] for r in runs]]  # one call for all three
    assert by_name["busy"]["status"] == "running" and by_name["busy"]["num_turns"] == 3
    assert by_name["gone"]["status"] == "lost"
    assert by_name["done"]["status"] == "completed" and by_name["done"]["exit_code"] == 0

    Scripted.script = {}  # nothing new: a run left out of the answer keeps running
    assert orch.status(["busy"])[0]["status"] == "running"

    done = store.require("done")
    orch.fetch_files(done)
    assert Scripted.fetched == [done["run_id"]]
    assert Path(done["output_path"]).read_text() == "fetched for done\n"
    orch.cancel(all_=True)

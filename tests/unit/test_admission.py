"""Admission is the one scheduler: a backend declares places and their room, admission decides
where each run goes, defers the ones with no room (they keep their global slot) and places
them when room frees, also when several processes launch at once."""

from __future__ import annotations

import json
from pathlib import Path

from tests.helpers import orch, orch_at_once, status_json, wait_for, write_dist

SLOTS = """
from orch_plugins import hookimpl
from orch_plugins.backends.subprocess import SubprocessBackend, spawn_supervisor


class SlotsBackend(SubprocessBackend):
    name = "slots"
    description = "test: local agents in named slots of limited room"
    place_kind = "slot"

    def places(self, spec):
        return dict(self.config["places"])

    def place_of(self, handle):
        return handle.get("slot")

    def launch(self, spec):
        assert spec.place in self.config["places"], spec.place  # admission chose
        return {**spawn_supervisor(spec), "slot": spec.place}


@hookimpl
def orch_register_backends(registry):
    registry.add(SlotsBackend)
"""


def _handles() -> dict[str, dict]:
    import sqlite3

    con = sqlite3.connect(Path(".orchestrate") / "state.db")
    try:
        rows = con.execute("SELECT name, handle FROM runs ORDER BY run_id").fetchall()
    finally:
        con.close()
    return {name: json.loads(h) if h else {} for name, h in rows}


def test_admission_places_defers_and_places_later(
    project: Path, site: Path, tmp_path: Path
) -> None:
    write_dist(site, "orch-slots", {"slots": "orch_slots"}, {"orch_slots": SLOTS})
    (tmp_path / "config.toml").write_text(
        "max_parallel = 8\n[backends.slots]\nplaces = { a = 2, b = 1 }\n"
    )
    runs = json.loads(
        orch("parallel", *["SLEEP=2 x"] * 5, "-b", "slots", "--json", check=True).stdout
    )
    assert [r["status"] for r in runs] == ["running"] * 5  # each holds its global slot
    handles = _handles()
    # Least loaded first, then the most room left, then the backend's order.
    assert [handles[f"agent{i}"].get("slot") for i in (1, 2, 3)] == ["a", "b", "a"]
    assert handles["agent4"] == handles["agent5"] == {"deferred": True}
    waiting = status_json("agent4")[0]["error"]
    assert waiting == "waiting: every slot is busy (a 2/2, b 1/1)"
    spec = json.loads(Path(runs[0]["output_path"]).with_name("spec.json").read_text())
    assert "place" not in spec  # the supervisor's spec format is unchanged

    assert "agent5: cancelled" in orch("cancel", "agent5", check=True).stdout
    done = orch("wait", "agent1", "agent2", "agent3", "agent4", timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    handles = _handles()
    assert handles["agent4"].get("slot") in ("a", "b")
    assert status_json("agent4")[0]["error"] is None  # the note went when it was placed
    assert handles["agent5"] == {"deferred": True}  # never started anywhere


def test_concurrent_launches_never_overfill_a_place(
    project: Path, site: Path, tmp_path: Path
) -> None:
    write_dist(site, "orch-slots", {"slots": "orch_slots"}, {"orch_slots": SLOTS})
    (tmp_path / "config.toml").write_text(
        "max_parallel = 8\n[backends.slots]\nplaces = { a = 2, b = 1 }\n"
    )
    gate = tmp_path / "go"  # no agent ends before the counts below are read
    orch_at_once(
        *(
            ["parallel", *[f"GATE={gate} y"] * 4, "-b", "slots", "--prefix", f"p{i}-"]
            for i in range(3)
        )
    )
    handles = _handles()
    slots = [h.get("slot") for h in handles.values()]
    assert len(handles) == 12
    assert slots.count("a") == 2 and slots.count("b") == 1, handles
    # The global pool too: max_parallel 8 holds 3 placed and 5 deferred; 4 stay queued.
    assert sum(h == {"deferred": True} for h in handles.values()) == 5
    assert sorted(r["status"] for r in status_json()) == ["queued"] * 4 + ["running"] * 8
    gate.touch()
    runs = wait_for(
        lambda: (rs := status_json()) and all(r["status"] == "completed" for r in rs) and rs,
        timeout=120,
        interval=0.5,
    )
    assert len(runs) == 12

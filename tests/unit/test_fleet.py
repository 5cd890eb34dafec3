"""The store's side of issue 13: the cost ledger, the shared rate-limit pause and effective
limit, the budget check, and the waiting mark (fast: no claude)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from orch_plugins import costs
from orch_plugins.admission import over_budget
from orch_plugins.config import Config, load_config
from orch_plugins.errors import OrchError
from orch_plugins.store import COMPLETED, FAILED, RUNNING, STALLED, Store
from orch_plugins.supervisor import result_tokens

RESULT = {
    "total_cost_usd": 0.3,
    "usage": {"input_tokens": 5, "output_tokens": 1},
    "modelUsage": {
        "opus": {
            "inputTokens": 100,
            "outputTokens": 10,
            "cacheReadInputTokens": 7,
            "cacheCreationInputTokens": 3,
            "costUSD": 0.25,
        },
        "haiku": {"inputTokens": 20, "outputTokens": 2, "costUSD": 0.05},
    },
}


def _store(tmp_path: Path) -> Store:
    return Store(tmp_path / "state")


def _run(store: Store, name: str, *, role: str | None = None, max_parallel: int = 4) -> int:
    with store.transaction():
        run = store.insert_run(
            name=name,
            task="t",
            backend="subprocess",
            cwd="/",
            role=role,
            max_parallel=max_parallel,
        )
    store.update(run["run_id"], status=RUNNING, started_at=time.time())
    return run["run_id"]


def test_result_tokens_sums_every_model_and_keeps_each() -> None:
    fields = result_tokens(RESULT)
    assert (fields["input_tokens"], fields["output_tokens"]) == (120, 12)
    assert (fields["cache_read_tokens"], fields["cache_creation_tokens"]) == (7, 3)
    models = json.loads(fields["models"])
    assert models["haiku"] == {
        "cost_usd": 0.05,
        "input_tokens": 20,
        "output_tokens": 2,
        "cache_read_tokens": 0,
        "cache_creation_tokens": 0,
    }
    # Without modelUsage, the usage totals.
    assert result_tokens({"usage": {"input_tokens": 5, "output_tokens": 1}}) == {
        "input_tokens": 5,
        "output_tokens": 1,
    }
    assert result_tokens({}) == {}


def test_the_ledger_groups_and_survives_clearing(tmp_path: Path) -> None:
    store = _store(tmp_path)
    a = _run(store, "a", role="r")
    b = _run(store, "b")
    store.finish(a, COMPLETED, cost_usd=0.3, **result_tokens(RESULT))
    store.finish(b, FAILED, cost_usd=0.1, input_tokens=10, output_tokens=1)
    rows = store.costs()
    assert costs.total(rows)["cost_usd"] == pytest.approx(0.4)
    by_model = {g["key"]: g["cost_usd"] for g in costs.group(rows, "model")}
    assert by_model == pytest.approx({"opus": 0.25, "haiku": 0.05, "-": 0.1})
    assert {g["key"]: g["runs"] for g in costs.group(rows, "role")} == {"r": 1, "-": 1}
    with pytest.raises(OrchError, match="--by 'colour'"):
        costs.group(rows, "colour")
    store.delete([a, b])
    assert store.costs() == [] and store.spent() == pytest.approx(0.4)
    assert len(store.costs(include_gone=True)) == 2


def test_budget_refuses_once_spent(tmp_path: Path) -> None:
    store = _store(tmp_path)
    config = Config(budget={"total_usd": 0.5, "daily_usd": 10.0})
    assert over_budget(store, config) is None
    store.finish(_run(store, "a"), COMPLETED, cost_usd=0.6)
    assert over_budget(store, config) == "project budget spent: $0.60 of total_usd $0.50"
    report = costs.budget(store, config)
    assert report["daily_usd"] == {"limit": 10.0, "spent": pytest.approx(0.6)}


def test_budget_config_is_checked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "config.toml"
    monkeypatch.setenv("ORCH_CONFIG", str(path))
    path.write_text("[budget]\ndaily_usd = 5\n")
    assert load_config().budget == {"daily_usd": 5.0}
    for bad in ("[budget]\ndaily_usd = -1\n", "[budget]\nweekly_usd = 1\n", "budget = 3\n"):
        path.write_text(bad)
        with pytest.raises(OrchError, match="budget"):
            load_config()


def test_rate_limits_pause_halve_hold_and_recover(tmp_path: Path) -> None:
    store = _store(tmp_path)
    ids = [_run(store, f"a{i}") for i in range(4)]
    until = store.rate_limited(ids[0], 0.3, 429)
    state = store.admission_state()
    assert state["effective_limit"] == 2 and state["pause_by"] == "a0"
    assert until > time.time() and store.pause_left() > 0
    # More reports of the same episode do not halve again.
    for run_id in ids[1:]:
        store.rate_limited(run_id, 0.1, 429)
    assert store.admission_state()["effective_limit"] == 2
    assert not store.may_go_on(ids[0])  # paused
    time.sleep(0.35)
    assert store.may_go_on(ids[0]) and store.may_go_on(ids[1])
    assert not store.may_go_on(ids[2])  # two are going on: the limit
    # A new episode after the pause halves again, never below 1.
    store.rate_limited(ids[0], 0.0, 529)
    store.rate_limited(ids[1], 0.0, 529)
    assert store.admission_state()["effective_limit"] == 1
    # A run that completes without a rate-limit retry since the lowering raises it by one,
    # up to its max_parallel (then the limit is lifted); a rate-limited one does not.
    store.finish(ids[1], COMPLETED)
    assert store.admission_state()["effective_limit"] == 1
    fresh = [_run(store, f"f{i}") for i in range(3)]
    store.finish(fresh[0], COMPLETED)
    assert store.admission_state()["effective_limit"] == 2
    store.finish(fresh[1], STALLED)  # only a completed run counts
    assert store.admission_state()["effective_limit"] == 2
    store.finish(fresh[2], COMPLETED)
    store.finish(_run(store, "g"), COMPLETED)
    assert store.admission_state()["effective_limit"] is None


def test_waiting_is_marked_and_cleared(tmp_path: Path) -> None:
    store = _store(tmp_path)
    run_id = _run(store, "ia")
    assert store.set_waiting(run_id, "Claude needs your permission to use Bash")
    assert not store.set_waiting(run_id, "Claude needs your permission to use Bash")
    [run] = store.waiting_runs()
    assert run["waiting_for"] == "Claude needs your permission to use Bash"
    assert store.set_waiting(run_id, None) and store.waiting_runs() == []


def _status(project: Path, name: str) -> str:
    """A run's status read straight from the store (no orch command: nothing pumps)."""
    import sqlite3

    con = sqlite3.connect(project / ".orchestrate" / "state.db")
    try:
        row = con.execute(
            "SELECT status FROM runs WHERE name=? ORDER BY run_id DESC LIMIT 1", (name,)
        ).fetchone()
    finally:
        con.close()
    return str(row[0])


def test_the_shared_pause_holds_launches_and_whole_run_retries(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.helpers import orch, status_json, wait_for

    monkeypatch.setenv("FAKE_API_FAIL_FILE", str(tmp_path / "fails"))
    store = Store(project / ".orchestrate")
    other = _run(store, "other")
    # Another agent met a rate limit: a launch now stays queued, and the waker process
    # starts it when the pause is over (nobody else calls orch meanwhile).
    store.rate_limited(other, 600.0, 429)
    orch("launch", "q", "quick", check=True)
    assert status_json("q")[0]["status"] == "queued"
    assert "admission: paused" in orch("status", check=True).stdout
    store.finish(other, COMPLETED)  # its slot is free (no pump: only the waker is left)
    with store.transaction():  # the pause ends in a second
        store.conn.execute("UPDATE admission SET paused_until=?", (time.time() + 1,))
    wait_for(lambda: _status(project, "q") == "completed", timeout=60)
    other = _run(store, "other")
    # A whole-run retry waits out a pause that began while its attempt ran.
    gate = tmp_path / "attempt-1-may-fail"  # its attempt fails only once the pause is set
    orch("launch", "r", f"GATE={gate} API=529 API_FAILS=1", "--retries", "2", check=True)
    assert status_json("r")[0]["status"] == "running"
    store.rate_limited(other, 6.0, 429)
    store.finish(other, COMPLETED)
    gate.touch()
    wait_for(lambda: status_json("r")[0]["status"] == "completed", timeout=60)
    run = status_json("r")[0]
    events = [json.loads(x) for x in Path(run["log_path"]).read_text().splitlines()]
    [retry] = [e for e in events if e.get("subtype") == "retry"]
    assert retry["delay_s"] >= 1.0  # the pause, not its own 0.05 s backoff
    assert run["api_retries"] == 1  # its 529 was reported to admission


def test_the_notice_gives_each_cost_and_who_waits(tmp_path: Path) -> None:
    from orch_plugins.claude_hooks import format_notice, format_screen_note

    store = _store(tmp_path)
    done = _run(store, "done")
    store.finish(done, COMPLETED, cost_usd=0.0961)
    asking = _run(store, "asking")
    store.set_waiting(asking, "Claude needs your permission to use Bash")
    notice = format_notice([store.get_run(done)], store.waiting_runs())
    assert "- done: completed, $0.096 — " in notice
    assert "- asking: waiting for Claude needs your permission to use Bash" in notice
    screen = format_screen_note([store.get_run(done)], store.waiting_runs())
    assert screen == "orch: 1 agent ended: done completed; waiting for you: asking (orch status)"

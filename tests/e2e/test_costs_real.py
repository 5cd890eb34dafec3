"""The cost ledger and the project budget, with the real Claude Code against the stand-in."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from orch_plugins.testing.api import ApiRequest, MessagesStandIn, Reply
from tests.helpers import orch, status_json, wait_for

pytestmark = pytest.mark.e2e

TOKENS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_creation_tokens")


def _cost(*args: str) -> dict:
    return json.loads(orch("cost", "--json", *args, check=True).stdout)


def test_three_agents_costs_and_tokens_sum_to_orch_cost(
    real_project: Path, messages_api: MessagesStandIn
) -> None:
    messages_api.on("short", Reply.text("done"))
    messages_api.on("longer", Reply.text("done " * 300))
    orch("launch", "a1", "short job", "--role", "researcher", check=True)
    orch("launch", "a2", "longer job " * 50, "--role", "researcher", check=True)
    orch("launch", "a3", "short job three", check=True)
    orch("wait", "--timeout", "120", check=True, timeout=150)
    runs = status_json()
    assert [r["status"] for r in runs] == ["completed"] * 3
    for run in runs:  # each run records its cost, its models and its tokens
        assert run["cost_usd"] > 0 and run["models"], run
        assert run["input_tokens"] > 0 and run["output_tokens"] > 0
        assert sum(m["cost_usd"] for m in run["models"].values()) == pytest.approx(run["cost_usd"])
    assert runs[1]["input_tokens"] > runs[0]["input_tokens"]  # a longer task costs more
    spent = sum(r["cost_usd"] for r in runs)
    for by in ("agent", "role", "model", "day", "parent"):
        report = _cost("--by", by)
        assert report["total"]["cost_usd"] == pytest.approx(spent), by
        assert sum(g["cost_usd"] for g in report["groups"]) == pytest.approx(spent), by
        for field in TOKENS:
            want = sum(r[field] for r in runs)
            assert report["total"][field] == want, (by, field)
            assert sum(g[field] for g in report["groups"]) == want, (by, field)
    by_agent = {g["key"]: g for g in _cost()["groups"]}
    assert {k: v["cost_usd"] for k, v in by_agent.items()} == pytest.approx(
        {r["name"]: r["cost_usd"] for r in runs}
    )
    by_role = {g["key"]: g["runs"] for g in _cost("--by", "role")["groups"]}
    assert by_role == {"researcher": 2, "-": 1}
    assert _cost("a2")["total"]["cost_usd"] == pytest.approx(runs[1]["cost_usd"])
    assert _cost("--since", "2999-01-01")["total"]["runs"] == 0
    # The status table ends with the total of what it lists; the text report has a TOTAL row.
    assert "for 3 agents" in orch("status", check=True).stdout.splitlines()[-1]
    assert orch("cost", check=True).stdout.splitlines()[-1].startswith("TOTAL")
    # Money spent stays in the ledger once the runs are forgotten.
    orch("clear", check=True)
    assert _cost()["total"]["runs"] == 0
    assert _cost("--all")["total"]["cost_usd"] == pytest.approx(spent)


def test_project_budget_refuses_new_launches_and_leaves_running_agents_alone(
    real_project: Path, messages_api: MessagesStandIn, tmp_path: Path
) -> None:
    (tmp_path / "config.toml").write_text("[budget]\ntotal_usd = 0.01\n")
    go_on = threading.Event()
    quick_go = threading.Event()

    def answer(request: ApiRequest) -> Reply:
        if "slow" in request.prompt_text:
            go_on.wait(120)  # the slow agent runs until the test lets it finish
            return Reply.text("slow done")
        if "quick job" in request.prompt_text:
            quick_go.wait(120)  # spends only once "later" is queued behind it
        return Reply.text("quick done")

    messages_api.respond_with(answer)
    orch("launch", "slow", "slow job", check=True)
    wait_for(lambda: messages_api.wait_for(lambda r: "slow" in r.prompt_text), timeout=60)
    orch("launch", "quick", "quick job", check=True)
    # Queued behind the two (at most 2 at once): it must not start once the budget is spent.
    orch("launch", "later", "quick job later", "--max-parallel", "2", check=True)
    assert status_json("later")[0]["status"] == "queued"
    quick_go.set()
    orch("wait", "quick", "--timeout", "60", check=True, timeout=90)
    spent = status_json("quick")[0]["cost_usd"]
    assert spent > 0.01
    refused = orch("launch", "next", "quick job next")
    assert refused.returncode == 1
    assert refused.stderr.startswith("orch: error: project budget spent: $")
    assert "of total_usd $0.01" in refused.stderr and len(refused.stderr.splitlines()) == 1
    assert orch("status", "next").returncode == 1  # nothing recorded
    # The running agent goes on and completes; the queued one stays queued, saying why.
    assert status_json("slow")[0]["status"] == "running"
    go_on.set()
    orch("wait", "slow", "--timeout", "60", check=True, timeout=90)
    later = status_json("later")[0]
    assert later["status"] == "queued"
    assert later["error"].startswith("waiting: project budget spent")
    report = _cost()
    assert report["budget"]["total_usd"]["limit"] == 0.01
    assert report["budget"]["total_usd"]["spent"] == pytest.approx(
        sum(r["cost_usd"] or 0 for r in status_json())
    )
    assert "SPENT" in orch("cost", check=True).stdout
    orch("cancel", "later", check=True)

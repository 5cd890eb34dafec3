"""``orch web`` in a real browser: the system's Chromium driven by Playwright, real Claude Code
agents against the Messages API stand-in (three claude starts, one browser).

Screenshots of the main pages go to ``test-artifacts/screenshots/`` (git-ignored; CI keeps
them as artifacts); docs/img/ holds copies for the docs.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orch_plugins.testing.api import MessagesStandIn, Reply
from tests.helpers import ROOT, orch
from tests.web_helpers import orch_web

pytestmark = pytest.mark.e2e

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SHOTS = ROOT / "test-artifacts" / "screenshots"
#: What the first agent writes, streamed in small pieces so the page shows it growing.
REPORT = "# Report\n\n" + "\n".join(f"- point {i} of the answer" for i in range(1, 41)) + "\n"
TASK = 'STREAMER <script>window.__pwned = 1</script> <img src=x onerror="window.__pwned = 2">'


def test_dashboard_in_a_real_browser(real_project: Path, messages_api: MessagesStandIn) -> None:
    from playwright.sync_api import expect, sync_playwright

    messages_api.on("STREAMER", Reply.text(REPORT, chunk=24, pace=0.12))
    messages_api.on("SECOND ROUND", Reply.text("second **answer**"))
    messages_api.on("STALLER", Reply.text("never seen", delay=120))
    SHOTS.mkdir(parents=True, exist_ok=True)
    assert Path(CHROMIUM).exists(), "Chromium is missing: apt-get install chromium"
    with orch_web() as web, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            # Without the token: refused (a fresh context has no cookie).
            stranger = browser.new_context()
            response = stranger.new_page().goto(web.base + "/")
            assert response is not None and response.status == 403
            stranger.close()

            ctx = browser.new_context(viewport={"width": 1280, "height": 800})
            table = ctx.new_page()
            streams: list[str] = []  # the tab's event streams: one, whatever happens
            table.on("request", lambda r: streams.append(r.url) if "/events" in r.url else None)
            table.goto(web.url)
            expect(table.locator("#empty")).to_be_visible()
            table.evaluate("window.__loadedOnce = true")  # gone if the page reloads

            # An agent launched elsewhere appears, and changes status, without a reload.
            orch("launch", "writer", TASK, check=True)
            row = table.locator("#agent-writer")
            expect(row.locator(".status")).to_have_text("running", timeout=30_000)

            # Its page follows the log while the answer streams.
            agent = ctx.new_page()
            agent.goto(web.base + row.locator("a").get_attribute("href"))
            log = agent.locator("#log")
            expect(log).to_contain_text("point 3 of", timeout=60_000)
            assert "point 40 of" not in log.inner_text()  # seen while still being written
            expect(log).to_contain_text("point 40 of", timeout=60_000)
            expect(agent.locator("#status")).to_have_text("completed", timeout=60_000)
            expect(agent.locator("#output h1")).to_have_text("Report")
            # The task shows as text; nothing in it ran.
            expect(agent.locator("#task")).to_have_text(TASK)
            assert agent.evaluate("window.__pwned") is None
            expect(row.locator(".status")).to_have_text("completed", timeout=30_000)
            agent.screenshot(path=str(SHOTS / "agent.png"), full_page=True)

            # Resume with new text from the page: a new run of the same session.
            agent.fill("#resume textarea", "SECOND ROUND, please")
            agent.click("#resume button")
            expect(agent.locator("#output strong")).to_have_text("answer", timeout=90_000)
            expect(agent.locator(".lineage")).to_contain_text("resumed from writer#")
            req = next(
                r for r in messages_api.conversation_requests() if "SECOND ROUND" in r.prompt_text
            )
            assert any("STREAMER" in t for t in req.all_user_texts)  # the same conversation

            # Launch from the page, then cancel it from the page.
            table.fill("#launch input[name=name]", "staller")
            table.fill("#launch textarea[name=task]", "STALLER: wait")
            table.click("#launch button")
            stall = table.locator("#agent-staller")
            expect(stall.locator(".status")).to_have_text("running", timeout=30_000)
            table.once("dialog", lambda dialog: dialog.accept())
            stall.locator("button.cancel").click()
            expect(stall.locator(".status")).to_have_text("cancelled", timeout=30_000)
            assert table.evaluate("window.__loadedOnce") is True  # never reloaded
            assert len(streams) == 1, streams
            table.screenshot(path=str(SHOTS / "agents.png"), full_page=True)

            cost = ctx.new_page()
            cost.goto(web.base + "/cost")
            expect(cost.locator("#total")).not_to_have_text("$0.00")
            cost.wait_for_function("Chart.instances && Object.keys(Chart.instances).length === 4")
            cost.screenshot(path=str(SHOTS / "cost.png"), full_page=True)
        finally:
            browser.close()
    runs = {r["name"]: r for r in json.loads(orch("status", "--json", check=True).stdout)}
    assert runs["writer"]["status"] == "completed" and runs["writer"]["parent"]
    assert runs["staller"]["status"] == "cancelled"
    assert runs["staller"]["cwd"] == str(real_project)

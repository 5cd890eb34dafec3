"""``orch web`` without a browser: the token gate, read-only mode, the missing extra, Markdown.

The server is the real ``orch web`` process (uvicorn) on a free port; requests are plain HTTP.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from tests.helpers import git, git_project, orch, wait_for
from tests.web_helpers import http, orch_web


def test_every_request_without_the_token_is_refused(project: Path) -> None:
    with orch_web() as web:
        base, token = web.base, web.token
        for path in ("/", "/cost", "/agents/1", "/events", "/static/app.js", "/nothing"):
            status, _, body = http(base + path)
            assert status == 403, path
            assert "token" in body
        assert http(f"{base}/?token=wrong{token}")[0] == 403
        assert http(base + "/", headers={"Cookie": f"orch_web_0={token}"})[0] == 403  # other port
        # The token in the URL becomes an HttpOnly, SameSite=Strict cookie; the URL loses it.
        status, headers, _ = http(f"{base}/cost?token={token}")
        assert status == 303 and headers["location"] == "/cost"
        cookie = headers["set-cookie"]
        assert f"={token}" in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie
        jar = {"Cookie": cookie.split(";")[0]}
        status, _, page = http(base + "/", headers=jar)
        assert status == 200 and "No agents yet" in page
        assert http(base + "/agents/999", headers=jar)[0] == 404
        # The launch form offers the registered roles and backends.
        assert "<option>implementer</option>" in page and "<option>tmux</option>" in page
        # Actions need the header: a cookie (what a cross-site form would send) is not enough.
        assert http(base + "/api/cancel/a1", method="POST", headers=jar, data=b"")[0] == 403
        status, _, body = http(
            base + "/api/cancel/a1", method="POST", headers={"X-Orch-Token": token}, data=b""
        )
        assert (
            status == 400
            and json.loads(body)["error"] == "no agent named 'a1' (see 'orch status --all')"
        )


def test_read_only_shows_but_refuses_actions(project: Path) -> None:
    orch("launch", "a1", "SLEEP=30 hello", check=True)
    with orch_web("--read-only") as web:
        head = {"X-Orch-Token": web.token}
        status, _, page = http(web.base + "/", headers=head)
        assert status == 200 and 'id="agent-a1"' in page
        assert "/api/cancel" not in page and 'id="launch"' not in page
        status, _, body = http(web.base + "/api/cancel/a1", method="POST", headers=head, data=b"")
        assert status == 403 and "read-only" in body
    assert orch("status", "a1", "--json", check=True).stdout.count('"running"') == 1


def test_launch_and_cancel_go_through_the_core(project: Path) -> None:
    """A launch from the dashboard is an ordinary run (``orch status`` sees it); a bad name is
    the core's one-line error, and nothing is recorded."""
    with orch_web() as web:
        head = {"X-Orch-Token": web.token, "Content-Type": "application/x-www-form-urlencoded"}
        status, _, body = http(
            web.base + "/api/launch", method="POST", headers=head, data=b"name=w1&task=SLEEP%3D30"
        )
        assert status == 200, body
        assert json.loads(body)["result"]["status"] in ("running", "queued")
        status, _, body = http(
            web.base + "/api/launch", method="POST", headers=head, data=b"name=bad%20name&task=x"
        )
        assert status == 400 and "name" in json.loads(body)["error"]
        status, _, body = http(web.base + "/api/cancel/w1", method="POST", headers=head, data=b"")
        assert json.loads(body)["result"] == [{"name": "w1", "status": "cancelled"}]
    runs = json.loads(orch("status", "--json", check=True).stdout)
    assert [(r["name"], r["status"], r["cwd"]) for r in runs] == [("w1", "cancelled", str(project))]


def test_the_event_stream_sends_changed_rows(project: Path) -> None:
    with orch_web() as web:
        head = {"X-Orch-Token": web.token}
        import urllib.request

        req = urllib.request.Request(web.base + "/events?since=0", headers=head)
        with urllib.request.urlopen(req, timeout=20) as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
            assert stream.readline() == b"event: summary\n"  # no agents: only the summary
            orch("launch", "s1", "SLEEP=30 hi", check=True)
            deadline = time.monotonic() + 15
            seen = b""
            while b'"name": "s1"' not in seen and time.monotonic() < deadline:
                seen += stream.readline()
            assert b"event: row" in seen and b'"name": "s1"' in seen


def test_without_the_extra_it_says_what_to_install(project: Path) -> None:
    code = (
        "import sys; sys.modules['starlette'] = None; sys.modules['uvicorn'] = None\n"
        "from orch_plugins.cli import main; sys.argv = ['orch', 'web']; main()"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert r.returncode == 1
    assert r.stderr == (
        "orch: error: orch web needs starlette, uvicorn: pip install 'orch-plugins[web]'\n"
    )


def test_a_taken_port_is_a_one_line_error(project: Path) -> None:
    with orch_web() as web:
        port = web.base.rsplit(":", 1)[1]
        r = orch("web", "--port", port)
    assert r.returncode == 1
    assert r.stderr.startswith(f"orch: error: cannot listen on 127.0.0.1:{port}: ")
    assert r.stderr.count("\n") == 1


def test_markdown_shows_raw_html_as_text() -> None:
    from orch_plugins.web.app import markdown

    html = markdown(
        "# Done\n\n<script>alert(1)</script>\n\n<img src=x onerror=alert(1)>\n\n"
        "[x](javascript:alert(1)) **bold** | a |\n|---|\n| b |"
    )
    assert "<script" not in html and "<img" not in html
    assert "&lt;script&gt;" in html and "<strong>bold</strong>" in html
    assert 'href="javascript' not in html


def test_worktree_runs_show_their_branch_diff_and_merge_or_discard(project: Path) -> None:
    """Runs with a worktree get the Branch and Changes columns, a diff on their page, and merge
    and discard buttons that call the core's merge and discard (``orch merge/discard``)."""
    repo = git_project(project)
    orch("launch", "one", "edit APPEND=f.txt:one", "--worktree", check=True)
    orch("launch", "two", "edit APPEND=f.txt:two", "--worktree", check=True)
    orch("wait", check=True)
    runs = {r["name"]: r for r in json.loads(orch("status", "--json", check=True).stdout)}
    with orch_web() as web:
        head = {"X-Orch-Token": web.token}
        form = {**head, "Content-Type": "application/x-www-form-urlencoded"}
        _, _, page = http(web.base + "/", headers=head)
        assert "<th>Branch</th><th>Changes</th>" in page
        assert "<td>+1 -0 in 1 file</td>" in page
        _, _, page = http(f"{web.base}/agents/{runs['one']['run_id']}", headers=head)
        assert '<span class="add">+one</span>' in page
        assert 'id="merge"' in page and 'id="discard"' in page
        status, _, body = http(web.base + "/api/merge/one", method="POST", headers=form, data=b"")
        assert status == 200, body
        assert json.loads(body)["result"]["status"].startswith("merged into main (")
        assert (repo / "f.txt").read_text() == "base\none\n"
        status, _, body = http(web.base + "/api/discard/two", method="POST", headers=form, data=b"")
        assert status == 400 and "not discarding 'two'" in json.loads(body)["error"]
        status, _, body = http(
            web.base + "/api/discard/two", method="POST", headers=form, data=b"force=1"
        )
        assert status == 200, body
        _, _, page = http(f"{web.base}/agents/{runs['two']['run_id']}", headers=head)
        assert "its worktree and branch were discarded" in page and 'id="merge"' not in page
    assert "orch/two" not in git(repo, "branch", "--list")


def test_the_queue_shows_a_rate_limit_pause_and_the_budget(project: Path) -> None:
    """Admission's state as ``orch limits`` reads it (orch_plugins.costs): a pause after a
    429, the project budget; the summary comes live over the stream too."""
    from orch_plugins.store import Store

    (project.parent / "config.toml").write_text("[budget]\ntotal_usd = 5\n")
    orch("launch", "p1", "SLEEP=60 hi", check=True)
    run_id = json.loads(orch("status", "--json", check=True).stdout)[0]["run_id"]
    with orch_web() as web:
        head = {"X-Orch-Token": web.token}
        _, _, page = http(web.base + "/", headers=head)
        assert "Admission paused" not in page
        assert "budget total_usd: $0.00 of $5.00 ($5.00 left)" in page
        store = Store.open()
        store.rate_limited(run_id, 120, 429)
        store.close()
        # The page shows the hub's newest read (twice a second).
        page = wait_for(lambda: (p := http(web.base + "/", headers=head)[2]) * ("paused" in p))
        assert "Admission paused: rate limited: no agent starts for 1" in page
        assert "(HTTP 429 from p1)" in page
        _, _, page = http(web.base + "/cost", headers=head)
        assert "Admission paused" in page and "budget total_usd" in page

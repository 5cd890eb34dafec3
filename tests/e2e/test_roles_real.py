"""Roles with the real Claude Code CLI: the tools a role offers, its permission mode, and the
role a resumed or forked run keeps."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from orch_plugins.testing.api import ApiRequest, MessagesStandIn, Reply
from tests.helpers import orch, status_json

pytestmark = pytest.mark.e2e

REVIEWER = (
    "---\nname: reviewer\ndescription: >\n  Reviews code,\n  read-only\ntools: [Read, Grep]\n"
    "model: inherit\n---\n{prompt}\n"
)


def _write_agent(project: Path, text: str, stem: str = "reviewer") -> Path:
    directory = project / ".claude" / "agents"
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{stem}.md"
    path.write_text(text, encoding="utf-8")
    return path


def _init_event(run: dict) -> dict:
    for line in Path(run["log_path"]).read_text().splitlines():
        event = json.loads(line)
        if event.get("type") == "system" and event.get("subtype") == "init":
            return event
    raise AssertionError("no init event")


def _request(api: MessagesStandIn, marker: str) -> ApiRequest:
    return next(r for r in api.conversation_requests() if marker in r.prompt_text)


def test_role_tool_list_limits_the_tools_offered(
    real_project: Path, messages_api: MessagesStandIn
) -> None:
    _write_agent(real_project, REVIEWER.format(prompt="You review."))
    subprocess.run(["git", "init", "-q"], cwd=real_project, check=True)
    messages_api.on("REVIEW IT", Reply.bash("touch pwned.txt"), Reply.text("reviewed"))
    hunt = (Reply.bash("git status"), Reply.bash("touch hunted.txt"), Reply.text("hunted"))
    messages_api.on("HUNT IT", *hunt)
    orch("launch", "rev", "REVIEW IT", "--role", "reviewer", check=True)
    orch("launch", "hunter", "HUNT IT", "--role", "bug-hunter", check=True)
    orch("wait", "rev", "hunter", check=True, timeout=150)

    # A "Read, Grep" role is offered exactly those: no Bash, Edit or Write to misuse.
    offered = _request(messages_api, "REVIEW IT").tools
    assert {"Read", "Grep"} <= set(offered), offered
    assert not {"Bash", "Edit", "Write", "NotebookEdit", "Agent"} & set(offered), offered
    assert not (real_project / "pwned.txt").exists()
    assert _init_event(status_json("rev")[0])["permissionMode"] == "default"

    # bug-hunter: Bash is offered for its git commands, which run; anything else is refused.
    requests = [r for r in messages_api.conversation_requests() if "HUNT IT" in r.prompt_text]
    assert "Bash" in requests[0].tools and not {"Edit", "Write"} & set(requests[0].tools)
    assert (
        "On branch" in requests[1].tool_results[0] or "No commits" in (requests[1].tool_results[0])
    ), requests[1].tool_results
    assert not (real_project / "hunted.txt").exists()
    assert _init_event(status_json("hunter")[0])["permissionMode"] == "default"


#: Agent files of every shape, and ones Claude Code does not load. (A BOM is left out: 2.1.197
#: skips such a file, 2.1.332 reads it; orch reads it.)
AGENT_FILES = {
    "flow": b"---\nname: flow\ndescription: flow list\ntools: [Read, Grep]\n---\nF.\n",
    "block": b"---\nname: block\ndescription: block list\ntools:\n  - Read\n  - Bash\n---\nB.\n",
    "folded": b"---\nname: folded\ndescription: >\n  folded one\n  folded two\n---\nF.\n",
    "literal": b"---\nname: literal\ndescription: |\n  literal one\n  literal two\n---\nL.\n",
    "crlf": b"---\r\nname: crlf\r\ndescription: crlf file\r\ntools: Read, Grep\r\n---\r\nC.\r\n",
    "colon": b"---\nname: colon\ndescription: Use when: asked #now\ntools: Read\n---\nC.\n",
    "quotes": b'---\nname: quotes\ndescription: say "hi": now\ntools: [Read]\n---\nQ.\n',
    "spaces": b"---\nname: spaces\ndescription: spaces\ntools: Read Bash(git diff:*)\n---\nS.\n",
    "unclosed": b"---\nname: unclosed\ndescription: unclosed list\ntools: [Read, Grep\n---\nU.\n",
    "deny": b"---\nname: deny\ndescription: denies\ndisallowedTools: Write, Edit\n---\nD.\n",
    "yaml12": b"---\nname: yes\ndescription: on\n---\nY.\n",
    "comment": b"---\nname: comment\ndescription: valid # comment\n---\nC.\n",
    "midfence": b"---\nname: midfence\ndescription: a---b\n---\nM.\n",
    "latin1": b"---\nname: latin1\ndescription: caf\xe9\n---\nL.\n",
    "renamed": b"---\nname: other-name\ndescription: named apart from its file\n---\nR.\n",
    "nofront": b"Just a body.\n",
    "noname": b"---\ndescription: no name\n---\nN.\n",
    "nodesc": b"---\nname: nodesc\n---\nN.\n",
    "numname": b"---\nname: 123\ndescription: numeric\n---\nN.\n",
    "blankfirst": b"\n---\nname: blankfirst\ndescription: blank line first\n---\nB.\n",
}


def _claude_code_listing(request: ApiRequest) -> dict[str, tuple[str, str]]:
    """Claude Code's own reading of the agent files: ``name -> (description, tools)`` from
    the agent list it shows the model ("- NAME: DESCRIPTION (Tools: TOOLS)")."""
    texts = []
    for message in request.messages:  # a text block, or (2.1.x) a role "system" message
        content = message.get("content")
        blocks = content if isinstance(content, list) else [{"text": content}]
        texts += [b.get("text") or "" for b in blocks if isinstance(b, dict)]
    text = next(t for t in texts if "Available agent types" in t)
    listing = text.split("Available agent types", 1)[1].split("\n\n", 1)[0]
    out = {}
    for entry in ("\n" + listing.split("\n", 1)[1]).split("\n- ")[1:]:
        name, rest = entry.split(": ", 1)
        description, tools = rest.rsplit(" (Tools: ", 1)
        out[name] = (description.strip(), tools.strip().removesuffix(")"))
    return out


def test_agent_files_read_as_claude_code_reads_them(
    real_project: Path, messages_api: MessagesStandIn
) -> None:
    directory = real_project / ".claude" / "agents"
    directory.mkdir(parents=True)
    for stem, data in AGENT_FILES.items():
        (directory / f"{stem}.md").write_bytes(data)
    messages_api.on("LIST AGENTS", Reply.text("listed"))
    orch("launch", "lister", "LIST AGENTS", check=True)
    orch("wait", "lister", check=True, timeout=120)
    init = _init_event(status_json("lister")[0])
    theirs = _claude_code_listing(_request(messages_api, "LIST AGENTS"))

    ours = {
        r["name"]: r
        for r in json.loads(orch("roles", "--json", check=True).stdout)
        if r["source"].startswith(str(directory))
    }
    # The same files are agents (both lists also hold Claude Code's built-in agents).
    names = re.findall(rb"\nname: ([^\r\n]+)", b"".join(AGENT_FILES.values()))
    named = {n.decode() for n in names}
    assert set(ours) == set(init["agents"]) & named == set(theirs) & named, init["agents"]
    for name, role in ours.items():
        description, tools = theirs[name]
        assert role["description"] == description, name
        if role["allowed_tools"]:
            assert ", ".join(role["allowed_tools"]) == tools, name
        elif role["disallowed_tools"]:
            assert tools == "All tools except " + ", ".join(role["disallowed_tools"]), name
        else:
            assert tools == "All tools", name


def test_resume_and_fork_from_another_directory_keep_the_role(
    real_project: Path,
    messages_api: MessagesStandIn,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _write_agent(real_project, REVIEWER.format(prompt="PROMPT-OF-A: review only."))
    other = tmp_path / "other-project"  # its own role of the same name: tools and prompt differ
    _write_agent(other, "---\nname: reviewer\ndescription: B\ntools: Bash\n---\nPROMPT-OF-B\n")
    plain = tmp_path / "plain"  # no such role at all
    plain.mkdir()
    for marker in ("FIRST", "SECOND", "FORKED"):
        messages_api.on(marker, Reply.text(f"{marker.lower()} answer"))
    orch("launch", "rev", "FIRST look", "--role", "reviewer", check=True)
    orch("wait", "rev", check=True, timeout=120)
    session = status_json("rev")[0]["session_id"]

    monkeypatch.chdir(other)  # the store is found through ORCH_STATE_DIR, as from a script
    orch("resume", "rev", "SECOND look", check=True)
    orch("wait", "rev", check=True, timeout=120)
    monkeypatch.chdir(plain)
    orch("resume", "rev", "FORKED look", "--fork", "--as", "revfork", check=True)
    orch("wait", "revfork", check=True, timeout=120)

    assert status_json("rev")[0]["session_id"] == session
    for marker in ("FIRST", "SECOND", "FORKED"):
        request = _request(messages_api, marker)
        assert "PROMPT-OF-A" in request.system_text and "PROMPT-OF-B" not in request.system_text
        assert {"Read", "Grep"} <= set(request.tools), (marker, request.tools)
        assert "Bash" not in request.tools, (marker, request.tools)
    assert any("FIRST look" in t for t in _request(messages_api, "FORKED").all_user_texts)

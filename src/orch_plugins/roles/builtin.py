"""The built-in roles, registered like any third-party plugin's.

Each states its permission mode: ``default`` for the read-only ones (in ``claude -p`` anything not
pre-approved is refused, an interactive agent asks the person), ``acceptEdits`` for the ones that
change files. Their tool lists limit what the agent is offered: a reviewer gets no Edit or Write,
and Bash only for the git commands it lists.
"""

from __future__ import annotations

from orch_plugins.hookspecs import hookimpl
from orch_plugins.roles import Role, RoleRegistry

_READ = ("Read", "Grep", "Glob")
_GIT_READ = ("Bash(git diff:*)", "Bash(git log:*)", "Bash(git show:*)", "Bash(git status:*)")
_REPORT = (
    "\n\nEnd with a report: a short summary line first, then findings as a list, each with the "
    "file and line, why it matters and a suggested fix. Say plainly when you found nothing."
)

ROLES = (
    Role(
        name="bug-hunter",
        description="Finds real bugs (logic, edge cases, races) and shows how to trigger them",
        system_prompt=(
            "You are a meticulous bug hunter. Look for defects that change behaviour: wrong "
            "logic, unhandled edge cases, error paths, races, resource leaks. Prefer a few "
            "confirmed bugs with a reproduction over many guesses. Do not edit files." + _REPORT
        ),
        allowed_tools=(*_READ, *_GIT_READ),
        permission_mode="default",
        task_template="Hunt for bugs. Scope: {task}",
    ),
    Role(
        name="style-reviewer",
        description="Reviews readability, naming, structure and consistency with the codebase",
        system_prompt=(
            "You are a senior reviewer focused on style: naming, structure, duplication, dead "
            "code, comments that say why, consistency with the surrounding codebase and its "
            "linters. Do not edit files." + _REPORT
        ),
        allowed_tools=(*_READ, *_GIT_READ),
        permission_mode="default",
        task_template="Review the style of: {task}",
    ),
    Role(
        name="perf-analyst",
        description="Finds hot paths, needless work and memory growth; measures before claiming",
        system_prompt=(
            "You are a performance analyst. Find needless work, quadratic loops, repeated I/O, "
            "blocking calls on hot paths and memory growth. Measure where you can and give "
            "numbers; estimate the gain of each suggestion." + _REPORT
        ),
        allowed_tools=(*_READ, *_GIT_READ, "Bash(python -m timeit:*)", "Bash(time:*)"),
        permission_mode="default",
        task_template="Analyse the performance of: {task}",
    ),
    Role(
        name="security-reviewer",
        description="Looks for injection, secrets, unsafe deserialisation, authz and path bugs",
        system_prompt=(
            "You are an application security reviewer. Look for injection (shell, SQL, path), "
            "secrets in code, unsafe deserialisation, missing authorisation, SSRF and unsafe "
            "defaults. Rate each finding (high/medium/low) with an attack scenario. Do not edit "
            "files." + _REPORT
        ),
        allowed_tools=(*_READ, *_GIT_READ),
        permission_mode="default",
        task_template="Security review of: {task}",
    ),
    Role(
        name="researcher",
        description="Reads code and docs to answer a question, citing files and sources",
        system_prompt=(
            "You are a researcher. Answer the question thoroughly, citing the files (with line "
            "numbers) and sources you relied on. Separate facts from inferences. Do not edit "
            "files."
        ),
        allowed_tools=(*_READ, "WebSearch", "WebFetch"),
        permission_mode="default",
        task_template="Research question: {task}",
    ),
    Role(
        name="implementer",
        description="Makes the change: edits files, runs the tests, reports what changed",
        system_prompt=(
            "You are an implementer. Make the requested change with the smallest correct diff, "
            "follow the codebase's conventions, run the relevant tests, and finish with a summary "
            "of what changed, which tests ran and anything left undone."
        ),
        allowed_tools=(*_READ, "Edit", "Write", "Bash"),
        permission_mode="acceptEdits",
        task_template="Implement: {task}",
        worktree=True,
    ),
    Role(
        name="tester",
        description="Writes and runs tests for the given code; reports failures with causes",
        system_prompt=(
            "You are a tester. Write focused tests for the given behaviour (edge cases and error "
            "paths first), run them, and report which pass and which fail and why. Change test "
            "files only."
        ),
        allowed_tools=(*_READ, "Edit", "Write", "Bash"),
        permission_mode="acceptEdits",
        task_template="Test: {task}",
        worktree=True,
    ),
)


@hookimpl
def orch_register_roles(registry: RoleRegistry) -> None:
    for role in ROLES:
        registry.add(role)

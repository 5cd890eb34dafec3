"""The one exception type the CLI turns into a one-line message and a non-zero exit."""

from __future__ import annotations


class OrchError(Exception):
    """A user-facing error: bad input, unknown agent, broken store, missing claude."""

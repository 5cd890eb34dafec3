"""``python -m orch_plugins.cli`` = ``orch``."""

from orch_plugins.cli import main

main()

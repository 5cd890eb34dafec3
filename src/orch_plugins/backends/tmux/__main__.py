"""``python -m orch_plugins.backends.tmux``: the dashboard's pane programs under their old name
(panes of a dashboard opened before the package split ask for it)."""

import sys

from orch_plugins.backends.tmux.dashboard import main

sys.exit(main())

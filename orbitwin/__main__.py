"""``python -m orbitwin``: the same as the ``orbitwin`` command."""

import sys

from orbitwin.cli.main import main

sys.exit(main())

"""``python -m mibench``: the ``mibench`` command."""

import sys

from .cli import main

sys.exit(main())

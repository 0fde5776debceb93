"""``python -m mibench.executors ORDER.json``: a worker process of the local executor."""

import sys

from .worker import main

sys.exit(main(sys.argv[1:]))

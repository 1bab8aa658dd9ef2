"""``python -m proxy.workers INDEX FD``: one worker of ``cheaplm serve --workers`` (worker.py)."""

import sys

from .worker import main

sys.exit(main(sys.argv[1:]))

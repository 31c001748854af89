"""``python -m bench``: see ``bench/run.py`` and ``bench/README.md``."""

from __future__ import annotations

import sys

from .run import main

main(sys.argv[1:])

"""``python -m bench``: :func:`bench.cli.main`, what ``make bench`` runs first."""

import sys

from bench.cli import main

sys.exit(main())

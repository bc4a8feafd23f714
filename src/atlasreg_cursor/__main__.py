"""``python -m atlasreg_cursor`` is the CLI."""

import sys

from .entrypoints.cli import main

sys.exit(main())

"""``python -m atlasreg_cursor.adapters.local.spider_runner CONFIG.json EVENTS_FD``."""

import sys

from .service import main

sys.exit(main())

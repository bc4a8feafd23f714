"""Run the ``atlasreg-cursor`` CLI and tell where this process spends CPU.

Usage: ``python benchmarks/profiled_cli.py OUT ARGS...`` (the CLI's own
arguments). With ``OUT`` ending in ``.prof``: cProfile with a CPU timer (the
main thread only; the source threads are not profiled). With ``OUT`` ending
in ``.json``: no profiler, just this process's CPU seconds (every thread; the
crawl process it starts is not counted) as ``{"process_cpu_s": …}``.
"""

from __future__ import annotations

import cProfile
import json
import sys
import time
from pathlib import Path

from atlasreg_cursor.entrypoints.cli import main

if __name__ == "__main__":
    out = Path(sys.argv[1])
    profiler = cProfile.Profile(time.process_time) if out.suffix == ".prof" else None
    if profiler is not None:
        profiler.enable()
    try:
        code = main(sys.argv[2:])
    finally:
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(str(out))
        else:
            out.write_text(json.dumps({"process_cpu_s": time.process_time()}))
    sys.exit(code)

"""Coverage-guided fuzzing of the untrusted-input parsers with atheris (libFuzzer).

Usage::

    python tests/security/fuzz_atheris.py TARGET [libFuzzer options] [CORPUS_DIR ...]

``TARGET`` is one of ``fuzz_targets.TARGETS``. CI runs every target for a
few seconds from the committed seeds (``.ci/fuzz.sh``); new inputs go to a
scratch directory given first, crashes to ``-artifact_prefix``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import atheris

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

with atheris.instrument_imports(include=["atlasreg_cursor"]):
    from tests.security.fuzz_targets import TARGETS


def main() -> None:
    """Pick the target named first on the command line and fuzz it."""
    if len(sys.argv) < 2 or sys.argv[1] not in TARGETS:
        sys.exit(f"usage: {sys.argv[0]} {{{','.join(sorted(TARGETS))}}} [libFuzzer args]")
    target = TARGETS[sys.argv[1]]
    atheris.Setup([sys.argv[0], *sys.argv[2:]], target)
    atheris.Fuzz()


if __name__ == "__main__":
    main()

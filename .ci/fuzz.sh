#!/usr/bin/env bash
# A time-bounded coverage-guided fuzz pass (atheris) over every fuzz target,
# starting from the committed seed corpus. New inputs go to a scratch
# directory; a crash or an exception fails the run and leaves its input in
# $FUZZ_OUT. FUZZ_SECONDS per target (default 8).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${FUZZ_SECONDS:-8}"
out="${FUZZ_OUT:-$(mktemp -d)}"
python=.venv/bin/python
if ! "$python" -c "import atheris" 2>/dev/null; then
  echo "atheris is not installed (it is in the dev extras on Linux, Python < 3.13)" >&2
  exit 1
fi
for target in $("$python" -c "from tests.security.fuzz_targets import TARGETS; print(' '.join(sorted(TARGETS)))"); do
  mkdir -p "$out/$target"
  echo "fuzz $target for ${seconds}s"
  "$python" tests/security/fuzz_atheris.py "$target" \
    -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
    -artifact_prefix="$out/$target-" "$out/$target" "tests/security/corpus/$target" \
    > "$out/$target.log" 2>&1 || { tail -40 "$out/$target.log"; exit 1; }
  grep -E "^stat::number_of_executed_units" "$out/$target.log" || true
done

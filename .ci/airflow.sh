#!/usr/bin/env bash
# Creates the two Airflow venvs used by the Airflow contract and end-to-end tests:
#   AIRFLOW3_VENV (default $HOME/.cache/atlasreg-cursor/airflow-3.3.2) with apache-airflow==3.3.2
#   AIRFLOW2_VENV (default $HOME/.cache/atlasreg-cursor/airflow-2.10.5) with apache-airflow==2.10.5
# Idempotent: a venv is built only when its marker file is missing. Prints the time each step took.
set -euo pipefail

PYTHON=${PYTHON:-python3}
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/atlasreg-cursor
AIRFLOW3_VENV=${AIRFLOW3_VENV:-$CACHE/airflow-3.3.2}
AIRFLOW2_VENV=${AIRFLOW2_VENV:-$CACHE/airflow-2.10.5}

build_venv() {
  local dir=$1 version=$2
  local marker=$dir/.atlasreg-airflow-$version
  if [ -f "$marker" ]; then
    echo "airflow $version: present in $dir"
    return 0
  fi
  local start=$SECONDS
  rm -rf "$dir"
  mkdir -p "$(dirname "$dir")"
  "$PYTHON" -m venv "$dir"
  local log=$dir/pip-install.log
  if ! "$dir/bin/pip" install --disable-pip-version-check "apache-airflow==$version" >"$log" 2>&1; then
    tail -n 40 "$log" >&2
    echo "airflow $version: pip install failed (log: $log)" >&2
    return 1
  fi
  "$dir/bin/python" -c "import importlib.metadata as m, sys; sys.exit(m.version('apache-airflow') != '$version')"
  touch "$marker"
  echo "airflow $version: installed in $dir in $((SECONDS - start)) s"
}

build_venv "$AIRFLOW3_VENV" 3.3.2 &
pid3=$!
build_venv "$AIRFLOW2_VENV" 2.10.5 &
pid2=$!
rc=0
wait "$pid3" || rc=1
wait "$pid2" || rc=1
exit "$rc"

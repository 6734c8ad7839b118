#!/usr/bin/env bash
# The whole benchmark in one command: the grid (methods x label splits x seeds of a profile), then the
# profile's ablations, then the reports (reports/report.md + report.pdf).
#   bash run_all.sh                       # default profile: embedded dataset, this machine
#   bash run_all.sh --profile smoke       # the same grid, tiny, in minutes
#   bash run_all.sh --help                # every option
# Sets up .venv on first use (scripts/ensure_env.sh). Rerunning skips finished cells and resumes interrupted ones.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

# --help needs only the standard library: answer it without (re)installing anything when a venv exists.
for arg in "$@"; do
  if [[ "$arg" == "-h" || "$arg" == "--help" ]] && [[ -x "${BENCH_VENV:-$REPO/.venv}/bin/python" ]]; then
    PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}" exec "${BENCH_VENV:-$REPO/.venv}/bin/python" -m benchmark.grid --help
  fi
done

source "$REPO/scripts/ensure_env.sh"
# Not `cd "$REPO"`: relative --data-root / --results-dir stay relative to where the user is.
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
exec "$PY" -m benchmark.grid "$@"

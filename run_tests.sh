#!/usr/bin/env bash
# The test command: sets up .venv (idempotent) and runs the fast test suite on CPU.
# Extra arguments go to pytest, e.g. `bash run_tests.sh -m slow` for the long tests.
set -euo pipefail
cd "$(dirname "$0")"
source scripts/ensure_env.sh --test
export CUDA_VISIBLE_DEVICES="${CUDA_VISIBLE_DEVICES-}" OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
exec "$PY" -m pytest "$@"

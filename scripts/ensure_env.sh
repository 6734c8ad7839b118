#!/usr/bin/env bash
# Create or refresh .venv so that it holds exactly what requirements*.txt ask for.
# Idempotent and quick when nothing changed: a stamp holds the hash of the requirement files.
# Usage: source scripts/ensure_env.sh [--test]   (then $PY is the venv's python)
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${BENCH_VENV:-$REPO/.venv}"
files=("$REPO/requirements.txt")
if [[ "${1:-}" == "--test" ]]; then files+=("$REPO/requirements-test.txt"); fi
stamp="$VENV/.requirements.$(basename "${files[-1]}" .txt).sha256"
want="$(cat "${files[@]}" | sha256sum | cut -d' ' -f1)"
if [[ ! -x "$VENV/bin/python" ]]; then
  echo "[setup] creating $VENV" >&2
  python3 -m venv "$VENV"
fi
if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$want" ]]; then
  echo "[setup] installing requirements into $VENV (first time: several minutes, torch is large)" >&2
  "$VENV/bin/python" -m pip install -q --upgrade pip >&2
  args=(); for f in "${files[@]}"; do args+=(-r "$f"); done
  "$VENV/bin/python" -m pip install -q "${args[@]}" >&2
  echo "$want" > "$stamp"
fi
PY="$VENV/bin/python"
export PY

#!/usr/bin/env bash
# The CPU cost of the default grid's cells, this checkout against another, interleaved:
#   bash scripts/grid_ab.sh OTHER_CHECKOUT [ROUNDS=3] [key=value ...]
# Each round trains one seed of every method at 1_128 (the default profile, two cells side by side, no
# ablations, references or reports) in both checkouts, in an order that rotates, into fresh folders under
# $AB_DIR (default /tmp/grid_ab), and prints each run's CPU seconds over all its processes (scripts/tree_cpu.py)
# and the ratio this / other per round. Both run under the same pinned numerics (AVX2). Use the same venv.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OTHER="$(cd "${1:?usage: bash scripts/grid_ab.sh OTHER_CHECKOUT [ROUNDS] [key=value ...]}" && pwd)"
ROUNDS="${2:-3}"
shift $(( $# >= 2 ? 2 : 1 ))
PY="${PYTHON:-$HERE/.venv/bin/python}"
AB_DIR="${AB_DIR:-/tmp/grid_ab}"
export ONEDNN_MAX_CPU_ISA=AVX2 MKL_CBWR=AVX2 ATEN_CPU_CAPABILITY=avx2
CELLS=(--methods supervised,fixmatch,unimatch,s4mim,maskmatch --splits 1_128 --seeds 1 --no-ablations --no-report
       --jobs 2 "grid.references=[]" "$@")
runner_of() { [ -d "$1/benchmark/grid" ] && echo benchmark.grid || echo benchmark.runner; }   # before the #27 layout
cpu_of() {   # checkout round -> CPU seconds
  (cd "$1" && PYTHONPATH="$1" "$PY" "$HERE/scripts/tree_cpu.py" "$PY" -m "$(runner_of "$1")" "${CELLS[@]}" \
     --results-dir "$AB_DIR/$(basename "$1")-$2/r$3" 2>&1 >/dev/null | sed -n 's/^TREE .*cpu_s=\([0-9.]*\).*/\1/p')
}
rm -rf "$AB_DIR"
for tree in "$OTHER" "$HERE"; do   # warm-up, not counted: each checkout generates its data here
  (cd "$tree" && PYTHONPATH="$tree" "$PY" -m "$(runner_of "$tree")" "${CELLS[@]}" train.iters=2 \
     --results-dir "$AB_DIR/warm-$(basename "$tree")" >/dev/null 2>&1)
done
for r in $(seq 1 "$ROUNDS"); do
  if (( r % 2 )); then a=$(cpu_of "$OTHER" other "$r"); b=$(cpu_of "$HERE" this "$r")
  else b=$(cpu_of "$HERE" this "$r"); a=$(cpu_of "$OTHER" other "$r"); fi
  echo "round $r: other ${a} CPU s, this ${b} CPU s, this/other $(python3 -c "print(f'{$b / $a:.3f}')")"
done

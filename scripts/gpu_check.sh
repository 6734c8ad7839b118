#!/usr/bin/env bash
# Throughput and numerics of this suite on one GPU: step time and MFU of the pascal recipe per method and
# variant, bf16 vs fp32 agreement, 2-process NCCL DDP (with 2+ GPUs) and the data pipeline, in one table.
# `--cpu` runs the tiny version (CI); `--help` lists the options. How long it takes: README.md.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/ensure_env.sh
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" TQDM_DISABLE="${TQDM_DISABLE:-1}"
exec "$PY" -m benchmark.diagnostics.gpu_check "$@"

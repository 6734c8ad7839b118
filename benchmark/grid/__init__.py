"""The grid: which cells exist, each cell planned once, run locally or on Slurm (or reused), recorded.

`python -m benchmark.grid` (what `run_all.sh` runs) is the runner (runner.py).
"""

"""`python -m benchmark.grid` (what `run_all.sh` runs): the grid runner, benchmark/grid/runner.py."""
import sys

from benchmark.cli import run_main
from benchmark.grid.runner import build_parser, main

build_parser().parse_intermixed_args(sys.argv[1:])   # --help and bad flags answered before torch is imported
run_main(lambda: main(sys.argv[1:]))

"""`python -m benchmark.grid` (what `run_all.sh` runs): the grid runner, benchmark/grid/runner.py."""
import sys

from benchmark.grid.arguments import build_parser

build_parser().parse_intermixed_args(sys.argv[1:])   # --help and bad flags answered before torch is imported

from benchmark.errors import run_main   # noqa: E402
from benchmark.grid.runner import main   # noqa: E402

run_main(lambda: main(sys.argv[1:]))

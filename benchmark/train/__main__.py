"""`python -m benchmark.train`: one training run, benchmark/train/command.py."""
import sys

from benchmark.errors import run_main
from benchmark.train.command import main

run_main(lambda: main(sys.argv[1:]))

"""Config, model, the one training loop, evaluation, runner, ablations and reports."""
# Before anything imports torch: CPU numerics pinned by default (benchmark/numerics.py says why and how a run
# opts out with train.cpu_numerics=native).
from benchmark.numerics import pin_environment as _pin_environment

_pin_environment("pinned")

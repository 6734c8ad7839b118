"""Training one run: its config, data, model, the one training loop, evaluation and the run folder's records.

`python -m benchmark.train` is the train command (command.py).
"""

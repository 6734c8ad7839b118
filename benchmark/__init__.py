"""Config, model, the one training loop, evaluation, runner, ablations and reports."""

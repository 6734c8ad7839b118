"""Speed options of the trainer: channels_last and torch.compile train the same losses as the plain path."""
from __future__ import annotations

import pytest
import torch

from benchmark.train.config import resolve
from benchmark.train.data_plan import Streams
from benchmark.train.trainer import Trainer

STEPS = 3
# Same arithmetic in another memory layout / fused kernels: float32 sums in another order. On the first step
# (same weights, same batch) the losses agree to ~1e-6 relative; SGD on batch-2 BatchNorm then amplifies the
# rounding about tenfold per step (measured on supervised: 1e-6, 1e-5, 6e-4 relative at steps 1-3), and the
# 0.95 confidence threshold can flip a few pseudo-labelled pixels on UniMatch's unlabeled terms (6% at step 3
# on the tiny v2 scenes). The strict claim is the first step; later steps only must stay on the same path.
FIRST_STEP_RTOL, LATER_RTOL = 1e-5, 0.1


def assert_same_losses(plain, other):
    assert plain[0].keys() == other[0].keys() and len(plain) == len(other) == STEPS
    for step, (a, b) in enumerate(zip(plain, other)):
        rel = FIRST_STEP_RTOL if step == 0 else LATER_RTOL
        for name in a:
            assert b[name] == pytest.approx(a[name], rel=rel, abs=1e-6), (step, name)


def losses(tiny_data, tmp_path, method, extra=()):
    cfg = resolve(profile="smoke", method=method, overrides=[
        f"data.root={tiny_data}", f"output.results_dir={tmp_path}",
        "output.save_checkpoint=false", *extra])
    trainer = Trainer(cfg, progress=False)
    trainer.setup()
    streams = Streams(cfg, trainer.plan, trainer.method.needs(), trainer.labeled_batch, 0)
    trainer.model.train()
    records = [trainer.train_step(streams, step, STEPS) for step in range(STEPS)]
    return trainer, [{k: v for k, v in r.items() if k.startswith("loss")} for r in records]


@pytest.mark.parametrize("method", ["supervised", "unimatch"])
def test_channels_last_gives_the_plain_losses(method, tiny_data, tmp_path):
    _, plain = losses(tiny_data, tmp_path / "plain", method)
    trainer, nhwc = losses(tiny_data, tmp_path / "nhwc", method, ["train.channels_last=true"])
    conv = next(m for m in trainer.model.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size[0] > 1)
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)   # the option took effect
    assert_same_losses(plain, nhwc)


@pytest.mark.slow   # inductor compiles forward and backward on CPU: about a minute on one thread
def test_compile_gives_the_plain_losses(tiny_data, tmp_path):
    import torch._inductor.config as inductor
    inductor.fallback_random = True     # dropout draws as eager's, so UniMatch's feature perturbation matches
    _, plain = losses(tiny_data, tmp_path / "plain", "fixmatch")
    _, compiled = losses(tiny_data, tmp_path / "compiled", "fixmatch", ["train.compile=true"])
    assert_same_losses(plain, compiled)


def test_speed_options_leave_the_recipe_hash_alone():
    base = resolve(profile="smoke", method="supervised")
    fast = resolve(profile="smoke", method="supervised", overrides=["train.channels_last=true", "train.compile=true"])
    assert fast.train.channels_last and fast.train.compile and fast.hash() == base.hash()

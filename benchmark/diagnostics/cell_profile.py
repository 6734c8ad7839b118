"""Where the wall time of one training cell goes: `python -m benchmark.diagnostics.steptime --profile-cell`.

    python -m benchmark.diagnostics.steptime --profile-cell [--methods NAME,NAME] [--profile default]
                                 [--split 1_128] [--seed 0] [--pstats DIR] [key=value ...]

Each method (by default the semi-supervised baselines: `methods.registry.semi_supervised_baselines()`) is
one fresh `python -m benchmark.diagnostics.steptime --profile-cell --one METHOD` process that trains a real
cell (`Trainer.fit`, checkpoints and qualitative saves included) into a scratch folder. The parent times the
whole process; the child times named phases with CPU-time wrappers around the pieces of the run (decoding,
augmentation, model forwards, backward, optimizer, evaluation, checkpoint and qualitative writes). A phase
entered inside another is charged to the inner one and shown under its parent ("evaluation > decode"), so the
rows add up to the process's CPU time (the cell's core-seconds; wall time is shown beside it); what no wrapper
covers is the parent's "(rest)". `--pstats DIR` also writes the child's cProfile statistics
(`DIR/<method>.pstats`, for `python -m pstats` or snakeviz). Nothing is written to results/.
"""
from __future__ import annotations

import argparse
import contextlib
import cProfile
import functools
import json
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import torch
from tabulate import tabulate

from datasets.io import atomic_write_json
from benchmark.train.config import resolve
from methods import registry

MARKER = "CELLPROFILE "
# CPU time, not wall: a cell runs on one thread, and CPU seconds are what the grid's budget is made of; they
# also hold still on a machine shared with other work, where wall time does not.
clock = time.process_time


class PhaseTimer:
    """Exclusive wall time per phase path: time spent in a nested phase is not charged to its parent."""

    def __init__(self):
        self.seconds: dict[tuple[str, ...], float] = defaultdict(float)
        self.calls: dict[tuple[str, ...], int] = defaultdict(int)
        self._stack: list[str] = []
        self._patched: list[tuple[object, str, object]] = []
        self._since = clock()

    def _charge(self) -> None:
        now = clock()
        self.seconds[tuple(self._stack)] += now - self._since
        self._since = now

    @contextlib.contextmanager
    def phase(self, name: str):
        self._charge()
        self._stack.append(name)
        self.calls[tuple(self._stack)] += 1
        try:
            yield
        finally:
            self._charge()
            self._stack.pop()

    def wrap(self, owner, attribute: str, name=None) -> None:
        """Replace `owner.attribute` by a timed version; `name` is a phase name or a function of the call."""
        original = owner.__dict__[attribute] if attribute in vars(owner) else getattr(owner, attribute)
        self._patched.append((owner, attribute, original))

        @functools.wraps(original)
        def timed(*args, **kwargs):
            label = name(*args, **kwargs) if callable(name) else (name or attribute)
            with self.phase(label):
                return original(*args, **kwargs)
        setattr(owner, attribute, timed)

    def restore(self) -> None:
        """Undo every `wrap`, last first."""
        while self._patched:
            owner, attribute, original = self._patched.pop()
            setattr(owner, attribute, original)

    def rows(self) -> list[dict]:
        self._charge()
        return [{"phase": " > ".join(path) or "(rest)", "seconds": s, "calls": self.calls.get(path, 0)}
                for path, s in self.seconds.items()]


def _forward_label(model, x, need_fp=False, **_):
    mode = "train" if model.training else "eval"
    return f"forward ({mode}, batch {x.shape[0]}{', need_fp' if need_fp else ''})"


def instrument(timer: PhaseTimer) -> None:
    """Wrap the pieces of a run by their public names (module globals are looked up at call time)."""
    # Not at module import, which would charge them to "process start": profile_one times their loading.
    from benchmark.train import data_plan, model, sample_images, trainer   # loaded in the "imports" phase
    from datasets import semi   # loaded in the "imports" phase too, by the trainer's data plan

    timer.wrap(semi, "read_image", "decode")
    timer.wrap(semi, "read_mask", "decode")
    for name in ("resize_long_side", "pad_and_crop", "hflip", "strong_color", "cutmix_box"):
        timer.wrap(semi, name, "augment")
    timer.wrap(semi, "normalize", "to tensor")
    timer.wrap(data_plan.Streams, "next", "train data")
    timer.wrap(model.DeepLabV3Plus, "forward", _forward_label)
    timer.wrap(torch.Tensor, "backward", "backward")
    timer.wrap(torch.optim.SGD, "step", "optimizer")
    cls = trainer.Trainer
    timer.wrap(cls, "__init__", "config, data plan, method")
    timer.wrap(cls, "setup", "setup (model, optimizer)")
    timer.wrap(cls, "train_step", "train step")
    timer.wrap(cls, "_evaluate", "evaluation")
    timer.wrap(cls, "_save_checkpoint", "checkpoint write")
    timer.wrap(sample_images.QualitativeSaver, "save", "qualitative write")


def profile_one(method: str, profile: str, split: str | None, seed: int, overrides: list[str],
                pstats_dir: str | None) -> dict:
    """Train one cell in this process and return its phase rows."""
    start_s = clock()   # CPU time of interpreter start and of importing steptime and this module
    timer = PhaseTimer()
    with timer.phase("imports"):
        from benchmark.train.trainer import Trainer   # timed: loading the trainer is one of the cell's costs
    instrument(timer)
    profiler = None
    with tempfile.TemporaryDirectory() as scratch, contextlib.ExitStack() as undo:
        undo.callback(timer.restore)
        with timer.phase("config resolve"):
            cfg = resolve(profile=profile, method=method, split=split, seed=seed,
                          overrides=[*overrides, f"output.results_dir={scratch}"])
        if pstats_dir:
            profiler = cProfile.Profile()
            profiler.enable()
        trainer = Trainer(cfg, progress=False)
        summary = trainer.fit(fresh=True)
        if profiler is not None:
            profiler.disable()
            Path(pstats_dir).mkdir(parents=True, exist_ok=True)
            profiler.dump_stats(str(Path(pstats_dir) / f"{method}.pstats"))
    return {"method": method, "rows": timer.rows(), "start_s": start_s,
            "iters": summary["iters"], "best_miou": summary["best"]["miou"]}


def run_cells(methods: list[str], profile: str, split: str | None, seed: int, overrides: list[str],
              pstats_dir: str | None) -> list[dict]:
    results = []
    for method in methods:
        cmd = [sys.executable, "-m", "benchmark.diagnostics.steptime", "--profile-cell", "--one", method,
               "--profile", profile, "--seed", str(seed), *(["--split", split] if split else []),
               *(["--pstats", pstats_dir] if pstats_dir else []), *overrides]
        start = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        wall = time.perf_counter() - start
        lines = [line for line in proc.stdout.splitlines() if line.startswith(MARKER)]
        if proc.returncode != 0 or not lines:
            tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
            raise RuntimeError(f"profiling {method} failed (exit {proc.returncode}): {tail}")
        result = json.loads(lines[-1][len(MARKER):])
        result["rows"].insert(0, {"phase": "process start", "seconds": result["start_s"], "calls": 1})
        result["wall_s"] = wall
        result["cpu_s"] = sum(row["seconds"] for row in result["rows"])
        results.append(result)
    return results


def table(results: list[dict]) -> str:
    blocks = []
    for result in results:
        total = result["cpu_s"]
        rows = sorted(result["rows"], key=lambda r: -r["seconds"])
        body = [[r["phase"], f"{r['seconds']:.2f}", f"{100 * r['seconds'] / total:.1f}%", r["calls"],
                 f"{1000 * r['seconds'] / result['iters']:.1f}"] for r in rows if r["seconds"] >= 0.005]
        blocks.append(f"{result['method']}: {total:.1f} CPU s ({result['wall_s']:.1f} s wall), {result['iters']} "
                      f"steps ({1000 * total / result['iters']:.1f} CPU ms per step all in), best mIoU "
                      f"{result['best_miou']:.2f}\n" + tabulate(
                          body, headers=["phase (inner phases charged to themselves)", "CPU s", "share", "calls",
                                         "ms/step"], tablefmt="github", disable_numparse=True))
    return "\n\n".join(blocks)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmark.diagnostics.steptime --profile-cell",
                                     description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", default=",".join(registry.semi_supervised_baselines()),
                        help="comma-separated methods")
    parser.add_argument("--profile", default="default")
    parser.add_argument("--split", help="label split (default: the dataset's lowest)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--pstats", metavar="DIR", help="also write each child's cProfile statistics here")
    parser.add_argument("--json", metavar="FILE", help="also write the rows as JSON")
    parser.add_argument("--one", metavar="METHOD", help=argparse.SUPPRESS)   # the child process
    parser.add_argument("overrides", nargs="*", metavar="key=value")
    args = parser.parse_intermixed_args(argv)
    if args.one:
        print(MARKER + json.dumps(profile_one(args.one, args.profile, args.split, args.seed, args.overrides,
                                              args.pstats)))
        return 0
    methods = [m for m in args.methods.split(",") if m]
    for name in methods:
        registry.get(name)   # unknown → one clear error before anything runs
    try:
        results = run_cells(methods, args.profile, args.split, args.seed, args.overrides, args.pstats)
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(table(results))
    if args.json:
        atomic_write_json(Path(args.json), results)
    return 0

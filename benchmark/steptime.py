"""Step time and peak memory of each method under one profile: the figures behind the cost targets.

    python -m benchmark.steptime [--methods supervised,fixmatch,...] [--profile default] [--steps 50]
                                 [--rounds 3] [key=value ...]

Each (round, method) is a fresh `python -m benchmark.steptime --one METHOD` process that builds the trainer of
a real run (same data streams, model, method and optimizer), runs `--warmup` steps, then times `--steps`
optimizer steps (data loading included, as in training). Methods alternate within a round, so slow drift of a
shared machine hits all of them alike; the table gives the median over rounds, the ratio to `supervised` and
to the method's base (UniMatch for S4MIM, `method.base` for MaskMatch), and the peak memory: the process's
peak RSS on CPU, `torch.cuda.max_memory_allocated` on a GPU. Nothing is written to results/.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

from benchmark.cli import run_main

DEFAULT_METHODS = ("supervised", "fixmatch", "unimatch", "s4mim", "maskmatch")
MARKER = "STEPTIME "


def measure_one(method: str, profile: str, overrides: list[str], warmup: int, steps: int) -> dict:
    """Times `steps` training steps of `method` after `warmup` ones, in this process."""
    import resource

    import torch

    from benchmark.config import resolve
    from benchmark.data import Streams
    from benchmark.trainer import Trainer

    with tempfile.TemporaryDirectory() as scratch:
        cfg = resolve(profile=profile, method=method,
                      overrides=[*overrides, f"output.results_dir={scratch}", "output.save_checkpoint=false"])
        trainer = Trainer(cfg, progress=False)
        trainer._setup()
        total = warmup + steps
        streams = Streams(cfg, trainer.plan, trainer.method.needs(), trainer.labeled_batch, 0)
        trainer.model.train()
        if trainer.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(trainer.device)
        for step in range(warmup):
            trainer._train_step(streams, step, total)
        if trainer.device.type == "cuda":
            torch.cuda.synchronize(trainer.device)
        start = time.perf_counter()
        for step in range(warmup, total):
            trainer._train_step(streams, step, total)
        if trainer.device.type == "cuda":
            torch.cuda.synchronize(trainer.device)
            memory = torch.cuda.max_memory_allocated(trainer.device) / 2**20
        else:
            memory = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024   # KiB on Linux
        return {"method": method, "step_s": (time.perf_counter() - start) / steps, "peak_memory_mb": memory,
                "device": str(trainer.device), "base": base_of(trainer.method),
                "images_per_step": trainer.labeled_batch + cfg.train.batch_size * len(
                    [v for v in ("unlabeled", "mix") if v in streams._iters])}


def base_of(method) -> str | None:
    """The method this one is built on, for the 'vs base' column (None for the baselines themselves)."""
    base = getattr(method.params, "base", None)
    if isinstance(base, str):
        return base
    from methods.registry import all_methods
    for parent in type(method).__mro__[1:]:
        if parent in all_methods().values():
            return parent.name
    return None


class ChildFailed(RuntimeError):
    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code


def run_rounds(methods: list[str], profile: str, overrides: list[str], warmup: int, steps: int,
               rounds: int) -> dict[str, list[dict]]:
    from tqdm import tqdm

    results: dict[str, list[dict]] = {m: [] for m in methods}
    env = dict(os.environ)
    with tqdm(total=rounds * len(methods), desc="step time", unit="run") as bar:
        for _ in range(rounds):
            for method in methods:
                bar.set_postfix_str(method)
                cmd = [sys.executable, "-m", "benchmark.steptime", "--one", method, "--profile", profile,
                       "--warmup", str(warmup), "--steps", str(steps), *overrides]
                proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
                lines = [l for l in proc.stdout.splitlines() if l.startswith(MARKER)]
                if proc.returncode != 0 or not lines:
                    tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
                    raise ChildFailed(proc.returncode, f"timing {method} failed (exit {proc.returncode}): {tail}")
                results[method].append(json.loads(lines[-1][len(MARKER):]))
                bar.update(1)
    return results


def table(results: dict[str, list[dict]]) -> str:
    from tabulate import tabulate

    median = {m: statistics.median(r["step_s"] for r in runs) for m, runs in results.items() if runs}
    rows = []
    for method, runs in results.items():
        step = median[method]
        base = runs[0]["base"]
        vs_sup = f"{step / median['supervised']:.2f}x" if "supervised" in median else "n/a"
        vs_base = f"{step / median[base]:.2f}x ({base})" if base in median else ("n/a" if base else "")
        rows.append([method, f"{1000 * step:.1f}", f"{runs[0]['images_per_step'] / step:.0f}", vs_sup, vs_base,
                     f"{max(r['peak_memory_mb'] for r in runs):.0f}"])
    device = next(iter(results.values()))[0]["device"]
    rounds = max(len(r) for r in results.values())
    return (f"device {device}; median of {rounds} round(s)\n" + tabulate(
        rows, headers=["method", "ms/step", "images/s", "vs supervised", "vs base", "peak MB"], tablefmt="github",
        disable_numparse=True))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmark.steptime", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", default=",".join(DEFAULT_METHODS), help="comma-separated methods")
    parser.add_argument("--profile", default="default")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--one", metavar="METHOD", help=argparse.SUPPRESS)   # the child process
    parser.add_argument("overrides", nargs="*", metavar="key=value")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.rounds < 1 or args.warmup < 0:
        parser.error("--steps and --rounds must be at least 1, --warmup at least 0")
    if args.one:
        print(MARKER + json.dumps(measure_one(args.one, args.profile, args.overrides, args.warmup, args.steps)))
        return 0
    from methods import registry
    methods = [m for m in args.methods.split(",") if m]
    for name in methods:
        registry.get(name)   # unknown → one clear error before anything runs
    try:
        results = run_rounds(methods, args.profile, args.overrides, args.warmup, args.steps, args.rounds)
    except ChildFailed as exc:   # its last line says why; bad input there (exit 2) is bad input here
        print(f"error: {exc}", file=sys.stderr)
        return 2 if exc.code == 2 else 1
    print(table(results))
    return 0


if __name__ == "__main__":
    run_main(lambda: main(sys.argv[1:]))

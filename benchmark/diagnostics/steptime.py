"""Step time, peak memory, FLOP rate and MFU of each method under one profile: the figures behind the cost targets.

    python -m benchmark.diagnostics.steptime [--methods NAME,NAME,...] [--profile default] [--steps 50]
                                 [--rounds 3] [--variants fp32,bf16,bf16+channels_last,bf16+compile]
                                 [--peak-tflops N] [key=value ...]
    python -m benchmark.diagnostics.steptime --data ...           the data pipeline's images/s per worker
                                                                  (benchmark.diagnostics.datapipe_speed)
    python -m benchmark.diagnostics.steptime --profile-cell ...   where one whole cell's wall time goes
                                                                  (benchmark.diagnostics.cell_profile)
    python -m benchmark.diagnostics.steptime --ops 25 ...         the most expensive operators of a step
                                                                  (torch.profiler, self CPU time)

Each (round, method, variant) is a fresh `python -m benchmark.diagnostics.steptime --one METHOD` process that
builds the trainer of a real run (same data streams, model, method and optimizer), runs `--warmup` steps (where
torch.compile compiles), then times `--steps` optimizer steps (data loading included, as in training) and
counts the FLOPs of one more step with FlopCounterMode. Cells alternate within a round, so slow drift of a
shared machine hits all of them alike; the table gives the median over rounds, the ratio to the lower bound
(`methods.registry.lower_bound()`, the first `significance_baseline` method), to the method's declared base
(`Method.base`, or the `method.base` parameter of a method that takes one) and to the first variant, the peak
memory (the process's peak RSS on CPU, `torch.cuda.max_memory_allocated` on a GPU), TFLOP/s and MFU
(benchmark.diagnostics.flops).
A variant that fails is reported in its row; the others still run. Nothing is written to results/.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from tabulate import tabulate
from tqdm import tqdm

from benchmark.errors import run_main
from benchmark.diagnostics import cell_profile, flops
from datasets.io import atomic_write_json
from benchmark.train.config import resolve
from methods import registry

MARKER = "STEPTIME "
# Parts of a variant; `default` is the profile as configured (and as the overrides leave it).
VARIANTS = {"default": [], "fp32": ['train.amp="off"'], "bf16": ["train.amp=bf16"],
            "channels_last": ["train.channels_last=true"], "compile": ["train.compile=true"],
            # the cost of CPU numerics (benchmark/numerics.py): `--variants pinned,native`, `pinned,portable`
            "pinned": ["train.cpu_numerics=pinned"], "native": ["train.cpu_numerics=native"],
            "portable": ["train.cpu_numerics=portable"]}


def measure_one(method: str, profile: str, overrides: list[str], warmup: int, steps: int) -> dict:
    """Times `steps` training steps of `method` after `warmup` ones, in this process, then counts the FLOPs of
    one more step (eager models only: a compiled graph hides its ops from the counter)."""
    with training(method, profile, overrides) as (cfg, trainer, streams):
        device = trainer.device
        total = warmup + steps + 1
        sync = torch.cuda.synchronize if device.type == "cuda" else (lambda _device: None)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        for step in range(warmup):
            trainer.train_step(streams, step, total)
        sync(device)
        start = time.perf_counter()
        for step in range(warmup, warmup + steps):
            trainer.train_step(streams, step, total)
        sync(device)
        step_s = (time.perf_counter() - start) / steps
        if device.type == "cuda":
            memory = torch.cuda.max_memory_allocated(device) / 2**20
        else:
            memory = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024   # KiB on Linux
        flops_per_step = None if cfg.train.compile else flops.count_flops(
            lambda: trainer.train_step(streams, total - 1, total))
        autocast_bf16 = trainer.precision() == "bf16"
        return {"method": method, "step_s": step_s, "peak_memory_mb": memory, "device": str(device),
                "device_name": flops.device_name(device), "precision": flops.precision_of(device, autocast_bf16),
                "flops_per_step": flops_per_step, "base": trainer.method.resolved_base() or None,
                "images_per_step": streams.images_per_step}


@contextlib.contextmanager
def training(method: str, profile: str, overrides: list[str]):
    """(config, trainer, streams) of a real run of `method`, set up in a scratch folder, model in train mode."""
    # Not at module import: `--profile-cell` children run this module too and time this load as a phase.
    from benchmark.train.trainer import Trainer

    with tempfile.TemporaryDirectory() as scratch:
        cfg = resolve(profile=profile, method=method,
                      overrides=[*overrides, f"output.results_dir={scratch}", "output.save_checkpoint=false"])
        trainer = Trainer(cfg, progress=False)
        trainer.setup()
        streams = trainer.streams(start=0)
        trainer.model.train()
        yield cfg, trainer, streams


def op_table(method: str, profile: str, overrides: list[str], warmup: int, steps: int, rows: int) -> str:
    """torch.profiler's `rows` most expensive operators (self CPU time) over `steps` training steps of `method`
    after `warmup` ones, data loading included (it shows as the DataLoader's `enumerate` rows)."""
    from torch.profiler import ProfilerActivity, profile as torch_profile   # only for --ops

    with training(method, profile, overrides) as (_cfg, trainer, streams):
        total = warmup + steps
        for step in range(warmup):
            trainer.train_step(streams, step, total)
        with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
            for step in range(warmup, total):
                trainer.train_step(streams, step, total)
    return f"{method}: {steps} steps\n" + prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows)


class ChildFailed(RuntimeError):
    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code


def variant_overrides(variant: str) -> list[str]:
    """`bf16+channels_last` → the overrides of its parts, applied on top of the profile and the user's."""
    parts = [part for part in variant.split("+") if part]
    unknown = [part for part in parts if part not in VARIANTS]
    if unknown or not parts:
        raise ChildFailed(2, f"unknown variant {variant!r}; known parts, joined with '+': {', '.join(VARIANTS)}")
    return [override for part in parts for override in VARIANTS[part]]


def run_rounds(methods: list[str], profile: str, overrides: list[str], warmup: int, steps: int,
               rounds: int, variants: tuple[str, ...] = ("default",)) -> dict[tuple[str, str], list[dict]]:
    """Every (method, variant) `rounds` times, each in a fresh process. A variant that fails (torch.compile
    without a compiler, bf16 without kernels) is recorded as failed and the others go on; bad input stops."""
    cells = [(method, variant) for method in methods for variant in variants]
    results: dict[tuple[str, str], list[dict]] = {cell: [] for cell in cells}
    extra = {variant: variant_overrides(variant) for variant in variants}
    with tqdm(total=rounds * len(cells), desc="step time", unit="run") as bar:
        for _ in range(rounds):
            for method, variant in cells:
                bar.set_postfix_str(f"{method} {variant}")
                cmd = [sys.executable, "-m", "benchmark.diagnostics.steptime", "--one", method, "--profile", profile,
                       "--warmup", str(warmup), "--steps", str(steps), *overrides, *extra[variant]]
                proc = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ))
                lines = [l for l in proc.stdout.splitlines() if l.startswith(MARKER)]
                bar.update(1)
                if proc.returncode == 0 and lines:
                    results[(method, variant)].append({**json.loads(lines[-1][len(MARKER):]), "variant": variant})
                    continue
                tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
                if proc.returncode == 2 or len(cells) == 1:
                    raise ChildFailed(proc.returncode, f"timing {method} ({variant}) failed "
                                                       f"(exit {proc.returncode}): {tail}")
                results[(method, variant)].append({"method": method, "variant": variant, "error": tail})
    return results


def summarize(results: dict[tuple[str, str], list[dict]], peak: dict[str, float] | None = None) -> list[dict]:
    """One row per (method, variant): medians over rounds, ratios, FLOP rate and MFU."""
    ok = {cell: [r for r in runs if "error" not in r] for cell, runs in results.items()}
    median = {cell: statistics.median(r["step_s"] for r in runs) for cell, runs in ok.items() if runs}
    first_variant = next(iter(results))[1]
    # The arithmetic of a step does not depend on the variant: a compiled run takes its method's eager count.
    method_flops = {method: r["flops_per_step"] for (method, _), runs in ok.items() for r in runs
                    if r.get("flops_per_step")}
    rows, lowest = [], registry.lower_bound()
    for (method, variant), runs in results.items():
        if (method, variant) not in median:
            rows.append({"method": method, "variant": variant, "error": runs[-1]["error"]})
            continue
        step, run = median[(method, variant)], ok[(method, variant)][0]
        ratio = lambda other: step / median[other] if other in median else None   # noqa: E731
        peak_tflops = flops.peak_tflops(run["device_name"], run["precision"], peak)
        flops_per_step = method_flops.get(method)
        rows.append({"method": method, "variant": variant, "step_s": step,
                     "images_per_s": run["images_per_step"] / step,
                     "vs_lower_bound": ratio((lowest, variant)), "base": run["base"],
                     "vs_base": ratio((run["base"], variant)) if run["base"] else None,
                     "vs_first_variant": ratio((method, first_variant)), "peak_memory_mb": max(
                         r["peak_memory_mb"] for r in ok[(method, variant)]), "precision": run["precision"],
                     "tflops": flops_per_step / step / 1e12 if flops_per_step else None,
                     "mfu": flops.mfu(flops_per_step, step, peak_tflops), "device": run["device"],
                     "device_name": run["device_name"], "rounds": len(ok[(method, variant)])})
    return rows


def table(results: dict[tuple[str, str], list[dict]], peak: dict[str, float] | None = None) -> str:
    rows = summarize(results, peak)
    first_variant = next(iter(results))[1]
    times = lambda x: "n/a" if x is None else f"{x:.2f}x"   # noqa: E731
    body = []
    for row in rows:
        if "error" in row:
            body.append([row["method"], row["variant"], "failed: " + row["error"][:60]] + [""] * 8)
            continue
        vs_base = f"{times(row['vs_base'])} ({row['base']})" if row["base"] else ""
        body.append([row["method"], row["variant"], f"{1000 * row['step_s']:.1f}", f"{row['images_per_s']:.1f}",
                     times(row["vs_lower_bound"]), vs_base, times(row["vs_first_variant"]),
                     f"{row['peak_memory_mb']:.0f}",
                     "n/a" if row["tflops"] is None else f"{row['tflops']:.3g}", row["precision"],
                     "" if row["mfu"] is None else f"{100 * row['mfu']:.1f}%"])
    good = [row for row in rows if "error" not in row]
    where = f"device {good[0]['device']} ({good[0]['device_name']}); " if good else ""
    rounds = max((row["rounds"] for row in good), default=0)
    return (f"{where}median of {rounds} round(s); MFU against the dense peak of the precision, blank where "
            f"no peak is known (--peak-tflops sets one)\n" + tabulate(
                body, headers=["method", "variant", "ms/step", "images/s", f"vs {registry.lower_bound()}",
                               "vs base", f"vs {first_variant}", "peak MB", "TFLOP/s", "precision", "MFU"],
                tablefmt="github", disable_numparse=True))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmark.diagnostics.steptime", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", help="comma-separated methods (default: the suite's own)")
    parser.add_argument("--profile", default="default")
    parser.add_argument("--variants", default="default",
                        help=f"comma-separated variants, each parts joined by '+' from {', '.join(VARIANTS)}; "
                             f"ratios are to the first (e.g. fp32,bf16,bf16+channels_last,bf16+compile)")
    parser.add_argument("--peak-tflops", default="", metavar="TFLOPS",
                        help="dense peak for MFU instead of the built-in table: a number, or bf16=989,tf32=495")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", metavar="FILE", help="also write the rows as JSON (for scripts)")
    parser.add_argument("--ops", type=int, default=0, metavar="N",
                        help="instead: torch.profiler's N most expensive operators (self CPU time) over --steps "
                             "steps of each method, in this process")
    parser.add_argument("--one", metavar="METHOD", help=argparse.SUPPRESS)   # the child process
    parser.add_argument("overrides", nargs="*", metavar="key=value")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--data" in argv:   # the data pipeline's speed: a sibling tool with its own options
        # Not at module import: it loads the data stack, which `--profile-cell` children time as a phase.
        from benchmark.diagnostics import datapipe_speed
        return datapipe_speed.main([arg for arg in argv if arg != "--data"])
    if "--profile-cell" in argv:   # where one whole cell's wall time goes: a sibling tool too
        return cell_profile.main([arg for arg in argv if arg != "--profile-cell"])
    parser = build_parser()
    args = parser.parse_intermixed_args(argv)
    if args.steps < 1 or args.rounds < 1 or args.warmup < 0:
        parser.error("--steps and --rounds must be at least 1, --warmup at least 0")
    if args.one:
        print(MARKER + json.dumps(measure_one(args.one, args.profile, args.overrides, args.warmup, args.steps)))
        return 0
    methods = [m for m in args.methods.split(",") if m] if args.methods else list(registry.builtin_names())
    variants = tuple(v for v in args.variants.split(",") if v)
    for name in methods:
        registry.get(name)   # unknown → one clear error before anything runs
    if args.ops:
        for name in methods:
            print(op_table(name, args.profile, args.overrides, args.warmup, args.steps, args.ops))
        return 0
    try:
        peak = flops.parse_peak(args.peak_tflops) if args.peak_tflops else None
        results = run_rounds(methods, args.profile, args.overrides, args.warmup, args.steps, args.rounds, variants)
    except ValueError as exc:
        parser.error(str(exc))
    except ChildFailed as exc:   # its last line says why; bad input there (exit 2) is bad input here
        print(f"error: {exc}", file=sys.stderr)
        return 2 if exc.code == 2 else 1
    print(table(results, peak))
    if args.json:
        atomic_write_json(Path(args.json), summarize(results, peak))
    return 0


if __name__ == "__main__":
    run_main(lambda: main(sys.argv[1:]))

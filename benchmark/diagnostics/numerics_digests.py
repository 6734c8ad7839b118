"""Bits of single operations and of a short cell under each CPU numerics setting, kept per CPU model, so that a
host of another vendor can compare them operation by operation.

    python -m benchmark.diagnostics.numerics_digests [--settings NAME,...] [--cell] [--no-record]
    python -m benchmark.diagnostics.numerics_digests --pin-reference     (maintainers: re-record the reference)

Each setting runs in a fresh interpreter (the libraries read their settings at their first use) and digests
(sha256) the outputs and gradients of: a 3x3 convolution like the small ResNet's, the same at the evaluation's
batch of 64, a depthwise 5x5 like EfficientNet-Lite0's (also channels_last, the Lite0 regime), a 1x1
convolution, an MKL GEMM (torch.mm) and a training-mode BatchNorm, on fixed inputs made from integers (no
random generator enters). Each convolution also names the kernel family torch picked for it. `--cell` also
trains the reference cell (below) under pinned and portable and digests its weights.

The rows are merged into benchmark/data/numerics_digests.json under this host's CPU model (other models'
rows are kept), and the output lists every digest another recorded CPU model gives differently. On one host
this shows which library computes each operation's bits; only a second CPU model shows which of them differ
across models.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F
from tabulate import tabulate

from benchmark.errors import run_main
from benchmark.diagnostics.isa_check import NATIVE, run_cell
from benchmark.numerics import cpuinfo, apply, cpu_model, host_isa, mkl_branch
from datasets import REPO_ROOT
from datasets.io import atomic_write_json
from methods import registry

DIGESTS_FILE = REPO_ROOT / "benchmark" / "data" / "numerics_digests.json"
REFERENCE_FILE = REPO_ROOT / "benchmark" / "data" / "portable_reference.json"
MARKER = "DIGESTS "
# name: (train.cpu_numerics, MKL_CBWR put in place of the mode's, oneDNN and NNPACK on)
SETTINGS = {
    "pinned": ("pinned", None, True),
    "pinned+onednn_off": ("pinned", None, False),
    "pinned+mkl_compatible": ("pinned", "COMPATIBLE", True),
    # What MKL does with MKL_CBWR=AVX2 on a CPU that is not Intel's: its own dispatch (oneMKL's guide).
    "pinned+mkl_auto": ("pinned", "AUTO", True),
    "portable": ("portable", None, False),
}
# The reference cell: the default profile's lower bound (supervised) at 8 labels, seed 0, a few dozen steps.
REFERENCE_OVERRIDES = ("data.split=1_128", "train.seed=0", "train.iters=40", "eval.every=40", "train.threads=1")


def fixed(*shape: int, salt: int = 0) -> torch.Tensor:
    """Values in [-1, 1) from a multiplicative hash of the index: exact integer arithmetic, so every host
    starts from the same bits."""
    index = torch.arange(math.prod(shape), dtype=torch.int64) + salt * 1_000_003
    return ((index * 2654435761 + 12345) % 65536).to(torch.float32).div(32768).sub(1).reshape(shape)


def digest(tensor: torch.Tensor) -> str:
    return hashlib.sha256(tensor.detach().contiguous().numpy().tobytes()).hexdigest()[:12]


def conv_digests(x_shape, w_shape, groups: int = 1, backward: bool = True, channels_last: bool = False) -> dict:
    x, w = fixed(*x_shape, salt=1), fixed(*w_shape, salt=2).mul(0.125)
    if channels_last:
        x, w = x.to(memory_format=torch.channels_last), w.to(memory_format=torch.channels_last)
    x.requires_grad_(backward)
    w.requires_grad_(backward)
    padding = w_shape[-1] // 2
    try:   # which kernel family torch picks (private, so only shown where this torch has it)
        backend = str(torch._C._select_conv_backend(x, w, None, [1, 1], [padding] * 2, [1, 1], False, [0, 0],
                                                    groups, None)).split(".")[-1]
    except (AttributeError, RuntimeError, TypeError):
        backend = "?"
    y = F.conv2d(x, w, padding=padding, groups=groups)
    out = {"backend": backend, "forward": digest(y)}
    if backward:
        y.backward(fixed(*y.shape, salt=3))
        out.update(grad_input=digest(x.grad), grad_weight=digest(w.grad))
    return out


def batchnorm_digests(shape=(4, 32, 16, 16)) -> dict:
    x = fixed(*shape, salt=4).requires_grad_()
    weight, bias = fixed(shape[1], salt=5).requires_grad_(), fixed(shape[1], salt=6).requires_grad_()
    y = F.batch_norm(x, torch.zeros(shape[1]), torch.ones(shape[1]), weight, bias, training=True)
    y.backward(fixed(*shape, salt=7))
    return {"forward": digest(y), "grad_input": digest(x.grad), "grad_weight": digest(weight.grad)}


def op_digests() -> dict[str, dict]:
    return {"conv3x3": conv_digests((4, 32, 16, 16), (32, 32, 3, 3)),
            "conv3x3_eval_batch64": conv_digests((64, 32, 16, 16), (32, 32, 3, 3), backward=False),
            "depthwise5x5": conv_digests((4, 48, 16, 16), (48, 1, 5, 5), groups=48),
            "depthwise5x5_channels_last": conv_digests((4, 48, 16, 16), (48, 1, 5, 5), groups=48,
                                                       channels_last=True),
            "conv1x1": conv_digests((4, 64, 16, 16), (64, 64, 1, 1)),
            "mm": {"forward": digest(torch.mm(fixed(256, 192, salt=8), fixed(192, 128, salt=9)))},
            "batchnorm": batchnorm_digests()}


def one_setting(name: str) -> dict:
    """This process's digests under setting `name`, with what MKL, ATen and oneDNN had in force."""
    mode, mkl_cbwr, onednn = SETTINGS[name]
    torch.set_num_threads(1)
    if mkl_cbwr is None:
        apply(mode, "cpu")   # exactly what a training process does
    else:   # the package import pinned the environment; MKL reads MKL_CBWR at its first call, still ahead
        os.environ["MKL_CBWR"] = mkl_cbwr
    torch.backends.mkldnn.enabled = onednn   # NNPACK as the mode left it: torch picks it at batch 16 without oneDNN
    ops = op_digests()
    return {"mkl_in_force": mkl_branch(), "aten_in_force": torch.backends.cpu.get_cpu_capability(),
            "onednn_enabled": torch.backends.mkldnn.enabled, "ops": ops}


def run_setting(name: str) -> dict:
    proc = subprocess.run([sys.executable, "-m", "benchmark.diagnostics.numerics_digests", "--one", name],
                          cwd=REPO_ROOT, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    lines = [line for line in proc.stdout.splitlines() if line.startswith(MARKER)]
    if proc.returncode or not lines:
        raise RuntimeError(f"setting {name} failed: {(proc.stderr.strip().splitlines() or ['no output'])[-1]}")
    return json.loads(lines[-1][len(MARKER):])


def host_key() -> str:
    """The CPU model, with its family and model numbers where /proc/cpuinfo has them: a virtual machine may name
    different CPUs alike ("Intel(R) Xeon(R) Processor")."""
    family, model = cpuinfo("cpu family"), cpuinfo("model\t")
    return cpu_model() + (f" (family {family}, model {model})" if family and model else "")


def host_facts() -> dict:
    return {"host_isa": host_isa(), "machine": platform.machine(), "vendor": cpuinfo("vendor_id"),
            "cache_size": cpuinfo("cache size"), "torch": torch.__version__, "mkl_auto_branch": mkl_branch(auto=True)}


def reference_cell(results: Path, mode: str = "portable", extra: tuple[str, ...] = ()) -> dict:
    """The reference cell trained under `mode` in a fresh `python -m benchmark.train`: best and last mIoU and the
    final weights' digest (isa_check's)."""
    row = run_cell(registry.lower_bound(), mode, NATIVE, results, [*REFERENCE_OVERRIDES, *extra])
    if "error" in row:
        raise RuntimeError(f"the reference cell failed under {mode}: {row['error']}")
    return {key: row[key] for key in ("weights", "best", "last")}


def flatten(ops: dict[str, dict]) -> dict[str, str]:
    """{"conv3x3.grad_weight": digest, ...}: every digest of a setting, the kernel names left out."""
    return {f"{op}.{part}": value for op, parts in ops.items() for part, value in parts.items() if part != "backend"}


def merge_record(key: str, entry: dict, path: Path = DIGESTS_FILE) -> dict:
    """Merges this host's `entry` into the file's record of CPU model `key` (settings and cells by name), keeps
    every other model's, writes atomically and returns the whole record."""
    recorded = json.loads(path.read_text()) if path.exists() else {}
    old = recorded.get(key, {})
    merged = {**old, **entry}
    for section in ("settings", "cell"):
        merged[section] = {**old.get(section, {}), **entry.get(section, {})}
    recorded[key] = merged
    atomic_write_json(path, dict(sorted(recorded.items())))
    return recorded


def differences(key: str, recorded: dict) -> list[str]:
    """One line per other CPU model and setting both recorded: the digests that differ, or that none does."""
    lines, mine = [], recorded[key]
    for other, theirs in recorded.items():
        if other == key:
            continue
        for name in sorted(set(mine.get("settings", {})) & set(theirs.get("settings", {}))):
            a, b = flatten(mine["settings"][name]["ops"]), flatten(theirs["settings"][name]["ops"])
            differ = sorted(part for part in a.keys() & b.keys() if a[part] != b[part])
            lines.append(f"vs {other}, {name}: " + (f"differ: {', '.join(differ)}" if differ else "all the same"))
        for mode in sorted(set(mine.get("cell", {})) & set(theirs.get("cell", {}))):
            same = mine["cell"][mode]["weights"] == theirs["cell"][mode]["weights"]
            lines.append(f"vs {other}, reference cell under {mode}: weights {'the same' if same else 'differ'}")
    return lines or ["no other CPU model recorded yet: run this command on one and compare"]


def table(settings: dict[str, dict]) -> str:
    """Digests per operation (rows) and setting (columns), each convolution with the kernels torch picked."""
    names = list(settings)
    rows = [[field] + [str(settings[n][field]) for n in names] for field in ("mkl_in_force", "onednn_enabled")]
    first = settings[names[0]]["ops"]
    for op in first:
        rows.append([f"{op} kernel"] + [settings[n]["ops"][op].get("backend", "") for n in names])
        rows += [[part] + [flatten(settings[n]["ops"])[part] for n in names] for part in flatten({op: first[op]})]
    return tabulate(rows, headers=["operation", *names], tablefmt="github", disable_numparse=True)


def pin_reference(path: Path = REFERENCE_FILE) -> dict:
    """Trains the reference cell under portable numerics and records its digest (maintainers, after any change
    that moves the default profile's bits: the profile, the generator, the model, the trainer)."""
    with tempfile.TemporaryDirectory(prefix="numerics_reference_") as tmp:
        cell = reference_cell(Path(tmp))
    entry = {"method": registry.lower_bound(), "overrides": list(REFERENCE_OVERRIDES), "numerics": "portable", **cell,
             "recorded_on": host_key()}
    atomic_write_json(path, entry)
    return entry


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmark.diagnostics.numerics_digests", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--settings", default=",".join(SETTINGS), help="comma-separated, from %(default)s")
    parser.add_argument("--cell", action="store_true", help="also train the reference cell under pinned and "
                                                            "portable (about a minute)")
    parser.add_argument("--no-record", action="store_true", help=f"do not write {DIGESTS_FILE.name}")
    parser.add_argument("--pin-reference", action="store_true",
                        help=f"only re-record the reference cell's portable digest in {REFERENCE_FILE.name}")
    parser.add_argument("--one", help=argparse.SUPPRESS)   # the child process of one setting
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.one:
        print(MARKER + json.dumps(one_setting(args.one)))
        return 0
    if args.pin_reference:
        print(json.dumps(pin_reference(), indent=1))
        return 0
    names = [name for name in args.settings.split(",") if name]
    unknown = [name for name in names if name not in SETTINGS]
    if unknown or not names:
        print(f"error: unknown setting(s) {', '.join(unknown) or '(none)'}; known: {', '.join(SETTINGS)}",
              file=sys.stderr)
        return 2
    entry = {**host_facts(), "settings": {name: run_setting(name) for name in names}}
    if args.cell:
        with tempfile.TemporaryDirectory(prefix="numerics_cells_") as tmp:
            entry["cell"] = {mode: reference_cell(Path(tmp), mode) for mode in ("pinned", "portable")}
    key = host_key()
    print(f"{key}: {entry['host_isa']}, MKL's own branch here {entry['mkl_auto_branch']}, torch {entry['torch']}")
    print(table(entry["settings"]))
    for mode, cell in entry.get("cell", {}).items():
        print(f"reference cell under {mode}: weights {cell['weights']}, best {cell['best']:.4f}")
    recorded = {key: entry} if args.no_record else merge_record(key, entry)
    print("\n".join(differences(key, recorded)))
    return 0


if __name__ == "__main__":
    run_main(main)

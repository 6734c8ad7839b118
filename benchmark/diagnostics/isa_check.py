"""One training cell under every oneDNN instruction-set cap this host allows, under each CPU numerics mode.

    python -m benchmark.diagnostics.isa_check [--method NAME] [--caps AVX2,AVX512_CORE] [--jobs 2] [key=value ...]

Each (numerics, cap) is a fresh `python -m benchmark.train` process whose environment caps oneDNN (and ATen, to
the matching width) as a host with that instruction set would be; the cap emulates the host. Under
`train.cpu_numerics=pinned` (and portable) every cap at or above AVX2 must give the same weights, bit for bit;
under `native` they differ wherever the libraries pick other kernels. Caps below AVX2 (hosts that cannot reach
the pin) are shown for completeness. The table gives the best and last mIoU and a digest of the final weights.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

from benchmark.errors import run_main
from benchmark.numerics import ISA_ORDERS, MODES, PINNED_ISA, REPLACED_VAR, host_isa
from datasets import REPO_ROOT
from methods import registry

# A host's oneDNN cap and the ATen capability such a host would have.
HOST_CAPS = {"SSE41": "default", "AVX": "default", "AVX2": "avx2", "AVX2_VNNI": "avx2",
             "AVX512_CORE": "avx512", "AVX512_CORE_VNNI": "avx512", "AVX512_CORE_BF16": "avx512"}
NATIVE = "native (no cap)"
PIN_INDEX = ISA_ORDERS["ONEDNN_MAX_CPU_ISA"].index(PINNED_ISA)


def caps_of_this_host() -> list[str]:
    best = {"avx512": "AVX512_CORE_BF16", "avx2": "AVX2_VNNI", "avx": "AVX"}.get(host_isa(), "SSE41")
    order = ISA_ORDERS["ONEDNN_MAX_CPU_ISA"]
    return [cap for cap in HOST_CAPS if order.index(cap) <= order.index(best)] + [NATIVE]


def weights_digest(checkpoint: Path) -> str:
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)["model"]
    digest = hashlib.sha256()
    for name in sorted(state):
        digest.update(name.encode())
        digest.update(state[name].detach().contiguous().numpy().tobytes())
    return digest.hexdigest()[:12]


def run_cell(method: str, mode: str, cap: str, results: Path, overrides: list[str]) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ISA_ORDERS and k != REPLACED_VAR}
    if cap != NATIVE:
        env.update(ONEDNN_MAX_CPU_ISA=cap, ATEN_CPU_CAPABILITY=HOST_CAPS[cap])
    out = results / f"{mode}-{cap.split()[0]}"
    cmd = [sys.executable, "-m", "benchmark.train", "--method", method, "--no-progress", "--results-dir", str(out),
           f"train.cpu_numerics={mode}", "output.qualitative_images=0", *overrides]
    proc = subprocess.run(cmd, cwd=REPO_ROOT, env={**env, "PYTHONPATH": str(REPO_ROOT)}, capture_output=True,
                          text=True)
    if proc.returncode:
        return {"mode": mode, "cap": cap, "error": (proc.stderr.strip().splitlines() or ["failed"])[-1]}
    summary_path = next(out.rglob("summary.json"))
    summary = json.loads(summary_path.read_text())
    return {"mode": mode, "cap": cap, "best": summary["best"]["miou"], "last": summary["last"]["miou"],
            "weights": weights_digest(summary_path.parent / "checkpoint.pt"),
            "onednn": summary["cpu_numerics"].get("ONEDNN_MAX_CPU_ISA")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmark.diagnostics.isa_check", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--method", default=registry.semi_supervised_baselines()[0],
                        help="method of the cell (default %(default)s, the first semi-supervised baseline)")
    parser.add_argument("--caps", help="comma-separated oneDNN caps (default: every cap this host allows)")
    parser.add_argument("--modes", default=",".join(MODES), help="numerics modes (default: all)")
    parser.add_argument("--jobs", type=int, default=2, help="cells side by side (default 2)")
    parser.add_argument("--json", help="also write the rows to this file")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides of the cell")
    args = parser.parse_args(argv)
    caps = args.caps.split(",") if args.caps else caps_of_this_host()
    overrides = ["train.threads=1", *args.overrides]
    with tempfile.TemporaryDirectory(prefix="isa_check_") as tmp:
        cells = [(mode, cap) for mode in args.modes.split(",") for cap in caps]
        with ThreadPoolExecutor(args.jobs) as pool:
            rows = list(pool.map(lambda c: run_cell(args.method, c[0], c[1], Path(tmp), overrides), cells))
    print(f"host: {host_isa()}; cell: {args.method} {' '.join(overrides)}")
    print("| numerics | oneDNN cap (emulated host) | oneDNN in force | best mIoU | last mIoU | weights sha256 |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        if "error" in row:
            print(f"| {row['mode']} | {row['cap']} | error: {row['error']} | | | |")
        else:
            print(f"| {row['mode']} | {row['cap']} | {row['onednn'] or 'host default'} | {row['best']:.4f} | "
                  f"{row['last']:.4f} | {row['weights']} |")
    for mode in args.modes.split(","):
        at_pin = {r["weights"] for r in rows if r["mode"] == mode and "weights" in r
                  and (r["cap"] == NATIVE or ISA_ORDERS["ONEDNN_MAX_CPU_ISA"].index(r["cap"]) >= PIN_INDEX)}
        print(f"{mode}: {len(at_pin)} distinct weight digest(s) over the caps at or above AVX2")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    run_main(main)

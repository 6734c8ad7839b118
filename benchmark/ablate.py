"""Ablations and sweeps: run a method with and without its components, or over values of one config key.

    python -m benchmark.ablate --component feature_agg [--profile P] [--splits 1_16] [--seeds 3]
    python -m benchmark.ablate --sweep method.mask_ratio=0.3,0.5,0.7 --method maskmatch [--profile P]
    python -m benchmark.ablate --list

--component NAME finds the method(s) that introduce the component (registry) and runs, per split and seed:
the full method (the plain method cell: the main grid's run is reused when it exists), the method without the
component (variant `no_NAME`), and — when the method adds several paper components over its base — the
leave-one-out variant of each and `all_off`. Variants are ordinary cells with `output.variant` set and the
switches `method.components.<c>=false`, so their results land beside the grid's and the report's ablation
table and plot pick them up. --sweep KEY=V1,V2,... runs one cell per value (variant `KEY=V`); a value equal to
the method's configured one is the plain cell. Cells run exactly like the grid's (see `bash run_all.sh --help`).
"""
from __future__ import annotations

import argparse
import sys

from benchmark.grid.arguments import add_run_arguments


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmark.ablate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="exit status: 0 all cells done or skipped, 1 a cell failed, 2 bad input, "
                                            "130 interrupted.")
    a = parser.add_argument_group("what to ablate")
    a.add_argument("--component", action="append", default=[], metavar="NAME",
                   help="a method component to ablate (repeatable); see --list")
    a.add_argument("--sweep", action="append", default=[], metavar="KEY=V1,V2,...",
                   help="a config key and its values, e.g. method.mask_ratio=0.3,0.5,0.7 (repeatable; "
                        "needs --method)")
    a.add_argument("--method", help="the method to ablate in (required for --sweep; with --component: ablate it "
                                    "in this method even if the component is inherited)")
    a.add_argument("--list", action="store_true", help="list methods with their paper and inherited components")
    add_run_arguments(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_intermixed_args(argv)
    from benchmark.grid import runner, variants   # torch only once the arguments are parsed (--help)
    runner.load_plugins(args.plugin)
    if args.list:
        print(variants.describe_components())
        return 0
    if not args.component and not args.sweep:
        parser.error("give --component NAME or --sweep KEY=V1,V2,... (--list shows the components)")
    plan, cells = variants.requested_cells(args, runner.run_options(args, jobs=1))
    runner.stop_on_sigterm()
    return runner.execute(cells, args, jobs=args.jobs or plan.parallel, title="ablation")


if __name__ == "__main__":
    build_parser().parse_intermixed_args(sys.argv[1:])   # --help and bad flags answered before torch is imported
    from benchmark.errors import run_main
    run_main(lambda: main(sys.argv[1:]))

"""Train and evaluate one method on one label split with one seed.

    python -m benchmark.train --method unimatch --dataset animals --split 1_16 --seed 0 [--profile smoke]
    python -m benchmark.train --list
    python -m benchmark.train --plugin examples/ema_fixmatch.py --method ema_fixmatch --profile smoke
    python -m benchmark.train --method s4mim train.iters=200 method.components.feature_agg=false

Overrides are dotted `section.key=value` pairs; precedence: overrides > flags > --config > profile > the profiles
it builds on (`base:`) > dataset (catalogue entry, then its YAML) > defaults; overrides may stand anywhere among
the flags. Relative paths (flags, overrides, --config values) are relative to the current folder. One process
trains a run folder at a time: a second one exits with status 75 ("running elsewhere"), or with --wait waits for
the first. A run resumes from its checkpoint automatically; a finished run is not redone.
"""
from __future__ import annotations

import argparse
import json
import os

from benchmark.plugins import is_user_supplied, load_plugins
from benchmark.train.config_files import ConfigError, annotated_yaml, available
from benchmark.train.schedule import (epoch_steps, evaluation_interval, evaluation_steps, loss_shards_per_process,
                                      per_process_batch)
from datasets.catalog import all_specs, get_spec
from datasets.errors import DataError
from datasets.splits import read_split_file, split_paths


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmark.train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--list", action="store_true", help="list methods, components, datasets, splits, profiles")
    parser.add_argument("--method", help="method name (see --list)")
    parser.add_argument("--dataset", help="dataset name (default: the profile's, else animals)")
    parser.add_argument("--split", help="label split (default: the dataset's lowest)")
    parser.add_argument("--seed", type=int, help="seed (default 0)")
    parser.add_argument("--profile", default="default", help="profile YAML under benchmark/configs/profiles")
    parser.add_argument("--config", help="an extra YAML file applied after the profile")
    parser.add_argument("--plugin", action="append", default=[], metavar="FILE_OR_MODULE",
                        help="import a method plugin (a .py file or a module name) first; repeatable; added to "
                             "the config's `plugins` list (see docs/adding-a-method.md)")
    parser.add_argument("--data-root", help="dataset root folder (same as data.root=...)")
    parser.add_argument("--results-dir", help="where run folders go (same as output.results_dir=...)")
    parser.add_argument("--device", help="auto, cpu, cuda or cuda:N (same as train.device=...)")
    parser.add_argument("--fresh", action="store_true", help="discard this run's checkpoint and results first")
    parser.add_argument("--wait", action="store_true",
                        help="if another process is training this run, wait for it to end (default: exit 75, "
                             "'running elsewhere')")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--print-config", action="store_true",
                        help="print the resolved config, each value with where it came from (default, dataset, "
                             "base, profile, file, CLI), and exit")
    parser.add_argument("--world-size", type=int, metavar="N",
                        help="with --print-config: show the batch per process, steps per epoch and evaluation "
                             "cadence on N processes (default: torchrun's WORLD_SIZE, else 1)")
    parser.add_argument("overrides", nargs="*", metavar="section.key=value")
    # Overrides may come before, between or after flags.
    return parser.parse_intermixed_args(argv)


def describe_everything() -> str:
    from methods.registry import all_methods   # torch: --list only, after the arguments parsed (--help)
    lines = ["Methods (components default on/off):"]
    for name, cls in all_methods().items():
        tag = "  [our implementation from the paper's description]" if cls.from_paper_description else ""
        tag += f"  [user-supplied: {cls.__module__}]" if is_user_supplied(cls) else ""
        lines.append(f"  {name:<11} {cls.description}{tag}")
        for comp, default in cls.components.items():
            lines.append(f"      {comp:<22} {'on ' if default else 'off'}  {cls.component_help.get(comp, '')}")
    lines.append("Datasets (label splits):")
    for name, spec in all_specs().items():
        lines.append(f"  {name:<11} {spec.num_classes} classes; splits {', '.join(spec.splits)}")
    lines.append(f"Profiles: {', '.join(available('profiles'))}")
    return "\n".join(lines)


def world_schedule(cfg, world_size: int) -> list[str]:
    """What depends on the world size, as comment lines: batches, loss shards, steps, evaluations."""
    # torch: --print-config only, after the arguments parsed (--help)
    from benchmark.train.data_plan import resolve_path
    from benchmark.train.run_setup import build_method   # torch, as above
    if world_size < 1:
        raise ConfigError(f"--world-size must be >= 1, got {world_size}")
    spec = get_spec(cfg.data.dataset)
    method = build_method(cfg, spec.num_classes, world_size)
    batch = per_process_batch(cfg.train, world_size)
    labeled_batch = method.labeled_batch_size(batch)
    batches = (f"batch per process {labeled_batch} labeled + {batch} unlabeled (in total {labeled_batch * world_size}"
               f" + {batch * world_size})" if method.needs() else
               f"labeled batch per process {labeled_batch} (in total {labeled_batch * world_size})")
    lines = [f"# on {world_size} process(es): {batches}, "
             f"{loss_shards_per_process(cfg.train, world_size)} loss shard(s) per process"]
    split_dir = resolve_path(cfg.data.split_dir or spec.default_split_dir)
    try:
        labeled_txt, unlabeled_txt = split_paths(split_dir, cfg.data.split or spec.splits[0])
        num_labeled = len(read_split_file(labeled_txt, check_exists=False))
        num_unlabeled = len(read_split_file(unlabeled_txt, check_exists=False, require_masks=False)) \
            if method.needs() else 0
    except DataError as exc:
        epoch = None
        lines.append(f"# steps per epoch: unknown until the split lists are there ({exc})")
    else:
        epoch = epoch_steps(cfg, num_labeled, num_unlabeled, labeled_batch, world_size)
        counted = f"{num_unlabeled} unlabeled images" if num_unlabeled else f"{num_labeled} labeled images"
        lines.append(f"# steps per epoch {epoch} (one pass over {counted})")
    total = cfg.train.iters or (cfg.train.epochs * epoch if epoch else 0)
    if total and (epoch or not cfg.eval.every_epochs):
        every = evaluation_interval(cfg.eval, total, epoch or 1)
        lines.append(f"# {total} steps, evaluation every {every} steps "
                     f"({len(evaluation_steps(total, every))} evaluations)")
    return lines


def config_from_args(args: argparse.Namespace, sources: dict[str, str] | None = None):
    from benchmark.train.run_setup import run_config   # torch only after the arguments parsed (--help)
    return run_config(profile=args.profile, method=args.method, dataset=args.dataset, split=args.split,
                      seed=args.seed, config_file=args.config, data_root=args.data_root,
                      results_dir=args.results_dir, device=args.device, overrides=args.overrides,
                      plugins=args.plugin, sources=sources)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.list:
        load_plugins(args.plugin)
        print(describe_everything())
        return 0
    sources: dict[str, str] = {}
    cfg = config_from_args(args, sources)
    if args.print_config:
        print(annotated_yaml(cfg.to_dict(), sources))
        print("\n".join(world_schedule(cfg, args.world_size or int(os.environ.get("WORLD_SIZE", "1")))))
        return 0
    from benchmark.train.distributed import init_distributed   # torch after --help
    from benchmark.train.trainer import Trainer                 # torch after --help
    dist = init_distributed(cfg)
    trainer = Trainer(cfg, progress=not args.no_progress, dist=dist)
    summary = trainer.fit(fresh=args.fresh, wait=args.wait)
    if dist.is_main:
        best, last = summary["best"], summary["last"]
        print(json.dumps({"run": str(trainer.run_dir), "best_miou": round(best["miou"], 2),
                          "best_iter": best["iter"], "last_miou": round(last["miou"], 2),
                          "wall_time_s": summary["wall_time_s"], "images_per_s": summary["images_per_s"]}))
    return 0

"""The grid's command line (`bash run_all.sh`, `python -m benchmark.grid`) and the options it shares with
`python -m benchmark.ablate`. Standard library only, so `--help` and bad flags are answered before torch loads.
"""
from __future__ import annotations

import argparse

EPILOG = """\
cells and results:
  Each cell runs `python -m benchmark.train --method M --dataset D --split S --seed K --profile P --no-progress`
  in its own process, its output going to RESULTS/logs/<dataset>.<split>.<run>.seed<k>.log (appended to on
  every attempt). Results land in RESULTS/runs/<dataset>/<split>/<run>/seed<k>/ (summary.json etc.).
  An ablation variant that trains exactly another cell's run (S4MIM without mim = UniMatch, MaskMatch with both
  components off = its base; checked on the resolved configs) is not trained twice: its run folder gets
  same_run.json pointing to that run, which the report reads under the variant's name.
  A finished cell (complete summary.json with the same config hash) is skipped; an interrupted one resumes from
  its checkpoint; a failed one is reported (log tail + path) and the rest go on; exit status 1 if any failed.

overrides:
  key=value pairs go to every cell, e.g. train.iters=200 eval.every=50. Settings for one method only go
  under per_method, e.g. per_method.unimatch.weight_fp=0.3. grid.* keys change the grid itself
  (grid.ablations=[feature_perturbation]). Relative --results-dir/--data-root are relative to the current
  folder; relative paths inside profiles are relative to the repository.

parallelism:
  --jobs N runs N cells side by side (default: grid.parallel of the profile; 0 there = one cell per usable
  core). With N > 1 each cell runs the profile's train.threads, or train.threads=1 where the profile does not
  pin it, and OMP_NUM_THREADS likewise (unless you set it), so N cells do not oversubscribe the CPU; with N = 1
  an unpinned cell uses torch's default. Every summary.json records its thread count.

concurrent runners:
  Each run folder is trained by one process at a time (a lease lock, .train.lock, that holds on shared file
  systems and that a killed process does not leave blocking). A cell that another grid, Slurm task or
  `benchmark.train.command` is training shows as "running elsewhere"; once its own cells are done the runner waits
  for those, so its reports include them. A results folder that cannot be written stops the grid before any
  cell starts.

slurm:
  --launcher slurm submits the cells that are not finished as one Slurm job array through submitit; each array
  task runs one cell through the same cell function, and is requeued on timeout/preemption (the trainer resumes
  from its checkpoint). The runner waits for the array (--no-wait: it prints the job id and exits; rerun the same
  command after the jobs end to render the report — finished cells are skipped). Job logs: RESULTS/slurm/.
  --slurm-executor local runs the same submission on this machine (submitit's LocalExecutor; for tests).

exit status: 0 all cells done or skipped, 1 a cell (or the report) failed, 2 bad input, 130 interrupted."""


# --- command line --------------------------------------------------------------------------------------------

def _csv(text: str) -> list[str]:
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise argparse.ArgumentTypeError("expected a comma-separated list")
    return items


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """Options shared by the grid runner and benchmark.ablate: what data, where results go, how cells run."""
    g = parser.add_argument_group("what to run")
    g.add_argument("--profile", default="default",
                   help="profile under benchmark/configs/profiles (default: default; smoke = tiny CI-sized grid)")
    g.add_argument("--dataset", help="dataset (default: the profile's)")
    g.add_argument("--splits", type=_csv, action="extend", metavar="S1,S2",
                   help="comma-separated label splits (default: grid.splits of the profile, else the dataset's "
                        "first two)")
    g.add_argument("--seeds", type=_positive, metavar="N", help="number of seeds: runs seeds 0..N-1 (default: grid.seeds)")
    g.add_argument("--data-root", metavar="DIR", help="dataset root folder (default: the dataset's)")
    g.add_argument("--device", help="auto, cpu, cuda or cuda:N (default: the profile's train.device)")
    g.add_argument("--plugin", action="append", default=[], metavar="FILE_OR_MODULE",
                   help="import a method plugin (a .py file or a module name) here and in every cell; repeatable")
    g.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides for every cell")

    o = parser.add_argument_group("where results go")
    o.add_argument("--results-dir", metavar="DIR", help="results folder (default: the profile's output.results_dir, results/)")
    o.add_argument("--reports-dir", metavar="DIR", help="reports folder (default: reports/ for the default results folder, "
                                         "else RESULTS_DIR/reports)")
    o.add_argument("--no-report", action="store_true", help="do not render the reports at the end")
    o.add_argument("--dry-run", action="store_true", help="list the cells and whether they are finished; run nothing")

    h = parser.add_argument_group("how cells run")
    h.add_argument("--launcher", choices=("local", "slurm"), default="local",
                   help="local: subprocesses on this machine (default); slurm: one Slurm job array via submitit")
    h.add_argument("--jobs", type=_positive, metavar="N", help="cells side by side on this machine (default: grid.parallel)")

    s = parser.add_argument_group("slurm (--launcher slurm)")
    s.add_argument("--slurm-executor", choices=("slurm", "local"), default="slurm",
                   help="slurm (default), or local: submitit's LocalExecutor on this machine (tests)")
    s.add_argument("--slurm-partition", metavar="P", help="partition")
    s.add_argument("--slurm-account", metavar="A", help="account")
    s.add_argument("--slurm-qos", metavar="Q", help="quality of service")
    s.add_argument("--slurm-gpus-per-task", metavar="G", type=int, default=1,
                   help="GPUs per cell (default 1; >1 runs the cell with torchrun, one process per GPU)")
    s.add_argument("--slurm-cpus-per-task", metavar="C", type=_positive, default=8, help="CPU cores per cell (default 8)")
    s.add_argument("--slurm-mem", metavar="GB", type=_positive, help="memory per cell in GB (default: the partition's)")
    s.add_argument("--slurm-time", metavar="MIN", type=_positive, default=1440,
                   help="time limit per cell in minutes (default 1440); a cell that runs out is requeued and "
                        "resumes from its checkpoint (up to 3 times)")
    s.add_argument("--slurm-array-parallelism", metavar="N", type=_positive,
                   help="at most this many cells running at once (default: all)")
    s.add_argument("--slurm-constraint", metavar="C", help="node constraint, e.g. a GPU type")
    s.add_argument("--no-wait", action="store_true",
                   help="submit and exit; rerun the same command after the jobs end to render the reports")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="run_all.sh",
        usage="bash run_all.sh [options] [key=value ...]    (the same as: python -m benchmark.grid ...)",
        description="Run the benchmark grid (methods × label splits × seeds of a profile), then the ablations "
                    "listed in the profile's grid.ablations, then render the reports (python -m benchmark.report)."
                    "\n\nexamples:\n"
                    "  bash run_all.sh                                   # default profile, this machine\n"
                    "  bash run_all.sh --profile smoke                   # tiny: the whole pipeline in minutes\n"
                    "  bash run_all.sh --profile pascal --data-root /data/VOC2012 --seeds 3\n"
                    "  bash run_all.sh --methods unimatch,fixmatch --splits 1_16 train.iters=200\n"
                    "  bash run_all.sh --launcher slurm --profile pascal --data-root /data/VOC2012 \\\n"
                    "      --slurm-partition gpu --slurm-gpus-per-task 1 --slurm-time 1440\n"
                    "  bash run_all.sh --dry-run                         # what would run, what is finished",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", type=_csv, action="extend", metavar="M1,M2",
                        help="comma-separated methods (default: grid.methods of the profile); ablations then only "
                             "run for components of these methods")
    parser.add_argument("--no-ablations", action="store_true", help="skip the profile's grid.ablations")
    add_run_arguments(parser)
    return parser

"""`python -m benchmark.train` in a process forked from a server that loaded torch and the trainer once.

A fresh interpreter spends about 4 CPU seconds on `import torch`, torchvision and the trainer before its first
step: a sixth of a FixMatch cell of the embedded profile, a third of a supervised one. The grid's
`grid.cell_start: fork` starts a multiprocessing forkserver with `PRELOAD` imported, and forks each cell from
it. The forked child becomes what a fresh `python -m benchmark.train` process would be (its own session and
process group, its log on stdout and stderr, the cell's environment and folder) and then runs the same
`run_main(main(argv))`: same exit codes, same one-line errors, same checkpoints and resume.

The server only imports, so every library still reads its settings at its first use, inside the child, after
`benchmark.numerics.apply` pinned them: a forked cell trains bit for bit like a fresh one (tested). A cell this
process cannot serve that way (native numerics, a GPU, torch.compile) replaces itself with a fresh interpreter
(`os.execv`: same pid, process group and log), so forking never changes what a cell computes.

As with multiprocessing's spawn and forkserver methods in general, each child imports the parent's main module
as `__mp_main__`: a script of one's own that runs the grid must guard its entry point with
`if __name__ == "__main__":` (the suite's `python -m` entry points are guarded, or skipped as `__main__` modules).
"""
from __future__ import annotations

import os
import sys

from benchmark.errors import run_main
from benchmark.train.command import config_from_args, main, parse_args

# What the server imports once: the trainer's whole stack, and torch._dynamo, which torchvision's ops and the
# first optimizer step import anyway.
PRELOAD = ("benchmark.train.command", "benchmark.train.trainer", "torch._dynamo")


def run_cell_command(argv: list[str], log: str, env: dict[str, str], cwd: str) -> None:
    """The forked child's body (a multiprocessing target): `python -m benchmark.train ARGV`, output to `log`."""
    _become_cell_process(log, env, cwd)
    if not _served_here(argv):
        os.execv(sys.executable, [sys.executable, "-m", "benchmark.train", *argv])
    run_main(lambda: main(argv))


def _become_cell_process(log: str, env: dict[str, str], cwd: str) -> None:
    """What `subprocess.Popen(start_new_session=True, stdout=log, stderr=STDOUT, env=env, cwd=cwd)` gives."""
    os.setsid()                               # its own process group: the runner stops it with killpg
    os.environ.clear()
    os.environ.update(env)
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    sys.stdout = open(1, "w", buffering=1, closefd=False)   # line-buffered, as PYTHONUNBUFFERED children are
    sys.stderr = open(2, "w", buffering=1, closefd=False)
    os.chdir(cwd)


def _served_here(argv: list[str]) -> bool:
    """Whether this preloaded process trains the cell exactly as a fresh one would: pinned or portable CPU
    numerics (the server imported torch under the pin; what portable changes, MKL's branch at its first call and
    torch's oneDNN and NNPACK switches, `apply` sets in the child and checks), a CPU device, no torch.compile.
    Bad input is left to the run itself, which reports it in one line."""
    try:
        cfg = config_from_args(parse_args(argv))
    except (Exception, SystemExit):
        return True
    import torch   # loaded by the server
    device = cfg.train.device
    on_cpu = device == "cpu" or (device == "auto" and not torch.cuda.is_available())
    return on_cpu and cfg.train.cpu_numerics != "native" and not cfg.train.compile

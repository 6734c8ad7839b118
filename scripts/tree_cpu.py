"""CPU seconds of a command and of every process it starts, however deep: `python scripts/tree_cpu.py CMD ...`.

The grid's cells are grandchildren of the runner when they are forked (grid.cell_start: fork), so a shell's
`time` misses them once the runner exits before the forkserver. This becomes a child subreaper (Linux), runs
CMD, reaps every orphaned descendant, and prints one line on stderr: `TREE rc=… cpu_s=… wall_s=…`.
"""
from __future__ import annotations

import ctypes
import os
import resource
import subprocess
import sys
import time

PR_SET_CHILD_SUBREAPER = 36


def main(argv: list[str]) -> int:
    if not argv:
        print("usage: python scripts/tree_cpu.py CMD [ARG ...]", file=sys.stderr)
        return 2
    if ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        print("error: cannot become a child subreaper (Linux only)", file=sys.stderr)
        return 2
    start = time.monotonic()
    rc = subprocess.call(argv)
    while True:
        try:
            os.wait()
        except ChildProcessError:
            break
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(f"TREE rc={rc} cpu_s={usage.ru_utime + usage.ru_stime:.2f} user_s={usage.ru_utime:.2f} "
          f"sys_s={usage.ru_stime:.2f} wall_s={time.monotonic() - start:.2f}", file=sys.stderr)
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

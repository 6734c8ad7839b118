"""One trainer per run folder, across processes, grids, Slurm requeues and hosts.

The lock is filelock's `SoftFileLease`: a marker file (`.train.lock` in the run folder, holding the owner's host
and pid) that the holder refreshes from a heartbeat thread. It needs no `flock` support, so it holds on NFS and
Lustre mounts that lack it, and a lock left by a killed process never blocks forever: on the same host it is
taken over at once (the recorded pid is gone), from another host once it has gone unrefreshed for
LEASE_SECONDS.
"""
from __future__ import annotations

import contextlib
import os
import socket
import time
from pathlib import Path
from typing import Iterator

from filelock import SoftFileLease, Timeout

from benchmark.errors import RunLockedError

LOCK_NAME = ".train.lock"
LEASE_SECONDS = 120.0        # a holder that stops refreshing (host died) is taken over after this long
WAIT_POLL_SECONDS = 2.0


def holder_of(lock_file: Path) -> str:
    """'pid N on host H' from the marker, for messages."""
    try:
        fields = dict(line.split("=", 1) for line in lock_file.read_text().splitlines() if "=" in line)
    except OSError:
        return "another process"
    return f"pid {fields.get('pid', '?')} on host {fields.get('host', '?')}"


@contextlib.contextmanager
def run_lock(run_dir: Path, wait: bool = False) -> Iterator[None]:
    """Hold the run folder's lock while the body runs. Raises RunLockedError when another live process holds
    it, unless `wait`, which blocks until it is released or goes stale."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = SoftFileLease(run_dir / LOCK_NAME, lease_duration=LEASE_SECONDS)
    while True:
        try:
            lock.acquire(timeout=0)
            break
        except Timeout:
            if not wait:
                raise RunLockedError(run_dir, holder_of(run_dir / LOCK_NAME)) from None
            time.sleep(WAIT_POLL_SECONDS)
    try:
        yield
    finally:
        lock.release()


def looks_held(run_dir: Path) -> bool:
    """A cheap look, without taking the lock (taking it, even briefly, could turn away its rightful trainer):
    a marker whose process is alive on this host, or that another host refreshed within the lease. Lets the
    runner skip a busy cell without starting a process; the trainer's own lock stays the authority."""
    lock_file = Path(run_dir) / LOCK_NAME
    try:
        fields = dict(line.split("=", 1) for line in lock_file.read_text().splitlines() if "=" in line)
        age = time.time() - lock_file.stat().st_mtime
    except (OSError, ValueError):
        return False
    if fields.get("host") != socket.gethostname():
        return age < LEASE_SECONDS
    try:
        os.kill(int(fields.get("pid", "")), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, ValueError):
        return True
    return True

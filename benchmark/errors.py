"""Bad input in one line: the error types a user's input raises anywhere in the suite, and the plumbing every
entry point runs its `main` in (`run_main`), which turns them into one `error:` line and exit status 2, never a
traceback wall.

The suite's own error types live here, below every subpackage of benchmark/, so that a layer which raises one
and the entry points which tell it import the same module and none reaches up; the data and method layers keep
theirs (DataError, DiskFullError, MethodError), which this module imports.
"""
from __future__ import annotations

import errno
import sys
from pathlib import Path
from typing import Callable

from datasets.errors import DataError
from datasets.io import DiskFullError
from methods.settings import MethodError

EXIT_USER_ERROR = 2
EXIT_RUNNING_ELSEWHERE = 75  # EX_TEMPFAIL: the run is not ours to train now; the runner reports it, not a failure
WORKER_TRACEBACK_MARK = "Original Traceback"
OS_ERROR_REASONS = {errno.EACCES: "permission denied", errno.EPERM: "permission denied",
                    errno.EROFS: "read-only file system", errno.ENOSPC: "the disk is full",
                    errno.EDQUOT: "disk quota exceeded", errno.ENOTDIR: "a part of the path is not a folder",
                    errno.EEXIST: "it exists and is not a folder"}


class ConfigError(ValueError):
    """A malformed config file, an unknown key or a value of the wrong type."""


class ModelError(ValueError):
    """Bad model setting (unknown backbone, unsupported output stride, ...)."""


class NonFiniteLossError(RuntimeError):
    """A loss term became NaN or infinite."""


class RunLockedError(RuntimeError):
    """Another live process is training this run folder."""

    def __init__(self, run_dir: Path, holder: str):
        super().__init__(f"{run_dir} is being trained by {holder}; not starting it twice "
                         f"(rerun when that run has ended, or pass --wait to wait for it)")
        self.run_dir = run_dir


USER_ERRORS = (ConfigError, DataError, MethodError, NonFiniteLossError, DiskFullError, ModelError)


def one_line(exc: BaseException) -> str:
    """The message a user needs. An error raised in a DataLoader worker comes back as the same type, but its
    message is the worker's whole traceback; its last line is the original message."""
    text = str(exc)
    if WORKER_TRACEBACK_MARK in text:
        last = text.rstrip().splitlines()[-1]
        text = last.split(": ", 1)[1] if ": " in last else last
    return text


def os_error_line(exc: OSError) -> str | None:
    """One line for an OS refusal to write (permissions, read-only, full disk), naming the path; None for
    anything else, which stays a traceback (a bug, not bad input)."""
    reason = OS_ERROR_REASONS.get(exc.errno or -1)
    if reason is None:
        return None
    where = f" {exc.filename}" if exc.filename else ""
    return f"cannot write{where}: {reason}"


def run_main(main: Callable[[], int | None]) -> None:
    try:
        code = main()
    except KeyboardInterrupt:
        print("\ninterrupted; rerun the same command to resume from the last checkpoint", file=sys.stderr)
        sys.exit(130)
    except RunLockedError as exc:
        print(f"running elsewhere: {exc}", file=sys.stderr)
        sys.exit(EXIT_RUNNING_ELSEWHERE)
    except SystemExit:   # --help, argparse's usage errors
        raise
    except USER_ERRORS as exc:
        print(f"error: {one_line(exc)}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)
    except OSError as exc:
        line = os_error_line(exc)
        if line is None:
            raise
        print(f"error: {line}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)
    sys.exit(code or 0)

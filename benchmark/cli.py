"""Entry-point plumbing: bad input becomes one `error:` line and exit status 2, never a traceback wall."""
from __future__ import annotations

import errno
import sys
from typing import Callable

from datasets.io import DiskFullError
from benchmark.train.config_files import ConfigError
from benchmark.train.runlock import EXIT_RUNNING_ELSEWHERE, RunLockedError
from datasets.errors import DataError

EXIT_USER_ERROR = 2
WORKER_TRACEBACK_MARK = "Original Traceback"
OS_ERROR_REASONS = {errno.EACCES: "permission denied", errno.EPERM: "permission denied",
                    errno.EROFS: "read-only file system", errno.ENOSPC: "the disk is full",
                    errno.EDQUOT: "disk quota exceeded", errno.ENOTDIR: "a part of the path is not a folder",
                    errno.EEXIST: "it exists and is not a folder"}


def user_errors() -> tuple[type[BaseException], ...]:
    # Their modules import torch: only once an error is to be told, so --help stays without it.
    from benchmark.train.model import ModelError
    from benchmark.train.trainer import NonFiniteLossError   # torch, as above
    from methods.base import MethodError                     # torch, as above
    return (ConfigError, DataError, MethodError, NonFiniteLossError, DiskFullError, ModelError)


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
    except SystemExit:   # --help, argparse's usage errors: before user_errors(), which imports torch
        raise
    except user_errors() as exc:
        print(f"error: {one_line(exc)}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)
    except OSError as exc:
        line = os_error_line(exc)
        if line is None:
            raise
        print(f"error: {line}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)
    sys.exit(code or 0)

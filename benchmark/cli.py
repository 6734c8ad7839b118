"""Entry-point plumbing: bad input becomes one `error:` line and exit status 2, never a traceback wall."""
from __future__ import annotations

import sys
from typing import Callable

from benchmark.config import ConfigError
from datasets.errors import DataError
from methods.base import MethodError

EXIT_USER_ERROR = 2


def user_errors() -> tuple[type[BaseException], ...]:
    from benchmark.trainer import NonFiniteLossError
    errors: list[type[BaseException]] = [ConfigError, DataError, MethodError, NonFiniteLossError]
    from benchmark.model import ModelError
    errors.append(ModelError)
    return tuple(errors)


def run_main(main: Callable[[], int | None]) -> None:
    try:
        code = main()
    except KeyboardInterrupt:
        print("\ninterrupted; rerun the same command to resume from the last checkpoint", file=sys.stderr)
        sys.exit(130)
    except user_errors() as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)
    sys.exit(code or 0)

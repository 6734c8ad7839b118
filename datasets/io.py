"""Atomic file writes, the one writer of every layer (datasets below, methods and benchmark above): a reader (or a
crash) never sees a half-written image, split list, result or checkpoint.

Ctrl-C during a write is held until the files are in place, then raised: a library that writes through a
callback (torch.save's zip writer) would otherwise turn the KeyboardInterrupt into an error of its own, and the
run would end as a failure instead of an interruption that resumes from its checkpoint.

Files get the permissions the user's umask allows (0644 usually), like any file the user creates, so colleagues
on a shared cluster can read results. A full disk is one `DiskFullError` naming the file; whatever was written
before it (the previous checkpoint, the earlier log lines) stays as it was.
"""
from __future__ import annotations

import errno
import json
import math
import os
import signal
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable

DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)


def _current_umask() -> int:
    mask = os.umask(0o022)   # the only portable way to read it is to set it; restored at once
    os.umask(mask)
    return mask


FILE_MODE = 0o666 & ~_current_umask()


class DiskFullError(OSError):
    """No space (or quota) left to write a result file."""

    def __init__(self, path: Path):
        super().__init__(errno.ENOSPC, f"the disk is full: cannot write {path} (no space or quota left on its "
                                       f"file system; free some space and rerun, earlier results are kept)")
        self.path = path

    def __str__(self) -> str:
        return self.strerror


def is_disk_full(exc: BaseException) -> bool:
    """Also through the exception chain: torch's zip writer answers a failed write (the OSError ENOSPC it
    caught) with a RuntimeError of its own ("unexpected pos ...") raised while handling it."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in DISK_FULL_ERRNOS:
            return True
        # torch's C++ writer reports a failed write as a RuntimeError, without the errno.
        if isinstance(exc, RuntimeError) and ("No space left" in str(exc) or "file write failed" in str(exc)):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def temp_path_beside(path: Path) -> Path:
    """A fresh temp file name in the target's folder (same file system, so `os.replace` is atomic)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" if not path.suffix else path.suffix,
                               dir=path.parent)
    os.fchmod(fd, FILE_MODE)   # mkstemp's 0600 would stay on the target after os.replace
    os.close(fd)
    return Path(tmp)


@contextmanager
def sigint_held():
    """Holds a SIGINT that arrives inside the block and delivers it again on leaving (main thread only: elsewhere
    Python cannot set a handler, and signals are delivered to the main thread anyway)."""
    previous = signal.getsignal(signal.SIGINT)
    if threading.current_thread() is not threading.main_thread() or previous in (signal.SIG_IGN, None):
        yield
        return
    held: list[int] = []
    signal.signal(signal.SIGINT, lambda signum, frame: held.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if held:
            signal.raise_signal(signal.SIGINT)


def atomic_write_files(writers: dict[Path, Callable[[Path], None]]) -> None:
    """The one atomic writer. Each `writer(tmp)` writes its target's content to a temp file beside it; only once
    all of them succeeded are they moved into place, so a crash or a full disk leaves the previous files (a
    report.md with its report.pdf). A full disk is a `DiskFullError` naming the target; another OS refusal
    without a file name gets the target's."""
    with sigint_held():
        _write_and_replace(writers)


def _write_and_replace(writers: dict[Path, Callable[[Path], None]]) -> None:
    temps: dict[Path, Path] = {}
    target = None
    try:
        for target, write in writers.items():
            temps[target] = tmp = temp_path_beside(target)
            write(tmp)
        for target, tmp in temps.items():
            os.replace(tmp, target)
    except BaseException as exc:
        if target is not None and not isinstance(exc, DiskFullError):
            if is_disk_full(exc):
                raise DiskFullError(Path(target)) from None
            if isinstance(exc, OSError) and not exc.filename:
                raise OSError(exc.errno, exc.strerror, str(target)) from None
        raise
    finally:
        for tmp in temps.values():
            if os.path.lexists(tmp):
                os.unlink(tmp)


def atomic_write(path: Path, write: Callable[[Any], None], mode: str = "w") -> None:
    """`write(handle)` into a file opened with `mode` (text is UTF-8), synced to disk before it replaces `path`."""
    def to_temp(tmp: Path) -> None:
        with open(tmp, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
    atomic_write_files({Path(path): to_temp})


def check_writable(folder: Path) -> None:
    """Create `folder` if needed and write a probe file in it; an OSError naming `folder` otherwise."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, str(folder)) from None


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda f: f.write(text))


def json_safe(value: Any) -> Any:
    """NaN and infinities become null (JSON has no NaN); the record's status says why a figure is missing."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def atomic_write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(json_safe(data), indent=2, sort_keys=False, default=str,
                                       allow_nan=False) + "\n")


def append_jsonl(path: Path, record: dict[str, Any]) -> None:
    """Append one line; a torn last line (after a kill) is dropped by `read_jsonl`."""
    try:
        with open(path, "a") as handle:
            handle.write(json.dumps(record, default=str) + "\n")
            handle.flush()
    except OSError as exc:
        if is_disk_full(exc):
            raise DiskFullError(Path(path)) from None
        raise


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    records = []
    if not Path(path).exists():
        return records
    for line in Path(path).read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def rewrite_jsonl(path: Path, records: list[dict[str, Any]]) -> None:
    atomic_write_text(path, "".join(json.dumps(r, default=str) + "\n" for r in records))

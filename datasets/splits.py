"""Split lists in UniMatch's format: one sample per line, `image_rel_path mask_rel_path`, relative to the data root.

Layout: `<split_dir>/<split>/labeled.txt`, `<split_dir>/<split>/unlabeled.txt`, `<split_dir>/val.txt`.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

from datasets.errors import DataError

LABELED_FILE = "labeled.txt"
UNLABELED_FILE = "unlabeled.txt"
VAL_FILE = "val.txt"
MAX_MISSING_LISTED = 5


def read_split_file(path: str | os.PathLike, root: str | os.PathLike | None = None, check_exists: bool = True,
                    require_masks: bool = True) -> list[tuple[str, str]]:
    """Read a split list into `(image_rel, mask_rel)` pairs, in file order.

    Blank lines and surrounding whitespace are tolerated; any other line that is not exactly two fields raises
    DataError naming the file and line number. With `check_exists` and a `root`, every listed image (and mask,
    unless `require_masks=False`, e.g. for unlabeled lists whose labels are never read) must exist under
    `root`; otherwise one DataError reports how many are missing and lists the first few.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(f"split file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"cannot read split file {path}: {err}") from None

    items: list[tuple[str, str]] = []
    line_numbers: list[int] = []
    for line_number, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 2:
            raise DataError(f"{path}, line {line_number}: expected 'image_path mask_path', got {line.strip()!r}")
        items.append((fields[0], fields[1]))
        line_numbers.append(line_number)
    if not items:
        raise DataError(f"split file {path} lists no samples")

    if check_exists and root is not None:
        _check_listed_files_exist(path, Path(root), items, line_numbers, require_masks)
    return items


def _check_listed_files_exist(split_file: Path, root: Path, items: list[tuple[str, str]],
                              line_numbers: list[int], require_masks: bool) -> None:
    missing: list[str] = []
    for line_number, (image_rel, mask_rel) in zip(line_numbers, items):
        for rel in (image_rel, mask_rel) if require_masks else (image_rel,):
            if not (root / rel).is_file():
                missing.append(f"line {line_number}: {root / rel}")
    if missing:
        shown = "; ".join(missing[:MAX_MISSING_LISTED])
        more = f"; ... and {len(missing) - MAX_MISSING_LISTED} more" if len(missing) > MAX_MISSING_LISTED else ""
        raise DataError(f"split file {split_file}: {len(missing)} listed file(s) missing under root {root}: "
                        f"{shown}{more}")


def available_splits(split_dir: str | os.PathLike) -> list[str]:
    """Names of the sub-folders of `split_dir` that hold a labeled list, sorted."""
    split_dir = Path(split_dir)
    if not split_dir.is_dir():
        return []
    return sorted(entry.name for entry in split_dir.iterdir() if (entry / LABELED_FILE).is_file())


def split_paths(split_dir: str | os.PathLike, split: str) -> tuple[Path, Path]:
    """`(labeled.txt, unlabeled.txt)` of one label split; DataError listing the available splits if absent.

    Only the labeled list must exist here: a labeled-only method never reads the unlabeled one, and reading a
    missing unlabeled list fails in `read_split_file` with its path.
    """
    split_dir = Path(split_dir)
    if not split_dir.is_dir():
        raise DataError(f"split folder {split_dir} does not exist")
    folder = split_dir / str(split)
    if not folder.is_dir():
        known = ", ".join(available_splits(split_dir)) or "none"
        raise DataError(f"split {split!r} not found in {split_dir}; available splits: {known}")
    labeled = folder / LABELED_FILE
    if not labeled.is_file():
        raise DataError(f"split {split!r}: {labeled} does not exist")
    return labeled, folder / UNLABELED_FILE


def val_path(split_dir: str | os.PathLike) -> Path:
    path = Path(split_dir) / VAL_FILE
    if not path.is_file():
        raise DataError(f"validation list {path} does not exist")
    return path


def sha256_file(path: str | os.PathLike, chunk_size: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks so large archives need no memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()

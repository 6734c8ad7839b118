"""Which split lists a run trained and evaluated on: their sha256, checked against the pinned manifest.

Every run records the checksums of its labeled, unlabeled and val lists in summary.json. For a dataset with
pinned lists (datasets/manifest.py: the official UniMatch ones), a list that differs is an error, because its
numbers would be read beside the published ones; `data.custom_splits=true` accepts it and marks the run
custom, and the report then never compares it with a published number.
"""
from __future__ import annotations

from pathlib import Path

from datasets import manifest
from datasets.errors import DataError
from datasets.splits import LABELED_FILE, UNLABELED_FILE, VAL_FILE, sha256_file


def list_paths(split_dir: Path, split: str) -> dict[str, Path]:
    return {"labeled": split_dir / split / LABELED_FILE, "unlabeled": split_dir / split / UNLABELED_FILE,
            "val": split_dir / VAL_FILE}


def check_split_lists(dataset: str, split_dir: Path, split: str, custom_allowed: bool,
                      uses_unlabeled: bool = True) -> dict:
    """`{"labeled": sha, "unlabeled": sha | None, "val": sha, "custom": bool}`; raises DataError on a list that
    differs from the pinned one unless `custom_allowed`."""
    pinned = manifest.files_for(dataset)
    record: dict = {}
    differing = []
    for role, path in list_paths(split_dir, split).items():
        if not path.is_file():   # the readers say which file is missing; an unused unlabeled list may be absent
            if role == "unlabeled" and not uses_unlabeled:
                record[role] = None
                continue
            raise DataError(f"split list {path} does not exist")
        record[role] = sha256_file(path)
        expected = pinned.get(str(path.relative_to(split_dir)))
        if expected is not None and expected[0] != record[role]:
            differing.append(path)
    record["custom"] = bool(differing)
    if differing and not custom_allowed:
        names = ", ".join(str(p) for p in differing)
        raise DataError(f"{names} differ(s) from the official {dataset} split list pinned in datasets/manifest.py "
                        f"(`python -m datasets.prepare {dataset}` restores it); to train on your own lists, pass "
                        f"data.custom_splits=true: the run is then marked custom and never compared with "
                        f"published numbers")
    return record

"""Get a real dataset ready: fetch the pinned official split lists, then check the image/mask tree against them.

    python -m datasets.prepare pascal --root data/VOC2012
    python -m datasets.prepare cityscapes --root /data/cityscapes --offline
    python -m datasets.prepare coco --root /data/coco --from-dir /path/to/UniMatch/splits/coco

Split lists go to the dataset's default split folder (e.g. data/splits/pascal) unless --splits-dir is given.
Each is verified against the sha256 pinned in datasets/manifest.py; files already in place with the right hash
are kept, so a second run works offline. Every listed file's existence is checked; contents (decodable image,
mask mode, label range, image/mask size) on a random sample unless --check-all. Exit 0 when all is well,
2 with one `error:` line per problem category otherwise.
"""
from __future__ import annotations

import argparse
import hashlib
import http.client
import os
import random
import shutil
import sys
import urllib.error
from pathlib import Path
from typing import BinaryIO, Callable, Optional
from urllib.request import urlopen

import numpy as np
from PIL import Image
from tqdm import tqdm

from datasets import IGNORE_INDEX, REPO_ROOT, manifest
from datasets.catalog import DatasetSpec, get_spec
from datasets.errors import DataError
from datasets.io import atomic_write_files
from datasets.splits import LABELED_FILE, UNLABELED_FILE, VAL_FILE, read_split_file, sha256_file

REAL_DATASETS = tuple(sorted({path.split("/")[0] for path in manifest.FILES}))
DEFAULT_SAMPLE = 200
DOWNLOAD_TIMEOUT_S = 60
SHOWN = 5                      # culprits named per error line
COCO_TRAIN2017_IMAGES = 118287
_READ_ERRORS = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)

# Problem categories, in the order their `error:` lines are printed.
SPLIT_LISTS, DERIVED, NO_ROOT, MISSING = "split lists", "unlabeled lists", "dataset root", "missing files"
UNREADABLE, MODE, VALUES, SIZE = "unreadable files", "wrong mask mode", "label values out of range", "size mismatch"
CATEGORIES = (SPLIT_LISTS, DERIVED, NO_ROOT, MISSING, UNREADABLE, MODE, VALUES, SIZE)
NEEDS_DOWNLOAD = {DERIVED, NO_ROOT, MISSING}

HINTS = {   # (dataset or None for all, category) -> how to fix it, printed once per error line
    (None, SPLIT_LISTS): "lists come from the pinned commit only; offline, pass --from-dir FOLDER holding them "
                         "(e.g. a UniMatch checkout's splits/<dataset>)",
    ("pascal", MODE): "masks must be palettized ('P') or greyscale ('L') PNGs of class ids as in VOC's "
                      "SegmentationClass, not RGB colour renderings",
    ("cityscapes", MODE): "use the *_gtFine_labelTrainIds.png masks from csCreateTrainIdLabelImgs, not *_color.png",
    ("cityscapes", VALUES): "values up to 33 mean labelIds were used instead of labelTrainIds (0..18, 255)",
    ("coco", MODE): "masks must be greyscale ('L') or palettized ('P') PNGs of class ids 0..80",
    ("coco", VALUES): "values above 80 suggest raw COCO category ids (1..90) or COCO-Stuff masks, not "
                      "UniMatch's 81-class masks",
}

HOW_TO_GET = {
    "pascal": """\
Pascal VOC 2012 + SBD, laid out as ROOT/JPEGImages/*.jpg and ROOT/SegmentationClass/*.png:
  1. images: http://host.robots.ox.ac.uk/pascal/VOC/voc2012/VOCtrainval_11-May-2012.tar
     (move VOCdevkit/VOC2012/JPEGImages to ROOT/JPEGImages; it holds every train_aug and val image)
  2. masks: the 10,582 train_aug + 1,449 val class-id PNGs ("SegmentationClassAug": VOC's own masks plus SBD's
     converted to palettized PNGs, 255 = ignore). UniMatch's ready copy (extract as ROOT/SegmentationClass):
     https://drive.google.com/file/d/1ikrDlsai5QSf2GiSUR3f8PZUzyTubcuF
     or convert SBD's .mat masks to PNGs yourself, from
     http://www.eecs.berkeley.edu/Research/Projects/CS/vision/grouping/semantic_contours/benchmark.tgz
  The classic splits (92..1464) label only VOC's 1,464 fine masks; the blended splits (1_16.., u2pl_*) need SBD's.""",
    "cityscapes": """\
Cityscapes (free registration: https://www.cityscapes-dataset.com/downloads/), laid out as
ROOT/leftImg8bit/{train,val}/<city>/*_leftImg8bit.png and ROOT/gtFine/{train,val}/<city>/*_gtFine_labelTrainIds.png:
  1. leftImg8bit_trainvaltest.zip (packageID=3) and gtFine_trainvaltest.zip (packageID=1), extracted into ROOT
  2. train-id masks: pip install cityscapesscripts; CITYSCAPES_DATASET=ROOT csCreateTrainIdLabelImgs
     (writes *_gtFine_labelTrainIds.png, 19 classes 0..18, 255 = ignore, next to each *_gtFine_labelIds.png);
     or UniMatch's preprocessed gtFine: https://drive.google.com/file/d/1E_27g9tuHm6baBqcA7jct_jqcGA89QPm""",
    "coco": """\
COCO 2017, laid out as ROOT/train2017/*.jpg, ROOT/val2017/*.jpg and ROOT/masks/<image id>.png (one flat
folder for train and val masks: 0 = background, 1..80 = the 80 thing classes in category order, 255 = ignore):
  1. http://images.cocodataset.org/zips/train2017.zip and http://images.cocodataset.org/zips/val2017.zip
  2. masks: UniMatch's preprocessed ones, https://drive.google.com/file/d/166xLerzEEIbU7Mt1UGut-3-VN41FMUb1
     (rendering your own from annotations_trainval2017.zip gives masks whose overlap/crowd handling may differ
     from UniMatch's, and so numbers that are not comparable)
  The unlabeled lists are derived from ROOT/train2017, so rerun this command once train2017 is in place.""",
}


class Problems:
    """Problems grouped by category; each category becomes one `error:` line naming its first culprits."""

    def __init__(self, dataset: str):
        self.dataset = dataset
        self.by_category: dict[str, list[str]] = {}

    def add(self, category: str, culprit: str) -> None:
        self.by_category.setdefault(category, []).append(culprit)

    def __bool__(self) -> bool:
        return bool(self.by_category)

    def lines(self) -> list[str]:
        lines = []
        for category in CATEGORIES:
            culprits = self.by_category.get(category)
            if not culprits:
                continue
            more = f"; ... and {len(culprits) - SHOWN} more" if len(culprits) > SHOWN else ""
            hint = HINTS.get((self.dataset, category)) or HINTS.get((None, category))
            lines.append(f"{category} ({len(culprits)}): " + "; ".join(culprits[:SHOWN]) + more
                         + (f" -- {hint}" if hint else ""))
        return lines


# --- split lists: fetch / copy, verify, install atomically ----------------------------------------------------

def install_verified(dest: Path, expected_sha: str, write: Callable[[BinaryIO], None], source: str) -> None:
    """Write into a temp file beside `dest`, verify its sha256, then os.replace: a bad file never lands."""
    def verified(tmp: Path) -> None:
        with open(tmp, "wb") as handle:
            write(handle)
        actual = sha256_file(tmp)
        if actual != expected_sha:
            raise DataError(f"{dest} from {source}: sha256 {actual} does not match the pinned {expected_sha} "
                            f"(file not written)")
    atomic_write_files({dest: verified})


class DownloadError(DataError):
    """The network failed (as opposed to a file that arrived with the wrong content)."""


def _downloader(url: str) -> Callable[[BinaryIO], None]:
    def write(handle: BinaryIO) -> None:
        try:
            with urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response:
                shutil.copyfileobj(response, handle)
        except (urllib.error.URLError, http.client.HTTPException, OSError) as err:
            raise DownloadError(f"could not download {url} ({getattr(err, 'reason', None) or err})") from None
    return write


def _copier(path: Path) -> Callable[[BinaryIO], None]:
    def write(handle: BinaryIO) -> None:
        try:
            with open(path, "rb") as source:
                shutil.copyfileobj(source, handle)
        except OSError as err:
            raise DataError(f"cannot copy {path}: {err.strerror or err}") from None
    return write


def install_split_lists(dataset: str, split_dir: Path, problems: Problems, offline: bool = False,
                        from_dir: Optional[Path] = None) -> dict[str, int]:
    """Bring every pinned list of `dataset` into `split_dir`; returns counts by outcome."""
    counts = {"in place": 0, "copied": 0, "downloaded": 0}
    network_down = False     # after one network failure, skip the rest rather than wait out every timeout
    for rel, (expected, _lines) in sorted(manifest.files_for(dataset).items()):
        dest = split_dir / rel
        stale = ""
        if dest.is_file():
            actual = sha256_file(dest)
            if actual == expected:
                counts["in place"] += 1
                continue
            stale = f"{dest} has sha256 {actual}, the pinned one is {expected}"
        if from_dir is not None:
            source, outcome, write = str(from_dir / rel), "copied", _copier(from_dir / rel)
        elif network_down:
            problems.add(SPLIT_LISTS, f"{dest} not downloaded (downloads stopped after the failure above)")
            continue
        elif offline:
            problems.add(SPLIT_LISTS, (stale + "; rerun without --offline to replace it") if stale else
                         f"{dest} missing (--offline)")
            continue
        else:
            url = manifest.url_for(dataset, rel)
            source, outcome, write = url, "downloaded", _downloader(url)
        try:
            install_verified(dest, expected, write, source)
            counts[outcome] += 1
        except DataError as err:
            network_down = network_down or isinstance(err, DownloadError)
            problems.add(SPLIT_LISTS, f"{err}" + (f" [{stale}]" if stale else ""))
    return counts


def derive_coco_unlabeled(root: Path, split_dir: Path, splits: tuple[str, ...], problems: Problems) -> list[str]:
    """UniMatch's COCO unlabeled set is train2017 minus the labeled images; write it where it is absent."""
    notes = []
    todo = [s for s in splits if (split_dir / s / LABELED_FILE).is_file() and
            not (split_dir / s / UNLABELED_FILE).is_file()]
    if not todo:
        return notes
    images_dir = root / "train2017"
    if not images_dir.is_dir():
        for split in todo:
            problems.add(DERIVED, f"{split_dir / split / UNLABELED_FILE} cannot be derived: {images_dir} is missing")
        return notes
    names = sorted(e.name for e in os.scandir(images_dir) if e.name.endswith(".jpg") and e.is_file())
    for split in todo:
        labeled = {Path(image).name for image, _ in read_split_file(split_dir / split / LABELED_FILE,
                                                                    check_exists=False)}
        lines = [f"train2017/{name} masks/{Path(name).stem}.png" for name in names if name not in labeled]
        dest = split_dir / split / UNLABELED_FILE
        text = "".join(line + "\n" for line in lines)
        install_verified(dest, _sha256_text(text), lambda handle: handle.write(text.encode()), "train2017")
        expected = COCO_TRAIN2017_IMAGES - len(labeled)
        gap = "" if len(lines) == expected else f" (the full train2017 gives {expected}: is it complete?)"
        notes.append(f"derived {dest} ({len(lines)} images; not checksummed){gap}")
    return notes


def _sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


# --- the dataset tree ------------------------------------------------------------------------------------------

def read_lists(spec: DatasetSpec, split_dir: Path, problems: Problems) -> dict[str, list[tuple[str, str]]]:
    """Every present list of the dataset's registered splits plus val, keyed by its path in the split folder."""
    wanted = [f"{split}/{name}" for split in spec.splits for name in (LABELED_FILE, UNLABELED_FILE)] + [VAL_FILE]
    lists = {}
    for rel in wanted:
        if (split_dir / rel).is_file():
            try:
                lists[rel] = read_split_file(split_dir / rel, check_exists=False)
            except DataError as err:
                problems.add(SPLIT_LISTS, str(err))
    return lists


def check_tree(spec: DatasetSpec, root: Path, lists: dict[str, list[tuple[str, str]]], problems: Problems,
               sample: int = DEFAULT_SAMPLE, check_all: bool = False, progress: bool = True) -> list[str]:
    """Existence of every listed file, then contents of a sample (or all); returns summary lines.

    Progress bars show on a terminal only (tqdm's disable=None), so logs and CI output stay clean."""
    listed_in: dict[str, str] = {}           # file -> first list naming it, for the error message
    pairs: set[tuple[str, str]] = set()      # image/mask pairs whose masks are read (labeled and val)
    unlabeled: set[tuple[str, str]] = set()  # pairs of unlabeled lists: their masks are never read for training
    for rel, items in lists.items():
        is_unlabeled = rel.endswith(UNLABELED_FILE)
        for image, mask in items:
            listed_in.setdefault(image, rel)
            if is_unlabeled:
                unlabeled.add((image, mask))
            else:
                listed_in.setdefault(mask, rel)
                pairs.add((image, mask))
    unlabeled_masks = {mask for _, mask in unlabeled} - listed_in.keys()
    bar = {"unit": "file", "leave": False, "disable": None if progress else True}
    missing = set()
    for path in tqdm(sorted(listed_in), desc="files present", **bar):
        if not (root / path).is_file():
            missing.add(path)
            problems.add(MISSING, f"{root / path} (listed in {listed_in[path]})")
    absent_masks = sum(not (root / mask).is_file() for mask in unlabeled_masks)

    present = sorted(p for p in pairs if not {p[0], p[1]} & missing)
    checkable = len(present)
    images_only = sorted({image for image, _ in unlabeled} - missing - {image for image, _ in pairs})
    rng = random.Random(0)                   # the same sample every run, so a fix can be re-checked
    if not check_all:
        present = rng.sample(present, min(sample, len(present)))
        images_only = rng.sample(images_only, min(sample, len(images_only)))
    jobs = [(image, mask) for image, mask in present] + [(image, None) for image in images_only]
    for image, mask in tqdm(jobs, desc="contents", **bar):
        check_sample(root, image, mask, spec.num_classes, problems)

    lines = [f"listed files: {len(listed_in)} ({len(missing)} missing)",
             f"contents checked: {len(present)} of {checkable} present image/mask pairs "
             f"and {len(images_only)} unlabeled-only images"
             + ("" if check_all else " (a sample; --check-all checks every file)")]
    if absent_masks:
        lines.append(f"note: {absent_masks} masks named in unlabeled lists are absent; unlabeled images' masks "
                     f"are never used for training")
    return lines


def check_sample(root: Path, image_rel: str, mask_rel: Optional[str], num_classes: int, problems: Problems) -> None:
    """Decode one image (and its mask): mode, label values in [0, num_classes) ∪ {255}, equal sizes."""
    image_path = root / image_rel
    try:
        with Image.open(image_path) as image:
            image.load()          # decode fully: a truncated file fails here, not mid-training
            image_size = image.size
    except _READ_ERRORS as err:
        problems.add(UNREADABLE, f"{image_path}: {err}")
        return
    if mask_rel is None:
        return
    mask_path = root / mask_rel
    try:
        with Image.open(mask_path) as mask:
            mask.load()
            mode, mask_size, labels = mask.mode, mask.size, np.asarray(mask)
    except _READ_ERRORS as err:
        problems.add(UNREADABLE, f"{mask_path}: {err}")
        return
    if mode not in ("P", "L"):
        problems.add(MODE, f"{mask_path} has mode {mode!r}")
        return
    if mask_size != image_size:
        problems.add(SIZE, f"{mask_path} is {mask_size[0]}x{mask_size[1]} but {image_path} is "
                           f"{image_size[0]}x{image_size[1]}")
    bad = [int(v) for v in np.unique(labels) if v >= num_classes and v != IGNORE_INDEX]
    if bad:
        problems.add(VALUES, f"{mask_path} has {bad} (allowed 0..{num_classes - 1} and {IGNORE_INDEX})")


# --- command line ----------------------------------------------------------------------------------------------

def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m datasets.prepare", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", choices=REAL_DATASETS)
    parser.add_argument("--root", help="dataset root folder (default: the dataset's default_root, e.g. data/VOC2012)")
    parser.add_argument("--splits-dir", help="where split lists go (default: the dataset's, e.g. data/splits/pascal)")
    parser.add_argument("--offline", action="store_true", help="never download; lists must already be in place")
    parser.add_argument("--from-dir", help="copy the lists from this local folder (same layout, same checksums) "
                                           "instead of downloading, e.g. a UniMatch checkout's splits/pascal")
    parser.add_argument("--check-all", action="store_true",
                        help="decode every listed image and mask instead of a sample: slow (Pascal ~23k files, "
                             "Cityscapes ~7k 2048x1024 PNGs, COCO ~128k files: minutes to tens of minutes)")
    parser.add_argument("--sample", type=int, default=DEFAULT_SAMPLE,
                        help=f"image/mask pairs (and unlabeled images) decoded without --check-all "
                             f"(default {DEFAULT_SAMPLE}); existence of every listed file is always checked")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    if args.offline and args.from_dir:
        parser.error("--offline and --from-dir exclude each other (--from-dir never downloads anyway)")
    if args.sample < 0:
        parser.error("--sample must be >= 0")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    spec = get_spec(args.dataset)
    root = Path(args.root).expanduser() if args.root else REPO_ROOT / spec.default_root
    split_dir = Path(args.splits_dir).expanduser() if args.splits_dir else REPO_ROOT / spec.default_split_dir
    from_dir = Path(args.from_dir).expanduser() if args.from_dir else None
    if from_dir is not None and not from_dir.is_dir():
        raise DataError(f"--from-dir {from_dir} is not a folder")
    problems = Problems(spec.name)

    print(f"{spec.name}: {spec.description}\n  root:        {root}\n  split lists: {split_dir}")
    counts = install_split_lists(spec.name, split_dir, problems, args.offline, from_dir)
    counts["failed"] = len(problems.by_category.get(SPLIT_LISTS, []))
    print(f"  pinned lists (UniMatch commit {manifest.COMMIT[:10]}): "
          + ", ".join(f"{n} {outcome}" for outcome, n in counts.items() if n))
    if spec.name == "coco":
        print(f"  note: {manifest.UNPINNED_NOTE}")
        for note in derive_coco_unlabeled(root, split_dir, spec.splits, problems):
            print(f"  {note}")

    if root.is_dir():
        lists = read_lists(spec, split_dir, problems)
        for line in check_tree(spec, root, lists, problems, args.sample, args.check_all, not args.no_progress):
            print(f"  {line}")
    else:
        problems.add(NO_ROOT, f"{root} does not exist (pass --root DIR)")

    if not problems:
        print(f"all good: train with data.root={root} data.split_dir={split_dir}")
        return 0
    if NEEDS_DOWNLOAD & problems.by_category.keys():
        print("\nHow to get it:\n" + HOW_TO_GET[spec.name].replace("ROOT", str(root)))
    sys.stdout.flush()
    for line in problems.lines():
        print(f"error: {line}", file=sys.stderr)
    return 2


def run(argv=None) -> None:
    """benchmark.errors.run_main's contract, mirrored because the data layer must not import benchmark."""
    try:
        code = main(argv)
    except KeyboardInterrupt:
        print("\ninterrupted; rerun the same command (lists already verified are kept)", file=sys.stderr)
        sys.exit(130)
    except DataError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    sys.exit(code)


if __name__ == "__main__":
    run(sys.argv[1:])

import hashlib
from pathlib import Path

import pytest

from datasets.errors import DataError
from datasets.splits import available_splits, read_split_file, sha256_file, split_paths, val_path

SHARED_SPLITS = Path("/work/shared/splits/unimatch")


def touch(root: Path, rel: str) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")


def write_list(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_reads_pairs_tolerating_blank_lines_trailing_whitespace_and_crlf(tmp_path):
    split = write_list(tmp_path / "l.txt", "JPEGImages/a.jpg SegmentationClass/a.png  \r\n\r\n"
                                           "  JPEGImages/b.jpg\tSegmentationClass/b.png\n\n\n")
    assert read_split_file(split, check_exists=False) == [
        ("JPEGImages/a.jpg", "SegmentationClass/a.png"), ("JPEGImages/b.jpg", "SegmentationClass/b.png")]


@pytest.mark.parametrize("bad_line", ["JPEGImages/c.jpg", "a.jpg b.png c.png"])
def test_malformed_line_names_file_and_line_number(tmp_path, bad_line):
    split = write_list(tmp_path / "labeled.txt", f"a.jpg a.png\n\n{bad_line}\n")
    with pytest.raises(DataError) as info:
        read_split_file(split, check_exists=False)
    assert str(split) in str(info.value) and "line 3" in str(info.value)


def test_missing_and_empty_split_files_are_named(tmp_path):
    with pytest.raises(DataError, match="nope.txt"):
        read_split_file(tmp_path / "nope.txt")
    empty = write_list(tmp_path / "empty.txt", "\n  \n")
    with pytest.raises(DataError, match="empty.txt"):
        read_split_file(empty)


def test_missing_listed_files_are_counted_and_first_few_listed(tmp_path):
    root = tmp_path / "data"
    lines = []
    for i in range(10):
        lines.append(f"JPEGImages/{i}.jpg SegmentationClass/{i}.png")
        if i != 1:
            touch(root, f"JPEGImages/{i}.jpg")
        if i < 3:
            touch(root, f"SegmentationClass/{i}.png")
    split = write_list(tmp_path / "splits" / "labeled.txt", "\n".join(lines) + "\n")
    with pytest.raises(DataError) as info:
        read_split_file(split, root)
    message = str(info.value)
    # 1 missing image (line 2) + 7 missing masks (lines 4..10)
    assert str(split) in message and "8 listed file(s) missing" in message
    assert f"line 2: {root / 'JPEGImages/1.jpg'}" in message
    assert f"line 4: {root / 'SegmentationClass/3.png'}" in message
    assert "and 3 more" in message


def test_unlabeled_lists_can_skip_mask_checks(tmp_path):
    root = tmp_path / "data"
    touch(root, "JPEGImages/a.jpg")
    split = write_list(tmp_path / "unlabeled.txt", "JPEGImages/a.jpg SegmentationClass/a.png\n")
    assert read_split_file(split, root, require_masks=False) == [("JPEGImages/a.jpg", "SegmentationClass/a.png")]
    with pytest.raises(DataError, match="SegmentationClass/a.png"):
        read_split_file(split, root)
    # without a root there is nothing to resolve the paths against, so nothing is checked
    assert len(read_split_file(split)) == 1


def test_split_paths_and_val_path(tmp_path):
    for split in ("92", "183"):
        write_list(tmp_path / split / "labeled.txt", "a b\n")
        write_list(tmp_path / split / "unlabeled.txt", "a b\n")
    (tmp_path / "not_a_split").mkdir()
    write_list(tmp_path / "val.txt", "a b\n")
    assert available_splits(tmp_path) == ["183", "92"]
    assert split_paths(tmp_path, "92") == (tmp_path / "92" / "labeled.txt", tmp_path / "92" / "unlabeled.txt")
    assert val_path(tmp_path) == tmp_path / "val.txt"
    with pytest.raises(DataError) as info:
        split_paths(tmp_path, "366")
    assert "'366'" in str(info.value) and "183, 92" in str(info.value)
    with pytest.raises(DataError, match="does not exist"):
        split_paths(tmp_path / "missing", "92")
    with pytest.raises(DataError, match="val.txt"):
        val_path(tmp_path / "92")


def test_sha256_file_matches_hashlib(tmp_path):
    payload = bytes(range(256)) * 5000
    path = tmp_path / "blob.bin"
    path.write_bytes(payload)
    assert sha256_file(path, chunk_size=1000) == hashlib.sha256(payload).hexdigest()


@pytest.mark.skipif(not SHARED_SPLITS.is_dir(), reason="official split lists not available")
def test_official_unimatch_lists_parse():
    assert len(read_split_file(SHARED_SPLITS / "pascal" / "92" / "labeled.txt", check_exists=False)) == 92
    labeled, unlabeled = split_paths(SHARED_SPLITS / "cityscapes", "1_2")
    assert len(read_split_file(labeled, check_exists=False)) == 1488
    assert len(read_split_file(unlabeled, check_exists=False)) == 1487
    assert len(read_split_file(val_path(SHARED_SPLITS / "cityscapes"), check_exists=False)) == 500

"""`python -m datasets.prepare`: pinned split lists fetched/copied with checksum verification, the dataset tree
checked against them, one `error:` line per problem category and exit 2 when anything is wrong."""
from __future__ import annotations

import hashlib
import io
import subprocess
import sys
import urllib.error
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from datasets import manifest, prepare
from test_real_layouts import SHARED_SPLITS, build_tree, needs_shared

REPO = Path(__file__).resolve().parents[2]


def _pin(monkeypatch, dataset: str, official: Path, rels: list[str]) -> None:
    """Make the lists in `official` the pinned ones, as the real manifest pins UniMatch's."""
    files = {}
    for rel in rels:
        data = (official / rel).read_bytes()
        files[f"{dataset}/{rel}"] = (hashlib.sha256(data).hexdigest(), data.count(b"\n"))
    monkeypatch.setattr(manifest, "FILES", files)


@pytest.fixture
def pascal(tmp_path, monkeypatch):
    """A clean miniature Pascal tree, its lists pinned and held in an 'official' folder; split dir empty."""
    root, official, splits = tmp_path / "voc", tmp_path / "official", tmp_path / "splits"
    lists = build_tree("pascal", root, official, "92")
    _pin(monkeypatch, "pascal", official, sorted(lists))
    return {"root": root, "official": official, "splits": splits, "lists": lists}


def run_prepare(capsys, dataset, paths, *extra) -> tuple[int, str, str]:
    args = [dataset, "--root", str(paths["root"]), "--splits-dir", str(paths["splits"]), "--no-progress", *extra]
    code = prepare.main(args)
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


def error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("error: ")]


def test_clean_tree_passes_then_works_offline_from_the_installed_lists(pascal, capsys):
    code, out, err = run_prepare(capsys, "pascal", pascal, "--from-dir", str(pascal["official"]), "--check-all")
    assert code == 0 and err == "" and "3 copied" in out and "all good" in out
    for rel in pascal["lists"]:
        assert (pascal["splits"] / rel).read_bytes() == (pascal["official"] / rel).read_bytes()
    code, out, _ = run_prepare(capsys, "pascal", pascal, "--offline")
    assert code == 0 and "3 in place" in out


def test_missing_file_is_one_error_line_naming_it_and_how_to_get_it_is_printed(pascal, capsys):
    image = pascal["root"] / pascal["lists"]["92/labeled.txt"][1][0]
    image.unlink()
    code, out, err = run_prepare(capsys, "pascal", pascal, "--from-dir", str(pascal["official"]))
    assert code == 2
    [line] = error_lines(err)
    assert line.startswith("error: missing files (1)") and str(image) in line and "92/labeled.txt" in line
    assert "VOCtrainval_11-May-2012.tar" in out and "How to get it" in out


def _corrupt(root: Path, mask_rel: str) -> None:
    (root / mask_rel).write_bytes(b"\x89PNG\r\n\x1a\n garbage")


def _out_of_range(root: Path, mask_rel: str) -> None:
    labels = np.array(Image.open(root / mask_rel))
    labels[0, 0] = 37
    Image.fromarray(labels, "L").save(root / mask_rel)


def _rgb(root: Path, mask_rel: str) -> None:
    Image.open(root / mask_rel).convert("RGB").save(root / mask_rel)


def _wrong_size(root: Path, mask_rel: str) -> None:
    Image.open(root / mask_rel).resize((10, 10)).save(root / mask_rel)


@pytest.mark.parametrize("damage, category, detail", [
    (_corrupt, "unreadable files", ""), (_out_of_range, "label values out of range", "[37]"),
    (_rgb, "wrong mask mode", "'RGB'"), (_wrong_size, "size mismatch", "10x10")])
def test_damaged_mask_is_named_under_its_category(pascal, capsys, damage, category, detail):
    mask_rel = pascal["lists"]["val.txt"][0][1]
    damage(pascal["root"], mask_rel)
    code, _, err = run_prepare(capsys, "pascal", pascal, "--from-dir", str(pascal["official"]), "--check-all")
    assert code == 2
    [line] = error_lines(err)
    assert line.startswith(f"error: {category} (1)") and mask_rel in line and detail in line


def test_sample_zero_skips_content_checks_but_never_existence_checks(pascal, capsys):
    _corrupt(pascal["root"], pascal["lists"]["val.txt"][0][1])
    code, out, _ = run_prepare(capsys, "pascal", pascal, "--from-dir", str(pascal["official"]), "--sample", "0")
    assert code == 0 and "a sample; --check-all" in out
    (pascal["root"] / pascal["lists"]["val.txt"][0][0]).unlink()
    code, _, err = run_prepare(capsys, "pascal", pascal, "--offline", "--sample", "0")
    assert code == 2 and error_lines(err)[0].startswith("error: missing files")


def test_mismatched_list_in_place_is_an_error_naming_file_and_both_hashes(pascal, capsys):
    assert run_prepare(capsys, "pascal", pascal, "--from-dir", str(pascal["official"]))[0] == 0
    edited = pascal["splits"] / "92" / "labeled.txt"
    edited.write_text(edited.read_text() + "JPEGImages/2007_000033.jpg SegmentationClass/2007_000033.png\n")
    actual = hashlib.sha256(edited.read_bytes()).hexdigest()
    code, _, err = run_prepare(capsys, "pascal", pascal, "--offline")
    assert code == 2
    [line] = error_lines(err)
    expected = manifest.FILES["pascal/92/labeled.txt"][0]
    assert line.startswith("error: split lists (1)") and str(edited) in line and expected in line and actual in line


def test_tampered_source_is_rejected_and_never_written(pascal, capsys):
    source = pascal["official"] / "val.txt"
    source.write_text(source.read_text().upper())
    code, _, err = run_prepare(capsys, "pascal", pascal, "--from-dir", str(pascal["official"]))
    assert code == 2
    [line] = error_lines(err)
    assert "val.txt" in line and manifest.FILES["pascal/val.txt"][0] in line and "not written" in line
    assert not (pascal["splits"] / "val.txt").exists()
    assert sorted(p.name for p in pascal["splits"].iterdir()) == ["92"]   # no temp file left behind


def test_fetch_with_mocked_urlopen_accepts_good_content_and_rejects_bad(pascal, capsys, monkeypatch):
    served = {manifest.url_for("pascal", rel): (pascal["official"] / rel).read_bytes() for rel in pascal["lists"]}
    bad_url = manifest.url_for("pascal", "92/unlabeled.txt")
    served[bad_url] = b"JPEGImages/evil.jpg SegmentationClass/evil.png\n"
    requested = []

    def fake_urlopen(url, timeout):
        requested.append(url)
        return io.BytesIO(served[url])

    monkeypatch.setattr(prepare, "urlopen", fake_urlopen)
    code, out, err = run_prepare(capsys, "pascal", pascal)
    assert sorted(requested) == sorted(served) and "2 downloaded" in out and code == 2
    assert (pascal["splits"] / "92" / "labeled.txt").read_bytes() == served[manifest.url_for("pascal",
                                                                                              "92/labeled.txt")]
    assert not (pascal["splits"] / "92" / "unlabeled.txt").exists()
    assert sorted(p.name for p in (pascal["splits"] / "92").iterdir()) == ["labeled.txt"]
    assert any(bad_url in line and "does not match" in line for line in error_lines(err))


def test_network_failure_is_tried_once_then_the_rest_is_skipped(pascal, capsys, monkeypatch):
    calls = []

    def offline_urlopen(url, timeout):
        calls.append(url)
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(prepare, "urlopen", offline_urlopen)
    code, _, err = run_prepare(capsys, "pascal", pascal)
    assert code == 2 and len(calls) == 1
    line = error_lines(err)[0]
    assert line.startswith("error: split lists (3)") and "could not download" in line and "--from-dir" in line


def test_coco_unlabeled_list_is_derived_from_train2017_minus_labeled(tmp_path, capsys, monkeypatch):
    paths = {"root": tmp_path / "coco", "splits": tmp_path / "splits"}
    official = tmp_path / "official"
    build_tree("coco", paths["root"], official, "1_512")
    _pin(monkeypatch, "coco", official, ["1_512/labeled.txt", "val.txt"])   # unlabeled lists are not pinned
    code, out, err = run_prepare(capsys, "coco", paths, "--from-dir", str(official), "--check-all")
    assert code == 0, err
    derived = (paths["splits"] / "1_512" / "unlabeled.txt").read_text().splitlines()
    # train2017 holds ids 9, 25 (labeled) and 30; the line format is the official lists'
    assert derived == ["train2017/000000000030.jpg masks/000000000030.png"]
    assert "not checksummed" in out


def test_coco_without_train2017_explains_what_is_missing(tmp_path, capsys, monkeypatch):
    paths = {"root": tmp_path / "coco", "splits": tmp_path / "splits"}
    official = tmp_path / "official"
    build_tree("coco", tmp_path / "elsewhere", official, "1_512")
    _pin(monkeypatch, "coco", official, ["1_512/labeled.txt", "val.txt"])
    code, out, err = run_prepare(capsys, "coco", paths, "--from-dir", str(official))
    assert code == 2
    assert [line.split(" (")[0] for line in error_lines(err)] == ["error: unlabeled lists", "error: dataset root"]
    assert "train2017.zip" in out and "not in the pinned manifest" in out


def test_data_error_becomes_one_error_line_and_exit_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        prepare.run(["pascal", "--root", str(tmp_path), "--from-dir", str(tmp_path / "nope")])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip() == f"error: --from-dir {tmp_path / 'nope'} is not a folder"


@needs_shared
def test_cli_installs_the_real_official_lists_offline_and_reports_the_missing_root(tmp_path):
    splits = tmp_path / "splits"
    result = subprocess.run(
        [sys.executable, "-m", "datasets.prepare", "cityscapes", "--root", str(tmp_path / "none"),
         "--splits-dir", str(splits), "--from-dir", str(SHARED_SPLITS / "cityscapes"), "--no-progress"],
        cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    assert "11 copied" in result.stdout and "csCreateTrainIdLabelImgs" in result.stdout
    assert result.stderr.strip().splitlines() == [f"error: dataset root (1): {tmp_path / 'none'} does not exist "
                                                  f"(pass --root DIR)"]
    for rel, (sha, _) in manifest.files_for("cityscapes").items():
        assert hashlib.sha256((splits / rel).read_bytes()).hexdigest() == sha

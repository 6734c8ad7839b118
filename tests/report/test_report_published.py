"""benchmark/data/published.yaml holds the UniMatch README numbers exactly, and nulls for S4MIM/MaskMatch."""
from __future__ import annotations

import math

from benchmark.report.published import DEFAULT_PUBLISHED, DEFAULT_REGISTER, load_published, load_register
from benchmark.report.stats import fmt_cell, seed_stats

# Copied from the reference notes (section 3, "Published numbers"): UniMatch README tables.
EXPECTED = {
    ("pascal", "resnet101", 321): {
        "supervised": {"92": 45.1, "183": 55.3, "366": 64.8, "732": 69.7, "1464": 73.5},
        "unimatch": {"92": 75.2, "183": 77.2, "366": 78.8, "732": 79.9, "1464": 81.2}},
    ("cityscapes", "resnet50", 801): {
        "supervised": {"1_16": 63.3, "1_8": 70.2, "1_4": 73.1, "1_2": 76.6},
        "unimatch": {"1_16": 75.0, "1_8": 76.8, "1_4": 77.5, "1_2": 78.6}},
    ("cityscapes", "resnet101", 801): {
        "supervised": {"1_16": 66.3, "1_8": 72.8, "1_4": 75.0, "1_2": 78.0},
        "unimatch": {"1_16": 76.6, "1_8": 77.9, "1_4": 79.2, "1_2": 79.5}},
    ("coco", "xception65", 513): {
        "supervised": {"1_512": 22.9, "1_256": 28.0, "1_128": 33.6, "1_64": 37.8, "1_32": 42.2},
        "unimatch": {"1_512": 31.9, "1_256": 38.9, "1_128": 44.4, "1_64": 48.2, "1_32": 49.8}},
}


def test_unimatch_readme_numbers_exact():
    entries = load_published(DEFAULT_PUBLISHED)
    found = {}
    for e in entries:
        if e.method in ("supervised", "unimatch"):
            assert "UniMatch README" in e.source
            found.setdefault((e.dataset, e.backbone, e.crop), {}).setdefault(e.method, {})[e.split] = e.miou
    assert found == EXPECTED


def test_paper_methods_present_and_null():
    entries = [e for e in load_published(DEFAULT_PUBLISHED) if e.method in ("s4mim", "maskmatch")]
    assert {e.method for e in entries} == {"s4mim", "maskmatch"}
    assert all(e.miou is None and e.source for e in entries)   # never invented


def test_register_absent_is_not_an_error(tmp_path):
    state = load_register(tmp_path / "interpretations.yaml")
    assert state.entries == [] and state.problem.startswith("register not found")


def test_default_register_is_the_shipped_folder():
    state = load_register(DEFAULT_REGISTER)
    assert DEFAULT_REGISTER.is_dir() and state.problem is None
    assert {"s4mim", "maskmatch"} <= {entry["method"] for entry in state.entries}


def test_register_reads_exactly_the_path_given(tmp_path):
    folder = tmp_path / "interpretations"
    folder.mkdir()
    (folder / "m.yaml").write_text("- {id: m-1, method: m}\n")
    assert load_register(tmp_path / "interpretations.yaml").problem.startswith("register not found")  # no fallback
    (folder / "wrapped.yaml").write_text("entries:\n  - {id: m-2, method: m}\n")
    state = load_register(folder)
    assert [e["id"] for e in state.entries] == ["m-1"] and "wrapped.yaml is not a YAML list" in state.problem


def test_seed_statistics_and_intervals():
    # t(0.975, 2 df) = 4.3027 (any t table): mean 2, sd 1, n 3 -> 2 ± 4.3027/√3
    half = 4.302652729911275 / math.sqrt(3)
    assert fmt_cell(seed_stats([1.0, 2.0, 3.0])) == f"2.00 ± 1.00\n[{2 - half:.2f}, {2 + half:.2f}] (n=3)"
    assert fmt_cell(seed_stats([math.nan])) == "NaN (diverged)"
    assert fmt_cell(seed_stats([])) == "—"
    assert fmt_cell(seed_stats([4.0])) == "4.00 (n=1)"       # one seed: no spread, no interval

"""The report's headline, grid.references columns and seed counts, computed from given results files."""
from __future__ import annotations

import statistics

import pytest
import yaml

from benchmark.report.headline import dataset_headline
from benchmark.report.results_store import load_results
from benchmark.report.stats import seed_stats, welch
from tests.fixtures.report_factory import write_run

SUP = [36.0, 40.0, 38.5]
UNI = [42.0, 47.5, 43.2]
FIX = [40.0, 45.0, 44.5]
FULL = [55.0, 54.0, 56.5]


def _mark_reference(folder):
    config = yaml.safe_load((folder / "config.yaml").read_text())
    config["output"] = {"reference": True}
    (folder / "config.yaml").write_text(yaml.safe_dump(config))


@pytest.fixture()
def store(tmp_path):
    for seed in range(3):
        write_run(tmp_path, "animals", "1_128", "supervised", seed, SUP[seed], num_labeled=8)
        write_run(tmp_path, "animals", "1_128", "unimatch", seed, UNI[seed], num_labeled=8)
        write_run(tmp_path, "animals", "1_128", "fixmatch", seed, FIX[seed], num_labeled=8)
        write_run(tmp_path, "animals", "1_32", "supervised", seed, 45.0 + seed, num_labeled=32)
        _mark_reference(write_run(tmp_path, "animals", "full", "supervised", seed, FULL[seed], num_labeled=320))
    return load_results(tmp_path)


def test_headline_gains_p_values_and_full_reference(store):
    uni = welch(seed_stats(UNI), seed_stats(SUP))
    fix = welch(seed_stats(FIX), seed_stats(SUP))
    expected = (f"animals, 8 labels: UniMatch {uni.delta:+.1f} (p = {uni.p:.2f}), FixMatch {fix.delta:+.1f} "
                f"(p = {fix.p:.2f}) over supervised {statistics.fmean(SUP):.1f}; "
                f"all labels {statistics.fmean(FULL):.1f}")
    assert uni.delta > fix.delta and 0.01 < uni.p < 0.05 < fix.p   # larger gain first; two-decimal p
    assert dataset_headline(store.runs, "animals") == expected


def test_headline_names_the_split_when_its_size_is_unknown(tmp_path):
    for seed in range(2):
        write_run(tmp_path, "pascal", "1_16", "supervised", seed, 60.0 + seed)
        write_run(tmp_path, "pascal", "1_16", "fixmatch", seed, 62.0 + seed)
    line = dataset_headline(load_results(tmp_path).runs, "pascal")
    assert line.startswith("pascal, split 1_16: FixMatch +2.0 (")
    assert "all labels" not in line


def test_reference_is_a_column_not_a_split_and_tables_count_seeds(store):
    from benchmark.report.comparison import main_table, significance_table
    from benchmark.report.document import Numbering
    table = main_table(store.runs, [], "animals", "best", Numbering())
    assert table.columns == ["Method", "1_128", "1_32", "full (reference)"]
    rows = {r[0]: r for r in table.rows}
    assert rows["Supervised"][3].startswith(f"{statistics.fmean(FULL):.2f}")
    assert rows["UniMatch"][3] == "—"
    assert all(j != 3 for _, j in table.bold)       # a reference is never ranked
    assert "over 3 seeds" in table.caption
    sig = significance_table(store.runs, "animals", Numbering())
    assert sig.columns == ["Comparison", "1_128", "1_32"]   # no test against the reference
    assert "over 3 seeds" in sig.caption


def test_seed_phrase_says_when_cells_differ(tmp_path):
    from benchmark.report.stats import seeds_phrase
    for seed in range(3):
        write_run(tmp_path, "animals", "1_128", "supervised", seed, 30.0)
    write_run(tmp_path, "animals", "1_128", "unimatch", 0, 30.0)
    assert seeds_phrase(load_results(tmp_path).runs) == "over 1–3 seeds per cell"


def test_per_class_table_of_a_reference_split_counts_its_seeds(store):
    from benchmark.report.details import per_class_frame, per_class_table
    from benchmark.report.document import Numbering
    frame = per_class_frame(store.runs, [], "animals", "full")
    assert "over 3 seeds" in per_class_table(frame, store.runs, "animals", "full", Numbering()).caption

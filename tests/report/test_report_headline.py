"""The report's headline, grid.references columns and seed counts, computed from given results files."""
from __future__ import annotations

import statistics

import pytest
import yaml

from benchmark.report.headline import dataset_headline
from benchmark.report.results_store import load_results
from scipy import stats as sps
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


def _welch(a, b):
    """Δ, Welch 95 % CI (Welch–Satterthwaite df, t quantile) and p, worked from the formulas."""
    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    delta, se = statistics.fmean(a) - statistics.fmean(b), (va + vb) ** 0.5
    half = sps.t.ppf(0.975, df) * se
    return delta, (delta - half, delta + half), 2 * sps.t.sf(abs(delta) / se, df)


def test_headline_gains_ci_and_holm_adjusted_p_and_full_reference(store):
    uni, fix = _welch(UNI, SUP), _welch(FIX, SUP)
    # The significance table's family at 1_128: FixMatch and UniMatch vs supervised, FixMatch vs UniMatch.
    family = sorted([uni[2], fix[2], _welch(FIX, UNI)[2]])
    holm = [min(1.0, p * (3 - i)) for i, p in enumerate(family)]
    holm = [max(holm[:i + 1]) for i in range(3)]
    adjusted = {p: a for p, a in zip(family, holm)}

    def part(name, c):
        return f"{name} {c[0]:+.1f} [{c[1][0]:+.1f}, {c[1][1]:+.1f}] (p_Holm = {adjusted[c[2]]:.2f})"

    expected = (f"animals, 8 labels: {part('UniMatch', uni)}, {part('FixMatch', fix)} over supervised "
                f"{statistics.fmean(SUP):.1f}; all labels {statistics.fmean(FULL):.1f}")
    assert uni[0] > fix[0] and adjusted[uni[2]] > uni[2]   # larger gain first; the adjusted p is shown
    assert dataset_headline(store.runs, "animals") == expected


def test_headline_names_the_split_when_its_size_is_unknown(tmp_path):
    for seed in range(2):
        write_run(tmp_path, "pascal", "1_16", "supervised", seed, 60.0 + seed)
        write_run(tmp_path, "pascal", "1_16", "fixmatch", seed, 62.0 + seed)
    line = dataset_headline(load_results(tmp_path).runs, "pascal")
    assert line.startswith("pascal, split 1_16: FixMatch +2.0 [")
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
    assert {r[1] for r in sig.rows} == {"1_128"}   # no test against the reference (1_32: supervised only)
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


def test_per_class_figure_promises_gains_only_where_it_draws_them(tmp_path):
    # A split with only the supervised reference has no baseline to gain over: its heatmap draws IoU alone, and
    # its caption must not announce a gain panel.
    from benchmark.report.__main__ import main
    for seed in range(2):
        write_run(tmp_path / "results", "animals", "1_128", "supervised", seed, SUP[seed], num_labeled=8)
        write_run(tmp_path / "results", "animals", "1_128", "unimatch", seed, UNI[seed], num_labeled=8)
        _mark_reference(write_run(tmp_path / "results", "animals", "full", "supervised", seed, FULL[seed],
                                  num_labeled=320))
    assert main(["--results", str(tmp_path / "results"), "--out", str(tmp_path / "out")]) == 0
    captions = {line.split("split ")[1].split(":")[0]: line for line in
                (tmp_path / "out" / "report.md").read_text().splitlines() if "per-class IoU at best-on-val" in line}
    assert "gain over the supervised baseline" in captions["1_128"]
    assert "gain" not in captions["full"]
    md = (tmp_path / "out" / "report.md").read_text()
    full_table_note = md[md.index("split full: per-class IoU (%)"):].split("Per-seed std")[0]
    assert "Δ = gain" not in full_table_note and "Δ = gain" in md[md.index("split 1_128: per-class IoU (%)"):]

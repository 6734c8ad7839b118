"""The report's statistics on given results files, against answers worked out here: Holm on fixed p-values, the
paired test under per-seed data draws and Welch elsewhere, their intervals, Hedges' g and the power figures."""
from __future__ import annotations

import math
import statistics

import pytest
from scipy import stats as sps

from benchmark.report.comparison import significance_rows, significance_table
from benchmark.report.document import Numbering
from benchmark.report.inference import Comparison, holm
from benchmark.report.results_store import load_results
from tests.fixtures.report_factory import write_run

SUP = [40.0, 43.0, 41.5, 44.0]
FIX = [42.5, 45.0, 44.5, 46.5]     # tracks SUP seed by seed: pairing removes the shared spread


def _per_seed(seed, digest=None):
    return {"design": "per_seed", "generator_seed": 0, "digest": digest or f"draw{seed}", "pinned": True,
            "custom": False}


def _tree(tmp_path, draw=None, fix_draw=None):
    for seed in range(4):
        write_run(tmp_path, "animals", "8", "supervised", seed, SUP[seed],
                  **({"data_draw": draw(seed)} if draw else {}))
        fd = fix_draw or draw
        write_run(tmp_path, "animals", "8", "fixmatch", seed, FIX[seed], **({"data_draw": fd(seed)} if fd else {}))
    return load_results(tmp_path).runs


def _only(runs) -> Comparison:
    row, = significance_rows(runs, "animals")
    assert (row.method, row.base) == ("fixmatch", "supervised")
    return row.comparison


def _power(nc: float, df: float) -> float:
    """Two-sided power of a t-test at α = 0.05 from the noncentral t distribution."""
    crit = sps.t.ppf(0.975, df)
    return sps.nct.sf(crit, df, nc) + sps.nct.cdf(-crit, df, nc)


def test_holm_on_four_fixed_p_values():
    # sorted 0.005, 0.01, 0.03, 0.04 -> ×4, ×3, ×2, ×1 = 0.02, 0.03, 0.06, 0.04 -> running max 0.02, 0.03, 0.06, 0.06
    ps = [0.01, 0.04, 0.03, 0.005]
    out = holm([Comparison(1.0, p) for p in ps] + [Comparison(1.0, None), Comparison(1.0, math.nan)])
    assert [c.p_holm for c in out[:4]] == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert out[4].p_holm is None and out[5].p_holm is None            # untested: not part of the family
    assert [c.significant for c in out[:4]] == [True, False, False, True]


def test_per_seed_draws_pair_by_seed(tmp_path):
    c = _only(_tree(tmp_path, draw=_per_seed))
    diffs = [f - s for f, s in zip(FIX, SUP)]
    mean, sd = statistics.fmean(diffs), statistics.stdev(diffs)
    half = 3.182446305284263 * sd / 2          # t(0.975, 3 df) = 3.1824 from a t table; √4 = 2
    assert c.test == "paired" and c.n == (4, 4)
    assert c.delta == pytest.approx(mean)
    assert c.ci == pytest.approx((mean - half, mean + half))
    assert c.p == pytest.approx(2 * sps.t.sf(mean / (sd / 2), 3))
    # MDE: the difference the paired test detects with 80 % power; seeds needed: the first n reaching it
    assert _power(c.mde / sd * 2, 3) == pytest.approx(0.8, abs=1e-4)
    table = significance_table(_tree(tmp_path, draw=_per_seed), "animals", Numbering())
    notes = " ".join(table.notes)
    assert table.rows[0][2] == "paired, 4 seeds"
    assert "paired t-test over 4 seeds, each seed its own data draw" in notes
    assert "seed k trains on draw k of the generator (data.draws: per_seed)" in notes


def test_unpaired_designs_use_welch(tmp_path):
    single = _only(_tree(tmp_path / "a", draw=lambda s: {"design": "single", "digest": "one"}))
    unrecorded = _only(_tree(tmp_path / "b"))
    mixed = _only(_tree(tmp_path / "c", draw=_per_seed, fix_draw=lambda s: {"design": "single"}))
    other_draws = _only(_tree(tmp_path / "d", draw=_per_seed, fix_draw=lambda s: _per_seed(s, f"other{s}")))
    va, vb = statistics.variance(FIX) / 4, statistics.variance(SUP) / 4
    df = (va + vb) ** 2 / (va ** 2 / 3 + vb ** 2 / 3)          # Welch–Satterthwaite
    delta = statistics.fmean(FIX) - statistics.fmean(SUP)
    half = sps.t.ppf(0.975, df) * math.sqrt(va + vb)
    for c in (single, unrecorded, mixed, other_draws):
        assert c.test == "welch" and c.n == (4, 4)
        assert c.ci == pytest.approx((delta - half, delta + half))
        assert c.p == pytest.approx(2 * sps.t.sf(delta / math.sqrt(va + vb), df))
    paired = _only(_tree(tmp_path / "e", draw=_per_seed))
    assert paired.p < single.p               # the shared draw's spread is what pairing removes
    table = significance_table(_tree(tmp_path / "a", draw=lambda s: {"design": "single"}), "animals", Numbering())
    assert table.rows[0][2] == "Welch, 4 vs 4 seeds"
    assert "Welch's t-test" in table.notes[0] and "one data draw shared by every seed" in " ".join(table.notes)


def test_hedges_g_mde_and_seeds_needed_for_welch(tmp_path):
    a, b = [50.0, 52.0, 51.0], [50.5, 51.0, 52.5]     # overlapping: not significant
    for seed in range(3):
        write_run(tmp_path, "animals", "8", "supervised", seed, b[seed])
        write_run(tmp_path, "animals", "8", "fixmatch", seed, a[seed])
    c = _only(load_results(tmp_path).runs)
    pooled = math.sqrt((statistics.variance(a) + statistics.variance(b)) / 2)
    d = (statistics.fmean(a) - statistics.fmean(b)) / pooled
    assert c.g == pytest.approx(d * (1 - 3 / (4 * 6 - 9)))    # Hedges' small-sample correction J
    # two-sample power: noncentrality d·√(n/2), 2n − 2 df
    assert _power(c.mde / pooled * math.sqrt(3 / 2), 4) == pytest.approx(0.8, abs=1e-4)
    n = c.seeds_needed
    assert _power(abs(d) * math.sqrt(n / 2), 2 * n - 2) >= 0.8 > _power(abs(d) * math.sqrt((n - 1) / 2), 2 * n - 4)
    table = significance_table(load_results(tmp_path).runs, "animals", Numbering())
    row = dict(zip(table.columns, table.rows[0]))
    assert row["Seeds to detect Δ"] == str(n) and row["Hedges' g"] == f"{c.g:+.2f}"
    resolves = table.notes[-1]
    assert resolves.startswith(f"This grid resolves differences ≥ {c.mde:.2f} points")
    assert f"FixMatch vs Supervised on 8 ({c.delta:+.2f})" in resolves    # below its MDE: named

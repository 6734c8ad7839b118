"""Seed statistics and their text form: mean ± sample std (ddof=1), NaN runs excluded, Welch's t-test."""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

from benchmark.report.common import DASH

DECIMALS = 2           # the official logs print two decimals; more would be false precision
MIN_SEEDS_FOR_TEST = 2


@dataclass(frozen=True)
class SeedStats:
    values: tuple[float, ...]       # finite values only
    n_nan: int                      # runs whose value was NaN (diverged), excluded from mean and std

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values) if self.values else math.nan

    @property
    def std(self) -> float:
        # Sample standard deviation (ddof=1): with a handful of seeds the population form understates spread.
        return statistics.stdev(self.values) if len(self.values) >= 2 else math.nan

    @property
    def empty(self) -> bool:
        return self.n == 0 and self.n_nan == 0


def seed_stats(values) -> SeedStats:
    vals = [float(v) for v in values if v is not None]
    finite = tuple(v for v in vals if math.isfinite(v))
    return SeedStats(finite, len(vals) - len(finite))


def fmt(x: float | None, signed: bool = False) -> str:
    if x is None or not math.isfinite(x):
        return DASH
    return f"{x:+.{DECIMALS}f}" if signed else f"{x:.{DECIMALS}f}"


def fmt_mean_std(s: SeedStats) -> str:
    """'mean ± std' (or just the value for one seed); the seed count is shown separately by `fmt_cell`."""
    if s.n == 0:
        return "NaN (diverged)" if s.n_nan else DASH
    return fmt(s.mean) if s.n == 1 else f"{fmt(s.mean)} ± {fmt(s.std)}"


def fmt_cell(s: SeedStats) -> str:
    """A table cell: 'mean ± std (n=k)', with NaN seeds counted in the cell so nothing disappears silently."""
    core = fmt_mean_std(s)
    if s.n == 0:
        return core
    extra = f"; {s.n_nan} NaN excl." if s.n_nan else ""
    return f"{core} (n={s.n}{extra})"


@dataclass(frozen=True)
class Comparison:
    delta: float          # mean(a) - mean(b)
    p: float | None       # None: not enough seeds on one side
    test: str             # which test produced p


def welch(a: SeedStats, b: SeedStats) -> Comparison:
    """Two-sided Welch t-test of a vs b. scipy when importable; otherwise a normal approximation of the same
    statistic (documented in reports/README.md; it is anti-conservative for few seeds)."""
    delta = a.mean - b.mean
    if a.n < MIN_SEEDS_FOR_TEST or b.n < MIN_SEEDS_FOR_TEST:
        return Comparison(delta, None, "")
    se2 = a.std ** 2 / a.n + b.std ** 2 / b.n
    if se2 == 0:
        return Comparison(delta, math.nan, "zero variance")
    try:
        from scipy import stats as sps
    except ImportError:
        z = delta / math.sqrt(se2)
        return Comparison(delta, math.erfc(abs(z) / math.sqrt(2)), "normal approx.")
    res = sps.ttest_ind(a.values, b.values, equal_var=False)
    return Comparison(delta, float(res.pvalue), "Welch t")


def p_value_method() -> str:
    """How p-values are computed in this environment, for the notes under the tables."""
    try:
        import scipy  # noqa: F401
    except ImportError:
        return ("normal approximation of Welch's t statistic (scipy not installed: anti-conservative with "
                "few seeds)")
    return "two-sided Welch t-test (scipy, unequal variances)"


def fmt_comparison(c: Comparison | None) -> str:
    if c is None:
        return DASH
    if not math.isfinite(c.delta):
        return DASH
    if c.p is None:
        return f"{fmt(c.delta, signed=True)} (not enough seeds)"
    if not math.isfinite(c.p):
        return f"{fmt(c.delta, signed=True)} (p n/a, zero variance)"
    star = "*" if c.p < 0.05 else ""
    p_text = "p<0.001" if c.p < 0.001 else f"p={c.p:.3f}"
    return f"{fmt(c.delta, signed=True)} ({p_text}){star}"


def seeds_phrase(runs) -> str:
    """How many seeds a table is over, e.g. 'over 5 seeds' or 'over 2–5 seeds' (ablations may use fewer)."""
    per_cell: dict[tuple, set] = {}
    for r in runs:
        per_cell.setdefault((r.method, r.variant, r.split), set()).add(r.seed)
    counts = sorted({len(seeds) for seeds in per_cell.values()})
    if not counts:
        return "no seeds"
    if len(counts) == 1:
        return f"over {counts[0]} seed{'s' if counts[0] != 1 else ''}"
    return f"over {counts[0]}–{counts[-1]} seeds per cell"

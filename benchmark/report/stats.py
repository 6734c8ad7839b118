"""Seed statistics and their text form: mean ± sample std (ddof=1) and the t-interval of the mean, NaN runs
excluded. Comparisons between methods are in `inference`."""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

from scipy import stats as sps

from benchmark.report.labels import DASH

DECIMALS = 2           # the official logs print two decimals; more would be false precision
CONFIDENCE = 0.95


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
    def ci(self) -> tuple[float, float] | None:
        """95 % t-interval of the mean over seeds (Student's t with n − 1 degrees of freedom); None below 2."""
        if self.n < 2:
            return None
        if self.std == 0:
            return (self.mean, self.mean)
        ci = sps.ttest_1samp(self.values, 0.0).confidence_interval(CONFIDENCE)
        return (float(ci.low), float(ci.high))

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


def fmt_ci(ci: tuple[float, float] | None, signed: bool = False) -> str:
    if ci is None:
        return DASH
    return f"[{fmt(ci[0], signed)}, {fmt(ci[1], signed)}]"


def fmt_mean_std(s: SeedStats) -> str:
    """'mean ± std [95 % CI]' (or just the value for one seed); the seed count is shown by `fmt_cell`."""
    if s.n == 0:
        return "NaN (diverged)" if s.n_nan else DASH
    # The interval on a second line keeps the columns narrow enough for a portrait page (the Markdown and
    # LaTeX renderers join the lines with a space).
    return fmt(s.mean) if s.n == 1 else f"{fmt(s.mean)} ± {fmt(s.std)}\n{fmt_ci(s.ci)}"


def fmt_cell(s: SeedStats) -> str:
    """A table cell: 'mean ± std [CI] (n=k)', with NaN seeds counted in the cell so nothing disappears silently."""
    core = fmt_mean_std(s)
    if s.n == 0:
        return core
    extra = f"; {s.n_nan} NaN excl." if s.n_nan else ""
    return f"{core} (n={s.n}{extra})"


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

"""Comparing two methods' seeds: the test (paired by seed or Welch), the 95 % CI of the difference, Hedges' g,
the smallest difference the comparison could detect, and Holm's adjustment across a table.

Pairing follows the data draws (`summary.json` "data_draw"): under the `per_seed` design the run of training
seed k trained on draw k of the generator, shared by every method with that seed, so a per-seed difference
removes the draw's share of the spread; the seeds both sides have (with the same draw) are paired. Any other
design, or a run that does not record its draw, is compared with Welch's t-test. docs/statistics.md gives the
reasons and references.
"""
from __future__ import annotations

import dataclasses
import math
import statistics
import warnings
from dataclasses import dataclass

from scipy import stats as sps
from statsmodels.stats.meta_analysis import effectsize_smd
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import TTestIndPower, TTestPower

from benchmark.report.labels import DASH
from benchmark.report.stats import CONFIDENCE, fmt, fmt_ci

ALPHA = 0.05
POWER = 0.8
MIN_SEEDS_FOR_TEST = 2
MAX_SEEDS_SHOWN = 1000     # beyond this "seeds needed" says only that no practical grid resolves it
PAIRED, WELCH = "paired", "welch"
PER_SEED = "per_seed"


@dataclass(frozen=True)
class Comparison:
    delta: float                 # mean(a) − mean(b); paired: the mean per-seed difference over the pairs
    p: float | None              # None: not enough seeds; NaN: zero variance
    test: str = ""               # PAIRED | WELCH | "" (no test)
    n: tuple[int, int] = (0, 0)  # seeds on each side (paired: the pairs, twice)
    ci: tuple[float, float] | None = None    # 95 % CI of the difference
    g: float | None = None       # Hedges' g (bias-corrected standardised difference, pooled sd of the two sides)
    mde: float | None = None     # smallest |Δ| (points) detected with 80 % power at α = 0.05, given spread and n
    seeds_needed: int | None = None   # seeds per method to detect the observed Δ with 80 % power
    p_holm: float | None = None  # Holm-adjusted across the table (set by `holm`)

    @property
    def significant(self) -> bool:
        p = self.p_holm if self.p_holm is not None else self.p
        return p is not None and math.isfinite(p) and p < ALPHA


def _finite_by_seed(runs, metric: str) -> dict[int, tuple[float, object]]:
    """seed -> (value, draw digest) of the runs with a finite value."""
    out = {}
    for r in runs:
        v = getattr(r, metric).miou
        if math.isfinite(v):
            out[r.seed] = (v, r.draw_digest)
    return out


def pairs(a_runs, b_runs, metric: str = "best") -> list[tuple[float, float]] | None:
    """(a, b) values of the seeds both sides trained on the same draw, when every run is of the per-seed
    design and at least 2 seeds pair; else None (Welch)."""
    if not a_runs or not b_runs or any(r.draw_design != PER_SEED for r in (*a_runs, *b_runs)):
        return None
    a, b = _finite_by_seed(a_runs, metric), _finite_by_seed(b_runs, metric)
    common = [s for s in sorted(a.keys() & b.keys())
              if a[s][1] is None or b[s][1] is None or a[s][1] == b[s][1]]
    return [(a[s][0], b[s][0]) for s in common] if len(common) >= MIN_SEEDS_FOR_TEST else None


def _solve(power_cls, **kwargs) -> float | None:
    with warnings.catch_warnings():   # statsmodels warns when its root finder needs a second start
        warnings.simplefilter("ignore")
        try:
            value = float(power_cls().solve_power(alpha=ALPHA, power=POWER, **kwargs))
        except (ValueError, RuntimeError, ZeroDivisionError):
            return None
    return value if math.isfinite(value) else None


def _seeds(n: float | None) -> int | None:
    return None if n is None else math.ceil(n - 1e-9)


def _hedges_g(a: list[float], b: list[float]) -> float | None:
    if len(a) < 2 or len(b) < 2:
        return None
    sa, sb = statistics.stdev(a), statistics.stdev(b)
    if sa == 0 and sb == 0:
        return None
    g, _ = effectsize_smd(statistics.fmean(a), sa, len(a), statistics.fmean(b), sb, len(b))
    return float(g)


def compare(a_runs, b_runs, metric: str = "best") -> Comparison:
    """a vs b on one split: paired t-test over matching seeds of the per-seed draw design, else Welch."""
    paired = pairs(a_runs, b_runs, metric)
    if paired is not None:
        xa, xb = [p[0] for p in paired], [p[1] for p in paired]
        diffs = [x - y for x, y in paired]
        delta, n = statistics.fmean(diffs), len(diffs)
        sd = statistics.stdev(diffs)
        g = _hedges_g(xa, xb)
        if sd == 0:
            return Comparison(delta, math.nan, PAIRED, (n, n), g=g)
        res = sps.ttest_rel(xa, xb)
        ci = res.confidence_interval(CONFIDENCE)
        d_z = _solve(TTestPower, effect_size=None, nobs=n)
        needed = _solve(TTestPower, effect_size=abs(delta) / sd, nobs=None) if delta else None
        return Comparison(delta, float(res.pvalue), PAIRED, (n, n), (float(ci.low), float(ci.high)), g,
                          d_z * sd if d_z is not None else None, _seeds(needed))
    xa = [v for v, _ in _finite_by_seed(a_runs, metric).values()]
    xb = [v for v, _ in _finite_by_seed(b_runs, metric).values()]
    delta = statistics.fmean(xa) - statistics.fmean(xb) if xa and xb else math.nan
    if len(xa) < MIN_SEEDS_FOR_TEST or len(xb) < MIN_SEEDS_FOR_TEST:
        return Comparison(delta, None, "", (len(xa), len(xb)))
    na, nb = len(xa), len(xb)
    sa, sb = statistics.stdev(xa), statistics.stdev(xb)
    if sa == 0 and sb == 0:
        return Comparison(delta, math.nan, WELCH, (na, nb))
    res = sps.ttest_ind(xa, xb, equal_var=False)
    ci = res.confidence_interval(CONFIDENCE)
    # Power of the two-sample t-test on Cohen's d (pooled sd): statsmodels has no Welch power, and with
    # comparable spreads the two agree closely; the CI and p above are Welch's.
    pooled = math.sqrt(((na - 1) * sa ** 2 + (nb - 1) * sb ** 2) / (na + nb - 2))
    d = _solve(TTestIndPower, effect_size=None, nobs1=na, ratio=nb / na)
    needed = _solve(TTestIndPower, effect_size=abs(delta) / pooled, nobs1=None, ratio=1.0) if delta else None
    return Comparison(delta, float(res.pvalue), WELCH, (na, nb), (float(ci.low), float(ci.high)),
                      _hedges_g(xa, xb), d * pooled if d is not None else None, _seeds(needed))


def holm(comparisons: list[Comparison]) -> list[Comparison]:
    """The same comparisons with `p_holm`: Holm's step-down adjustment over those with a finite p (one
    family per table); the others keep `p_holm` None."""
    tested = [i for i, c in enumerate(comparisons) if c.p is not None and math.isfinite(c.p)]
    out = list(comparisons)
    if tested:
        _, adjusted, _, _ = multipletests([comparisons[i].p for i in tested], alpha=ALPHA, method="holm")
        for i, p in zip(tested, adjusted):
            out[i] = dataclasses.replace(comparisons[i], p_holm=float(p))
    return out


# -------------------------------------------------------------------------------------------------- text
def fmt_p(p: float | None) -> str:
    if p is None or not math.isfinite(p):
        return DASH
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def fmt_seeds_needed(c: Comparison) -> str:
    """Shown for a comparison that is not significant: how many seeds per method would detect its Δ."""
    if c.p is None or not math.isfinite(c.p) or c.significant:
        return DASH
    if c.seeds_needed is None or c.seeds_needed > MAX_SEEDS_SHOWN:
        return f"> {MAX_SEEDS_SHOWN}"
    return str(c.seeds_needed)


def test_label(c: Comparison) -> str:
    if c.test == PAIRED:
        return f"paired, {c.n[0]} seeds"
    if c.test == WELCH:
        return f"Welch, {c.n[0]} vs {c.n[1]} seeds"
    return "not enough seeds"


def fmt_delta_cell(c: Comparison) -> str:
    """One cell for tables with a Δ per split (ablations): 'Δ [CI] (p_Holm=…)*'."""
    if not math.isfinite(c.delta):
        return DASH
    if c.p is None:
        return f"{fmt(c.delta, True)} (not enough seeds)"
    if not math.isfinite(c.p):
        return f"{fmt(c.delta, True)} (p n/a, zero variance)"
    p = c.p_holm if c.p_holm is not None else c.p
    return f"{fmt(c.delta, True)} {fmt_ci(c.ci, True)} (p_Holm={fmt_p(p)}){'*' if c.significant else ''}"


def tests_sentence(comparisons: list[Comparison]) -> str:
    """Names the tests a table used, each with its interval and power."""
    used = {c.test for c in comparisons if c.test}
    parts = []
    if PAIRED in used:
        ns = sorted({c.n[0] for c in comparisons if c.test == PAIRED})
        span = str(ns[0]) if len(ns) == 1 else f"{ns[0]}–{ns[-1]}"
        parts.append(f"paired t-test over {span} seeds, each seed its own data draw shared by both methods "
                     "(t-interval of the mean per-seed difference; power of the paired t-test)")
    if WELCH in used:
        parts.append("Welch's t-test (unequal variances; Welch's interval; power of the two-sample t-test "
                     "on the pooled sd)")
    return "; ".join(parts) if parts else "no test (fewer than 2 seeds on a side)"


def draws_sentence(runs) -> str:
    """What varies between seeds besides the initialisation: the data draw design of the runs shown."""
    designs = {r.draw_design for r in runs}
    if designs == {PER_SEED}:
        return ("Data draws: seed k trains on draw k of the generator (data.draws: per_seed), the same draw "
                "for every method with that seed, so comparisons pair by seed.")
    if designs == {"single"}:
        return "Data draws: one data draw shared by every seed (data.draws: single); seeds vary the training only."
    if designs == {None}:
        return "Data draws: not recorded by these runs; seeds are compared as independent samples (Welch)."
    counts = ", ".join(f"{sum(1 for r in runs if r.draw_design == d)} {d or 'not recorded'}"
                       for d in sorted(designs, key=lambda d: d or ""))
    return (f"Data draws: mixed designs ({counts} runs); only methods whose runs are all per_seed pair by "
            "seed, the rest use Welch.")

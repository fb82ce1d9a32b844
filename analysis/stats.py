"""Confidence intervals and tests across seeds: the error bars of Figures 9-11, the summary table and the
comparisons table.

Seeds are the replicates of a cell, so a cell's accuracy is a mean over a handful of values and its 95%
interval is Student's t-interval. A difference between two cells is estimated under one of three variance
models, declared before the data are seen (the comparisons table names the one used):

- `welch` (default): unequal variances, unpaired seeds, Welch-Satterthwaite degrees of freedom;
- `paired`: the per-seed differences, when both cells ran the same seeds (seed s of one cell shares its data
  order and initial weights' seed with seed s of the other);
- `pooled`: one seed-to-seed SD for the whole family of cells (more degrees of freedom, assumes equal spread).

Equivalence is the two one-sided tests (TOST) against ±margin, i.e. the 90% interval inside the margin.
Every quantile and p-value comes from `scipy.stats`. With one seed there is no interval: NaN, never zero.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

MODELS: tuple[str, ...] = ("welch", "paired", "pooled")


def t_quantile(p: float, df: float) -> float:
    """The `p` quantile of Student's t with `df` (> 0, possibly fractional) degrees of freedom."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"p must lie in (0, 1), got {p}")
    if not df > 0:
        raise ValueError(f"degrees of freedom must be positive, got {df}")
    return float(stats.t.ppf(p, df))


@dataclass(frozen=True)
class Interval:
    """An estimate and the half-width of its confidence interval (NaN when it has none)."""

    estimate: float
    half_width: float
    n: int
    df: float = math.nan

    @property
    def low(self) -> float:
        return self.estimate - self.half_width

    @property
    def high(self) -> float:
        return self.estimate + self.half_width


def _finite(values: Iterable[float]) -> list[float]:
    return [float(v) for v in values if v is not None and math.isfinite(float(v))]


def mean_interval(values: Iterable[float], level: float = 0.95) -> Interval:
    """The mean of `values` (NaN and None dropped) and the half-width of its t-interval across them."""
    data = np.asarray(_finite(values))
    n = len(data)
    if n == 0:
        return Interval(math.nan, math.nan, 0)
    mean = float(data.mean())
    if n < 2:
        return Interval(mean, math.nan, n)
    half = t_quantile(0.5 + level / 2.0, n - 1) * float(stats.sem(data))
    return Interval(mean, half, n, float(n - 1))


def welch_interval(a: Iterable[float], b: Iterable[float], level: float = 0.95) -> Interval:
    """mean(a) - mean(b) and the half-width of Welch's t-interval; NaN half-width if either has < 2 values.

    When neither sample varies (identical seeds on both sides) the half-width is 0: no seed-to-seed noise
    was observed, which the reader should weigh by `n`."""
    xa, xb = _finite(a), _finite(b)
    if not xa or not xb:
        return Interval(math.nan, math.nan, min(len(xa), len(xb)))
    diff, n = float(np.mean(xa) - np.mean(xb)), min(len(xa), len(xb))
    if len(xa) < 2 or len(xb) < 2:
        return Interval(diff, math.nan, n)
    if np.var(xa) == 0.0 and np.var(xb) == 0.0:
        return Interval(diff, 0.0, n)
    result = stats.ttest_ind(xa, xb, equal_var=False)
    ci = result.confidence_interval(level)
    return Interval(diff, float(ci.high - diff), n, float(result.df))


@dataclass(frozen=True)
class Test:
    """A difference `a - b` under one variance model: estimate, standard error, df, two-sided p-value."""

    model: str
    diff: float
    se: float
    df: float

    @property
    def p(self) -> float:
        if not (math.isfinite(self.se) and self.se > 0 and self.df > 0):
            return math.nan
        return float(2.0 * stats.t.sf(abs(self.diff) / self.se, self.df))

    def interval(self, level: float) -> tuple[float, float]:
        if not (math.isfinite(self.se) and self.df > 0):
            return math.nan, math.nan
        if self.se == 0.0:
            return self.diff, self.diff
        low, high = stats.t.interval(level, self.df, loc=self.diff, scale=self.se)
        return float(low), float(high)

    def tost(self, margin: float) -> float:
        """The TOST p-value for |a - b| < margin: the larger of the two one-sided p-values."""
        if not (math.isfinite(margin) and margin > 0 and math.isfinite(self.se) and self.se > 0 and self.df > 0):
            return math.nan
        above = stats.t.sf((self.diff + margin) / self.se, self.df)
        below = stats.t.cdf((self.diff - margin) / self.se, self.df)
        return float(max(above, below))


def welch_test(a: Sequence[float], b: Sequence[float]) -> Test:
    xa, xb = np.asarray(_finite(a)), np.asarray(_finite(b))
    if len(xa) < 2 or len(xb) < 2:
        return Test("welch", _diff(xa, xb), math.nan, math.nan)
    result = stats.ttest_ind(xa, xb, equal_var=False)
    se = math.hypot(float(stats.sem(xa)), float(stats.sem(xb)))
    return Test("welch", _diff(xa, xb), se, float(result.df))


def paired_test(a: Sequence[float], b: Sequence[float]) -> Test:
    """`a[i]` and `b[i]` are the same seed."""
    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    d = d[np.isfinite(d)]
    if len(d) < 2:
        return Test("paired", float(d.mean()) if len(d) else math.nan, math.nan, math.nan)
    result = stats.ttest_rel(np.asarray(a, dtype=float), np.asarray(b, dtype=float), nan_policy="omit")
    return Test("paired", float(d.mean()), float(stats.sem(d)), float(result.df))


def pooled_sd(groups: Sequence[Sequence[float]]) -> tuple[float, int]:
    """The pooled within-cell SD of `groups` and its degrees of freedom (sum of n - 1 over cells)."""
    clean = [np.asarray(_finite(g)) for g in groups]
    clean = [g for g in clean if len(g) >= 2]
    df = sum(len(g) - 1 for g in clean)
    if df == 0:
        return math.nan, 0
    ss = sum(float(((g - g.mean()) ** 2).sum()) for g in clean)
    return math.sqrt(ss / df), df


def pooled_test(a: Sequence[float], b: Sequence[float], sd: float, df: int) -> Test:
    xa, xb = _finite(a), _finite(b)
    if not xa or not xb or df < 1:
        return Test("pooled", _diff(np.asarray(xa), np.asarray(xb)), math.nan, math.nan)
    return Test("pooled", _diff(np.asarray(xa), np.asarray(xb)), sd * math.sqrt(1 / len(xa) + 1 / len(xb)), df)


def _diff(xa: np.ndarray, xb: np.ndarray) -> float:
    return float(xa.mean() - xb.mean()) if len(xa) and len(xb) else math.nan


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjustment (family-wise error); NaN p-values stay NaN and do not count."""
    p = np.asarray(p_values, dtype=float)
    out = np.full(len(p), math.nan)
    finite = np.flatnonzero(np.isfinite(p))
    if len(finite):
        out[finite] = _holm(p[finite])
    return out.tolist()


def _holm(p: np.ndarray) -> np.ndarray:
    """scipy.stats offers only false-discovery-rate control, so Holm's few lines are written out here."""
    order = np.argsort(p, kind="stable")
    m = len(p)
    stepped = np.maximum.accumulate((m - np.arange(m)) * p[order])
    out = np.empty(m)
    out[order] = np.minimum(stepped, 1.0)
    return out


def steps_to_fraction(steps: Sequence[float], top1: Sequence[float], final: float, fraction: float = 0.95) -> float:
    """The first evaluation step whose top-1 reaches `fraction` of the run's `final` top-1 (convergence
    speed); NaN if the run has no evaluation or `final` is unknown. `steps` must be in ascending order."""
    if final is None or not math.isfinite(final):
        return math.nan
    target = fraction * final
    for step, value in zip(steps, top1, strict=True):
        if value is not None and math.isfinite(value) and value >= target:
            return float(step)
    return math.nan

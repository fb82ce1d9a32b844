"""Confidence intervals across seeds: the error bars of Figures 9-11 and of the summary table.

Seeds are the replicates of a cell, so a cell's accuracy is a mean over a handful of values and its 95%
interval is Student's t-interval, `mean ± t_{0.975, n-1} · s / sqrt(n)`. A difference between two cells
(a cell minus the paper's baseline) uses Welch's interval: unequal variances, unpaired seeds, and the
Welch-Satterthwaite degrees of freedom. With one seed there is no interval: NaN, never zero.

The t quantile is computed here (no scipy): Student's CDF through the regularised incomplete beta
function (a continued fraction, Numerical Recipes §6.4), inverted by bisection. It accepts fractional
degrees of freedom, which Welch's interval needs.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

_EPS = 1e-15
_TINY = 1e-300


def _beta_continued_fraction(a: float, b: float, x: float) -> float:
    """The continued fraction of the incomplete beta function, by the modified Lentz method."""
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > _TINY else _TINY)
    h = d
    for m in range(1, 10_000):
        m2 = 2 * m
        for aa in (m * (b - m) * x / ((qam + m2) * (a + m2)), -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))):
            d = 1.0 + aa * d
            d = 1.0 / (d if abs(d) > _TINY else _TINY)
            c = 1.0 + aa / c
            c = c if abs(c) > _TINY else _TINY
            delta = d * c
            h *= delta
        if abs(delta - 1.0) < _EPS:
            break
    return h


def betainc(a: float, b: float, x: float) -> float:
    """The regularised incomplete beta function I_x(a, b), for a, b > 0 and 0 <= x <= 1."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _beta_continued_fraction(a, b, x) / a
    return 1.0 - math.exp(log_front) * _beta_continued_fraction(b, a, 1.0 - x) / b


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with `df` degrees of freedom."""
    tail = 0.5 * betainc(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t > 0 else tail


def t_quantile(p: float, df: float) -> float:
    """The `p` quantile of Student's t with `df` (> 0, possibly fractional) degrees of freedom."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"p must lie in (0, 1), got {p}")
    if not df > 0:
        raise ValueError(f"degrees of freedom must be positive, got {df}")
    if p == 0.5:
        return 0.0
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    lo, hi = 0.0, 1.0
    while t_cdf(hi, df) < p:
        lo, hi = hi, hi * 2.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if t_cdf(mid, df) < p:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-12 * hi:
            break
    return 0.5 * (lo + hi)


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


def _variance(values: Sequence[float], mean: float) -> float:
    return sum((v - mean) ** 2 for v in values) / (len(values) - 1)


def mean_interval(values: Iterable[float], level: float = 0.95) -> Interval:
    """The mean of `values` (NaN and None dropped) and the half-width of its t-interval across them."""
    data = _finite(values)
    n = len(data)
    if n == 0:
        return Interval(math.nan, math.nan, 0)
    mean = sum(data) / n
    if n < 2:
        return Interval(mean, math.nan, n)
    df = n - 1
    half = t_quantile(0.5 + level / 2.0, df) * math.sqrt(_variance(data, mean) / n)
    return Interval(mean, half, n, float(df))


def welch_interval(a: Iterable[float], b: Iterable[float], level: float = 0.95) -> Interval:
    """mean(a) - mean(b) and the half-width of Welch's t-interval; NaN half-width if either has < 2 values.

    When neither sample varies (identical seeds on both sides) the half-width is 0: no seed-to-seed noise
    was observed, which the reader should weigh by `n`."""
    xa, xb = _finite(a), _finite(b)
    if not xa or not xb:
        return Interval(math.nan, math.nan, min(len(xa), len(xb)))
    ma, mb = sum(xa) / len(xa), sum(xb) / len(xb)
    diff, n = ma - mb, min(len(xa), len(xb))
    if len(xa) < 2 or len(xb) < 2:
        return Interval(diff, math.nan, n)
    sa, sb = _variance(xa, ma) / len(xa), _variance(xb, mb) / len(xb)
    se2 = sa + sb
    if se2 == 0.0:
        return Interval(diff, 0.0, n)
    df = se2**2 / (sa**2 / (len(xa) - 1) + sb**2 / (len(xb) - 1))
    return Interval(diff, t_quantile(0.5 + level / 2.0, df) * math.sqrt(se2), n, df)


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

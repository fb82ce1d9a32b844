"""When a study may be read, and at what level: its looks and the error each look spends.

A study registers its looks before it runs (`design.looks`: the seed counts at which it may be read, the last
being its registered number of seeds, N). Reading a study after every few seeds with the full 5% each time
inflates the chance of a false verdict: every look is another chance. So each look spends part of the 5%,
following Lan and DeMets' alpha-spending function of the O'Brien-Fleming type (Lan & DeMets, Biometrika 70,
1983, "Discrete sequential boundaries for clinical trials"),

    spent(t) = 2 - 2 * Phi(z_{1 - alpha/2} / sqrt(t)),   t = n / N, the fraction of the seeds in,

which spends almost nothing early (t = 1/4: 0.009% of alpha = 0.05) and most of it at the end. A read at n
seeds tests at the level `spent(n / N) - spent(n_before / N)`, n_before being the last registered look below
n. Using each increment as its own level is a Bonferroni split of alpha across the looks: since the looks'
statistics are positively correlated, the family-wise error stays below alpha, conservatively (the exact
boundaries need the looks' joint distribution, a numerical integration no library does for Welch tests with
their own degrees of freedom; this split needs none and stays valid for a read at an unplanned n too).

The same levels serve the better/worse tests (Holm's adjustment over a family's comparisons at each look) and
the equivalence tests (TOST, Holm-adjusted likewise), so that neither false differences nor false equivalences
pass alpha across the family and the looks. `simulate_family_error` checks it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from .stats import holm

ALPHA = 0.05


def spent(t: float, alpha: float = ALPHA) -> float:
    """The alpha spent once a fraction `t` of the registered seeds is in (O'Brien-Fleming type)."""
    if t <= 0:
        return 0.0
    return float(min(alpha, 2.0 - 2.0 * stats.norm.cdf(stats.norm.ppf(1 - alpha / 2) / math.sqrt(min(t, 1.0)))))


@dataclass(frozen=True)
class Look:
    """A read of a study at `n` seeds a cell: which registered look it is, whether it is the final one, and
    the level its tests use."""

    n: int
    registered: int | None
    """N, the last registered look; None when the study registered no looks."""
    stage: str
    """`final` (the registered N, or past it), `interim` (a registered look before N), `unplanned` (a read
    between registered looks) or `unregistered` (a study that declared no looks: every read at 5%)."""
    level: float

    @property
    def label(self) -> str:
        seeds = f"{self.n} of {self.registered} seeds" if self.registered else f"{self.n} seeds"
        if self.registered and self.n > self.registered:
            return f"final, read past its last look ({seeds})"
        return f"{self.stage} ({seeds})"

    @property
    def is_finding(self) -> bool:
        return self.stage == "final"


def look_at(n: int, looks: Sequence[int] | None, alpha: float = ALPHA, spending: bool = True) -> Look:
    """The look a read at `n` seeds is, under the registered `looks` (None: none registered); `spending=False`
    tests every look at the full `alpha` (what reading a study at any look did before looks were registered)."""
    if not looks:
        return Look(n, None, "unregistered", alpha)
    registered = int(looks[-1])
    before = max((k for k in looks if k < n), default=0)
    stage = "final" if n >= registered else "interim" if n in looks else "unplanned"
    if not spending:
        return Look(n, registered, stage, alpha)
    return Look(n, registered, stage, spent(n / registered, alpha) - spent(before / registered, alpha))


def _welch(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Vectorised Welch: difference, standard error and degrees of freedom over the leading axes."""
    va, vb = a.var(axis=-1, ddof=1) / a.shape[-1], b.var(axis=-1, ddof=1) / b.shape[-1]
    se = np.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / (a.shape[-1] - 1) + vb**2 / (b.shape[-1] - 1))
    return a.mean(axis=-1) - b.mean(axis=-1), se, df


def _holm_rows(p: np.ndarray) -> np.ndarray:
    return np.apply_along_axis(lambda row: np.asarray(holm(row.tolist())), -1, p)


def simulate_family_error(
    sds: Sequence[float],
    looks: Sequence[int],
    *,
    true_diff: float,
    margin: float,
    studies: int = 5000,
    spending: bool = True,
    adjust_equivalence: bool = True,
    seed: int = 0,
) -> float:
    """The share of `studies` simulated studies in which any comparison of the family ends in a false verdict.

    `sds[0]` is the baseline cell's seed SD, the others its arms'; every arm differs from the baseline by
    `true_diff` points. With `true_diff = 0` a false verdict is `better`/`worse`; with `|true_diff| >= margin`
    it is `equivalent`. Each study is read at every look in `looks`, with Welch's test, Holm over the arms and
    the look's level (`look_at`); a verdict, once reached, stands. `spending=False` reads every look at the full
    5%, `adjust_equivalence=False` leaves the TOST p-values unadjusted: each is how studies were read before."""
    rng = np.random.default_rng(seed)
    n_max = looks[-1]
    base = rng.normal(0.0, sds[0], size=(studies, 1, n_max))
    arms = rng.normal(true_diff, np.asarray(sds[1:])[None, :, None], size=(studies, len(sds) - 1, n_max))
    wrong = np.zeros(studies, dtype=bool)
    for n in looks:
        level = look_at(n, looks, spending=spending).level
        diff, se, df = _welch(arms[..., :n], base[..., :n])
        p = 2 * stats.t.sf(np.abs(diff / se), df)
        p_tost = np.maximum(stats.t.sf((diff + margin) / se, df), stats.t.cdf((diff - margin) / se, df))
        differs = _holm_rows(p) < level
        equivalent = ~differs & ((_holm_rows(p_tost) if adjust_equivalence else p_tost) < level)
        wrong |= (differs if true_diff == 0 else equivalent).any(axis=-1)
    return float(wrong.mean())

"""`--plan MDE`: how many seeds per cell each family needs to detect a difference of MDE points.

Per family, on the primary endpoint: the pooled seed SD of its cells, and the upper bound of its one-sided
80% confidence interval (`sd * sqrt(df / chi2_{0.2, df})`), since an SD estimated from a few seeds is as
likely too small as too large and a plan built on it alone would be optimistic. For each, the smallest
number of seeds per cell whose minimum detectable difference (80% power, 5% family-wise level after Holm,
as in the comparisons table) is at most MDE.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
from scipy import stats

from .compare import families, metrics_of, pairs, with_endpoints
from .compare import mde as detectable
from .stats import pooled_sd

MAX_SEEDS = 1000
CONFIDENCE = 0.8
COLUMNS: tuple[str, ...] = (
    "family", "metric", "cells", "comparisons", "seeds_now", "sd_pooled", "df", "sd_upper80", "mde_now",
    "target_mde", "seeds_per_cell", "seeds_per_cell_upper80", "runs_needed", "runs_needed_upper80",
)  # fmt: skip


def upper_sd(sd: float, df: int, confidence: float = CONFIDENCE) -> float:
    """The upper end of the one-sided `confidence` interval of an SD estimated with `df` degrees of freedom."""
    if not (math.isfinite(sd) and df > 0):
        return math.nan
    return sd * math.sqrt(df / stats.chi2.ppf(1 - confidence, df))


def seeds_needed(sd: float, target: float, comparisons: int) -> float:
    """The fewest seeds per cell (both sides equal) whose detectable difference is at most `target`."""
    if not (math.isfinite(sd) and target > 0 and comparisons > 0):
        return math.nan
    for n in range(2, MAX_SEEDS + 1):
        if detectable(sd, n, n, comparisons) <= target:
            return float(n)
    return math.inf


def plan_rows(
    runs: pd.DataFrame, curves: pd.DataFrame, target: float, scope: str | None = None, primary: str | None = None
) -> pd.DataFrame:
    """One row per family: its current detectable difference and the seeds per cell that `target` needs, on
    the primary endpoint (`primary`: the study's `design.primary`)."""
    rows: list[dict[str, Any]] = []
    for family in families(with_endpoints(runs, curves)):
        metric = metrics_of(family.runs, primary)[0]
        column = family.runs[metric.column].astype(float)
        groups = [
            column[family.runs[family.axis].map(lambda v, x=x: type(v) is type(x) and v == x)] for x in family.values
        ]
        sd, df = pooled_sd([g.dropna().tolist() for g in groups])
        m = len(pairs(family, scope))
        now = min(len(g.dropna()) for g in groups)
        need, need_upper = seeds_needed(sd, target, m), seeds_needed(upper_sd(sd, df), target, m)
        rows.append(
            {
                "family": family.name, "metric": metric.name, "cells": len(family.values), "comparisons": m,
                "seeds_now": now, "sd_pooled": sd, "df": df, "sd_upper80": upper_sd(sd, df),
                "mde_now": detectable(sd, now, now, m), "target_mde": target, "seeds_per_cell": need,
                "seeds_per_cell_upper80": need_upper, "runs_needed": need * len(family.values),
                "runs_needed_upper80": need_upper * len(family.values),
            }
        )  # fmt: skip
    return pd.DataFrame(rows, columns=list(COLUMNS))


def plan_lines(plan: pd.DataFrame) -> list[str]:
    """The plan in words, one line per family."""
    lines = []
    for _, r in plan.iterrows():
        comparisons = f"{r['comparisons']} comparison" + ("s" if r["comparisons"] != 1 else "")
        lines.append(
            f"plan {r['family']} ({r['metric']}, {comparisons}): to detect {r['target_mde']:g} "
            f"points, {_seeds(r['seeds_per_cell'])} seeds per cell at the observed SD {r['sd_pooled']:.2f}, "
            f"{_seeds(r['seeds_per_cell_upper80'])} at its upper 80% bound {r['sd_upper80']:.2f} "
            f"(now {r['seeds_now']} seeds detect {r['mde_now']:.1f})"
        )
    return lines


def _seeds(n: float) -> str:
    if not math.isfinite(n):
        return "n/a" if math.isnan(n) else f"more than {MAX_SEEDS}"
    return str(int(n))

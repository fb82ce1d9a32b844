"""`--plan MDE`: how many seeds per cell each family needs to detect a difference of MDE points.

Per family, on the primary endpoint: the pooled seed SD of its cells, and the upper bound of its one-sided
80% confidence interval (`sd * sqrt(df / chi2_{0.2, df})`), since an SD estimated from a few seeds is as
likely too small as too large and a plan built on it alone would be optimistic. For each, the smallest
number of seeds per cell whose minimum detectable difference (80% power, 5% family-wise level after Holm,
as in the comparisons table) is at most MDE.

The same MDE read as an equivalence margin, per comparison (`pair_plan_rows`, `plan_pairs.csv`): on the
validation top-1 only, since seeds are decided before a study, with each cell's own SD (the noisiest cell
of a family can have several times the others' SD), the seeds each side needs for a zero difference to be
shown equivalent and a difference of the margin detected, equal or in proportion to the SDs.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
from scipy import stats

from .axes import text
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


PAIR_COLUMNS: tuple[str, ...] = (
    "family", "cell", "reference", "metric", "split", "comparisons", "sd_cell", "sd_reference", "seeds_now",
    "margin", "seeds_equal", "seeds_cell", "seeds_reference", "seeds_equal_upper80", "seeds_cell_upper80",
    "seeds_reference_upper80",
)  # fmt: skip


def equivalence_factor(df: float, comparisons: int, power: float = 0.8, alpha: float = 0.05) -> float:
    """Standard errors the margin must span for a cell pair to be decided with `power` whichever way it is: a
    zero difference shown equivalent (TOST at `alpha / comparisons`, Holm's first step) and a difference of the
    margin detected (two-sided at the same level); the larger of the two."""
    level = alpha / comparisons
    equivalent = stats.t.ppf(1 - level, df) + stats.t.ppf(1 - (1 - power) / 2, df)
    different = stats.t.ppf(1 - level / 2, df) + stats.t.ppf(power, df)
    return float(max(equivalent, different))


def pair_seeds(sd_a: float, sd_b: float, margin: float, comparisons: int, ratio: float = 1.0) -> tuple[float, float]:
    """The fewest seeds (cell a, cell b), `ratio` = n_a / n_b, whose Welch standard error times
    `equivalence_factor` is at most `margin`. Each cell keeps its own SD: a pooled one would lend the noisiest
    cell's variance to every comparison (or hide it)."""
    if not (math.isfinite(sd_a) and math.isfinite(sd_b) and margin > 0):
        return math.nan, math.nan
    for n_b in range(2, MAX_SEEDS + 1):
        n_a = max(2, math.ceil(ratio * n_b - 1e-9))
        va, vb = sd_a**2 / n_a, sd_b**2 / n_b
        df = (va + vb) ** 2 / (va**2 / (n_a - 1) + vb**2 / (n_b - 1)) if va + vb > 0 else n_a + n_b - 2
        if equivalence_factor(df, comparisons) * math.sqrt(va + vb) <= margin:
            return float(n_a), float(n_b)
    return math.inf, math.inf


def pair_plan_rows(runs: pd.DataFrame, curves: pd.DataFrame, margin: float, scope: str | None = None) -> pd.DataFrame:
    """Per comparison, on the final validation top-1 (a plan is a decision made before a study: it reads no test
    value), the seeds each side needs at `margin` with each cell's own SD: equal seeds, and seeds in
    proportion to the SDs (fewest runs for the pair), each also at the SDs' upper 80% bounds."""
    rows: list[dict[str, Any]] = []
    holdout = pd.to_numeric(runs.get("holdout", pd.Series(math.nan, index=runs.index)), errors="coerce")
    if len(holdout) and (holdout > 0).all():
        split = "held-out validation"
    elif len(holdout) and (holdout == 0).any():
        split = "validation (the test split in some runs)"
    else:
        split = "validation (split not recorded)"
    for family in families(with_endpoints(runs, curves)):
        metric = metrics_of(family.runs, "val_top1")[0]
        column = family.runs[metric.column].astype(float)
        found = pairs(family, scope)
        for cell, reference in found:
            a, b = (column[family.runs[family.axis].map(lambda v, x=x: type(v) is type(x) and v == x)].dropna()
                    for x in (cell, reference))  # fmt: skip
            sd_a, sd_b = (float(g.std(ddof=1)) if len(g) >= 2 else math.nan for g in (a, b))
            up_a, up_b = upper_sd(sd_a, len(a) - 1), upper_sd(sd_b, len(b) - 1)
            equal, equal_up = pair_seeds(sd_a, sd_b, margin, len(found)), pair_seeds(up_a, up_b, margin, len(found))
            split_n = pair_seeds(sd_a, sd_b, margin, len(found), sd_a / sd_b if sd_b > 0 else 1.0)
            split_up = pair_seeds(up_a, up_b, margin, len(found), up_a / up_b if up_b > 0 else 1.0)
            rows.append({
                "family": family.name, "cell": text(cell), "reference": text(reference), "metric": metric.name,
                "split": split, "comparisons": len(found), "sd_cell": sd_a, "sd_reference": sd_b,
                "seeds_now": min(len(a), len(b)), "margin": margin, "seeds_equal": equal[0], "seeds_cell": split_n[0],
                "seeds_reference": split_n[1], "seeds_equal_upper80": equal_up[0], "seeds_cell_upper80": split_up[0],
                "seeds_reference_upper80": split_up[1],
            })  # fmt: skip
    return pd.DataFrame(rows, columns=list(PAIR_COLUMNS))


def pair_plan_lines(plan: pd.DataFrame) -> list[str]:
    """One line per comparison: the seeds it needs, equal and in proportion to the SDs."""
    return [
        f"plan {r['family']}, {r['cell']} vs {r['reference']} ({r['metric']}, {r['split']}, own SDs "
        f"{r['sd_cell']:.2f} and {r['sd_reference']:.2f}): ±{r['margin']:g} needs {_seeds(r['seeds_equal'])} seeds "
        f"each, or {_seeds(r['seeds_cell'])} + {_seeds(r['seeds_reference'])} in proportion to the SDs "
        f"({_seeds(r['seeds_equal_upper80'])} each at the SDs' upper 80% bounds)"
        for _, r in plan.iterrows()
    ]

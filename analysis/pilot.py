"""A pilot report: the budget a study will train at, chosen on the held-out validation split only.

A decision made before a study (its budget, its slowest cells) must not see the test split, or the study's
test verdicts are no longer a held-out measurement. So `--pilot` refuses runs that validated on the test split
(`data.holdout=0`) or did not record their holdout, drops every test value from the frames before anything is
computed, and says so in every file it writes.

The budget rule: a cell is *converged* at a budget when its mean final validation top-1 is within `tolerance`
points of the longest budget's; the study's budget is the smallest budget at which every cell is. A cosine
schedule always flattens the curve at its end, whatever the budget, as the learning rate goes to zero; so the
table also shows, per budget, the validation top-1 gained over the last quarter of the run (`late_gain`) beside
the share of the run's summed learning rate that quarter had (`late_lr_share`, about 0.09 for a cosine run):
a flat end with a small share of the learning rate left is the schedule, not convergence.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from xablate.errors import ConfigError

from .axes import AXES, text
from .frames import Runs
from .stats import mean_interval

TEST_VALUES: tuple[str, ...] = ("test_top1", "test_top5", "test_loss")
LATE = 0.25
"""The last quarter of a run's steps: where a cosine schedule flattens every curve."""


def held_out_only(data: Runs) -> Runs:
    """`data` without any test value; a one-line ConfigError when a run did not validate on a held-out split."""
    holdout = pd.to_numeric(data.runs.get("holdout", pd.Series(math.nan, index=data.runs.index)), errors="coerce")
    unknown = data.runs.loc[~(holdout > 0), "source"].astype(str).tolist()
    if unknown:
        raise ConfigError(
            f"--pilot: {len(unknown)} run(s) validated on the test split or did not record a held-out split "
            f"(data.holdout), e.g. {unknown[0]}; a pilot decides on a held-out validation split only"
        )
    runs = data.runs.copy()
    for column in TEST_VALUES:
        runs[column] = math.nan
    curves = data.curves[data.curves["split"] != "test"].reset_index(drop=True)
    return Runs(runs, curves, list(data.problems))


def _late(curves: pd.DataFrame, run_id: Any) -> tuple[float, float]:
    """(validation top-1 gained over the run's last quarter, in points; that quarter's share of the summed lr)."""
    rows = curves[curves["run_id"] == run_id]
    val = rows[rows["split"] == "val"].sort_values("step")
    train = rows[rows["split"] == "train"].sort_values("step")
    if val.empty:
        return math.nan, math.nan
    last = float(val["step"].max())
    before = val[val["step"] <= (1 - LATE) * last]
    gain = 100.0 * (float(val["top1"].iloc[-1]) - float(before["top1"].iloc[-1])) if len(before) else math.nan
    lr = train["lr"].astype(float).to_numpy()
    steps = train["step"].astype(float).to_numpy()
    share = float(lr[steps > (1 - LATE) * last].sum() / lr.sum()) if len(lr) and lr.sum() > 0 else math.nan
    return gain, share


def budget_table(data: Runs, tolerance: float) -> pd.DataFrame:
    """Per cell and budget (total steps): seeds, final validation top-1 (mean, 95% CI), its gap to the
    longest budget, whether it is within `tolerance`, and the late gain against the late learning rate."""
    runs = data.runs.copy()
    late = [_late(data.curves, run_id) for run_id in runs["run_id"]]
    runs["late_gain"], runs["late_lr_share"] = [g for g, _ in late], [s for _, s in late]
    runs["cell"] = runs[list(AXES)].apply(lambda r: " ".join(f"{a}={text(r[a])}" for a in AXES), axis=1)
    rows = []
    for cell, group in runs.groupby("cell", sort=True):
        longest = mean_interval(100.0 * group.loc[group["total_steps"] == group["total_steps"].max(), "val_top1"])
        for steps, budget in group.groupby("total_steps", sort=True):
            final = mean_interval(100.0 * budget["val_top1"].astype(float))
            gap = longest.estimate - final.estimate
            rows.append({
                "cell": cell, "total_steps": int(steps), "seeds": final.n, "val_top1": final.estimate,
                "val_top1_low": final.low, "val_top1_high": final.high, "gap_to_longest": gap,
                "converged": bool(gap <= tolerance), "late_gain": float(np.nanmean(budget["late_gain"])),
                "late_lr_share": float(np.nanmean(budget["late_lr_share"])),
            })  # fmt: skip
    return pd.DataFrame(rows)


def budget_lines(table: pd.DataFrame, tolerance: float) -> list[str]:
    """The budget the rule picks, in one line, and what the rule was."""
    if table.empty:
        return ["pilot: no completed runs"]
    longest = int(table["total_steps"].max())
    every_cell = table.groupby("total_steps")["converged"].all()
    converged = [int(steps) for steps, ok in every_cell.items() if ok]
    if converged and converged[0] < longest:
        return [
            f"pilot (validation split only): budget {converged[0]} steps, the smallest within {tolerance:g} points "
            f"of the longest ({longest} steps) in every cell"
        ]
    return [
        f"pilot (validation split only): no budget shorter than the longest ({longest} steps) is within "
        f"{tolerance:g} points of it in every cell, so the longest is not shown converged either"
    ]


def to_markdown(table: pd.DataFrame, lines: list[str]) -> str:
    """`pilot.md`: the budget table and the rule's answer, labelled as a validation-only report."""
    head = "| cell | steps | seeds | val top-1 [95% CI] | gap to longest | converged | late gain | late lr share |"
    out = ["# Pilot: budgets on the validation split only (every test value dropped)", "", head,
           "|---|---:|---:|---|---:|---|---:|---:|"]  # fmt: skip
    for _, r in table.iterrows():
        out.append(
            f"| {r['cell']} | {r['total_steps']} | {r['seeds']} | {r['val_top1']:.2f} [{r['val_top1_low']:.2f}, "
            f"{r['val_top1_high']:.2f}] | {r['gap_to_longest']:+.2f} | {'yes' if r['converged'] else 'no'} | "
            f"{r['late_gain']:+.2f} | {r['late_lr_share']:.2f} |"
        )
    return "\n".join([*out, "", *lines, "", __doc__.split("\n\n", 2)[2].replace("\n", " ").strip(), ""])
